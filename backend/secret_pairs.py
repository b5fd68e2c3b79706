"""`name=value` and `"name": value` pairs in text whose name is secret, found in one pass.

Text masking is what viewers get for bodies that are not JSON Python can read (deeply nested,
truncated, invalid) and for strings inside JSON. A pattern like `password[\\w-]*…` restarts at
every occurrence of the word inside one long name and is quadratic ("tokentoken…" took seconds
for 50 KB). Here a name is read once, from where a name can start (never from inside one), with
possessive quantifiers, and the value is skipped whole after it is masked, so every character
is looked at a bounded number of times.

What counts as the value, after `:`, `=` or `=>`:
- a quoted string (`"…"`, `'…'`, or `\\"…\\"` inside serialized JSON), escapes included, up to
  its closing quote or the end of the line;
- an array or object, up to its matching bracket (strings inside skipped), or the end of text;
- else a bare word, with an authorization scheme (`Bearer xyz`) taken with its credential.
Names may be written with JSON (`\\u0077`) or URL (`%77`) escapes; they are decoded first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

_NAME = re.compile(
    r"(?<![\w\\%-])((?:[\w-]|\\u[0-9A-Fa-f]{4}|%[0-9A-Fa-f]{2})++)"  # a whole name, never a tail
    r"(?:\\?[\"'])?\s*+(?:[:=]>?)\s*+"
)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_QUOTED = {
    '"': re.compile(r'"(?:[^"\\\n]|\\.)*+"?'),
    "'": re.compile(r"'(?:[^'\\\n]|\\.)*+'?"),
}
_ESCAPED_QUOTED = re.compile(r'\\"(?:[^\\\n]|\\(?!"))*+(?:\\")?')
_SCHEME = re.compile(r"(?i)(?:bearer|basic|digest|token|bot|negotiate|ntlm|hawk)[ \t]++")
_BARE = re.compile(r"[^\"'&\s,;}]++")
_STRUCTURE = re.compile(r'[\[\]{}"]')
_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*+"?', re.S)


def name_of(raw: str) -> str:
    """A name as written in text, with JSON and URL escapes decoded."""
    if "\\" in raw:
        raw = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw)
    if "%" in raw:
        raw = unquote(raw)
    return raw


def _structure_end(text: str, pos: int) -> int:
    """Where the array or object opening at `pos` closes (or the end of text)."""
    depth = 0
    while (token := _STRUCTURE.search(text, pos)) is not None:
        pos = token.end()
        if token.group() == '"':
            found = _STRING_REST.match(text, pos)
            pos = found.end() if found else pos
            continue
        depth += 1 if token.group() in "[{" else -1
        if depth <= 0:
            return pos
    return len(text)


def _value(text: str, pos: int) -> tuple[int, int, str, str]:
    """(start, end, opening, closing) of the value at `pos`; start == end when there is none.
    The opening and closing quotes are kept around the mask."""
    first = text[pos : pos + 2]
    if first[:1] in _QUOTED:
        found = _QUOTED[first[:1]].match(text, pos)
        end = found.end() if found else pos
        closed = end - pos >= 2 and text[end - 1] == first[:1]
        return pos, end, first[:1], first[:1] if closed else ""
    if first == '\\"':
        found = _ESCAPED_QUOTED.match(text, pos)
        end = found.end() if found else pos
        closed = end - pos >= 4 and text[end - 2 : end] == '\\"'
        return pos, end, '\\"', '\\"' if closed else ""
    if first[:1] in ("[", "{"):
        return pos, _structure_end(text, pos), "", ""
    end = pos
    scheme = _SCHEME.match(text, pos)
    if scheme is not None and _BARE.match(text, scheme.end()):
        end = scheme.end()
    bare = _BARE.match(text, end)
    return pos, bare.end() if bare else pos, "", ""


def mask_pairs(text: str, secret: Callable[[str], bool], mask: str) -> str:
    """`text` with the value of every pair whose name `secret` accepts replaced by `mask`."""
    parts: list[str] = []
    last = pos = 0
    while (pair := _NAME.search(text, pos)) is not None:
        pos = pair.end()
        if not secret(name_of(pair.group(1))):
            continue
        start, end, opening, closing = _value(text, pos)
        if end == start:
            continue
        parts.append(text[last:start])
        parts.append(opening + mask + closing)
        last = pos = end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)
