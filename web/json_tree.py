"""Parsed JSON as foldable, safe HTML: the text of `json.dumps(indent=2)`, objects and arrays
wrapped so static/app.js can fold them.

Every string and key is escaped here; invisible and direction-changing characters become
visible badges (as `display.bus_text` shows them), at most `MAX_BADGES` in one document (then
U+FFFD); strings with right-to-left letters are isolated (`<bdi>`). With the tags stripped the
HTML reads exactly as the pretty-printed JSON, so selecting and copying the body still gives
JSON. Folding needs no text in the page: the toggles and the "3 keys" summaries are drawn by
CSS from attributes (app.js labels a toggle when it gets focus: thousands of labels would weigh
more than the body). Large documents start with everything below `FOLD_DEPTH` folded;
containers deeper than `MAX_FOLD_DEPTH` are plain text (browsers flatten very deep markup).
The walk is iterative and linear in the size of the document.
"""

from __future__ import annotations

import json
import unicodedata
from json.encoder import encode_basestring
from typing import Any

from markupsafe import Markup, escape

from eventscope.web.display import replace_invisible, safe_text, segments

MAX_BADGES = 1000
MAX_FOLD_DEPTH = 40
FOLD_DEPTH = 2  # in large documents, containers this deep and deeper start folded
LARGE_NODES = 1500  # values (objects, arrays, scalars) that make a document large
_RTL_CLASSES = frozenset({"R", "AL", "AN"})
_BADGE = '<span class="cc" title="invisible or control character">'


def _escape(text: str) -> str:
    """HTML-escaped text, as markupsafe writes it (a C-speed path for the common case)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


class _Strings:
    """Renders strings and keys, with one budget of badges for the whole document."""

    def __init__(self) -> None:
        self.badges = 0
        self.replaced = 0

    def html(self, value: str) -> str:
        text = safe_text(encode_basestring(value))
        if text.isascii() and text.isprintable():
            return _escape(text)
        plain, hidden = replace_invisible(text)
        if self.badges + hidden > MAX_BADGES:  # over budget: this string's are U+FFFD
            self.replaced += hidden
            out = _escape(plain)
        else:
            self.badges += hidden
            out = "".join(
                f"{_BADGE}{escape(part)}</span>" if special else _escape(part)
                for part, special in segments(text)
            )
        if any(unicodedata.bidirectional(ch) in _RTL_CLASSES for ch in text if ord(ch) > 0x58F):
            return f'<bdi class="v">{out}</bdi>'
        return out


def _count(data: Any, limit: int) -> int:
    """How many values `data` holds, counting up to `limit`."""
    seen, stack = 0, [data]
    while stack and seen < limit:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return seen


def _scalar(value: Any, strings: _Strings) -> str:
    if isinstance(value, str):
        return strings.html(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)  # digits, signs, letters: nothing to escape
    return strings.html(str(value))  # not JSON data: shown as a string


def _leaf(value: Any, strings: _Strings) -> str:
    """A scalar, or an empty object or array."""
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value, strings)


def _summary(value: dict[str, Any] | list[Any]) -> str:
    n = len(value)
    if isinstance(value, dict):
        return f"{n:,} key" if n == 1 else f"{n:,} keys"
    return f"{n:,} item" if n == 1 else f"{n:,} items"


def json_tree(data: Any) -> Markup:
    """`data` (as `json.loads` returns it) as foldable HTML for a `<pre>`."""
    strings = _Strings()
    folded_from = FOLD_DEPTH if _count(data, LARGE_NODES + 1) > LARGE_NODES else None
    out: list[str] = []
    # Work items: ("v", value, depth) renders a value, ("t", text, 0) writes markup as is.
    stack: list[tuple[str, Any, int]] = [("v", data, 0)]
    while stack:
        kind, item, depth = stack.pop()
        if kind == "t":
            out.append(item)
            continue
        if not isinstance(item, dict | list) or not item:
            out.append(_leaf(item, strings))
            continue
        is_object = isinstance(item, dict)
        opening, closing = ("{", "}") if is_object else ("[", "]")
        foldable = depth < MAX_FOLD_DEPTH
        inner = "  " * (depth + 1)
        work: list[tuple[str, Any, int]] = []
        if foldable:
            folded = folded_from is not None and depth >= folded_from
            work.append(
                (
                    "t",
                    f'<span class="jc{" folded" if folded else ""}"><button class="jf">'
                    f'</button>{opening}<span class="jb">',
                    0,
                )
            )
        else:
            work.append(("t", opening, 0))
        entries = item.items() if isinstance(item, dict) else enumerate(item)
        last = len(item) - 1
        for i, (key, value) in enumerate(entries):
            lead = "\n" + inner + (strings.html(str(key)) + ": " if is_object else "")
            comma = "," if i != last else ""
            if isinstance(value, dict | list) and value:
                work += [("t", lead, 0), ("v", value, depth + 1), ("t", comma, 0)]
            else:  # scalars and empty containers: written at once, no work item
                work.append(("t", lead + _leaf(value, strings) + comma, 0))
        tail = "\n" + "  " * depth
        if foldable:
            work.append(("t", f'{tail}</span><i class="js" data-n="{_summary(item)}"></i>', 0))
            work.append(("t", f"{closing}</span>", 0))
        else:
            work.append(("t", tail + closing, 0))
        stack.extend(reversed(work))
    if strings.replaced:
        out.append(
            f"\n{_BADGE}{strings.replaced:,} more invisible characters, shown as U+FFFD</span>"
        )
    return Markup("".join(out))  # noqa: S704 - every piece of data above is escaped


def pretty_tree(pretty: str | None) -> Markup | None:
    """The tree of a body the detail page pretty-printed, or None (not JSON; or too deep to
    read again, then the page shows the pretty text)."""
    if pretty is None:
        return None
    try:
        data = json.loads(pretty)
    except (ValueError, RecursionError):
        return None
    return json_tree(data)
