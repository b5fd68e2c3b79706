"""Pure helpers that turn stored values into safe, unambiguous display data.

Only `bus_text` produces markup, from escaped parts: invisible or direction-changing characters
become separate segments, rendered as visible badges. The work and the markup stay in proportion
to the text: past `MAX_BADGES` badges in one value the remaining invisible characters are shown
as U+FFFD, after a badge saying how many (a body of control characters made 70 bytes of HTML,
and a Python loop turn, per character).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from markupsafe import Markup, escape

# C0/C1 controls, soft hyphen, zero-width and bidi controls, word joiners, BOM, line separators.
_INVISIBLE_CLASS = (
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    "\u034f\u115f\u1160\u3164\uffa0\U000e0000-\U000e007f]"
)
_INVISIBLE_KEEP_LAYOUT_CLASS = (  # tab and newline stay layout in bodies
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    "\u034f\u115f\u1160\u3164\uffa0\U000e0000-\U000e007f]"
)
_INVISIBLE = re.compile(_INVISIBLE_CLASS)
_INVISIBLE_KEEP_LAYOUT = re.compile(_INVISIBLE_KEEP_LAYOUT_CLASS)
MAX_BADGES = 1000  # per value

Segment = tuple[str, bool]  # (text, is_special)


def _code(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def segments(value: Any, keep_layout: bool = False) -> list[Segment]:
    """Split text into plain runs and visible names of invisible characters."""
    if value is None:
        return [("—", True)]
    text = str(value)
    if text.isascii() and text.isprintable():  # the common case: nothing to make visible
        return [(text, False)] if text else []
    text = safe_text(text)
    pattern = _INVISIBLE_KEEP_LAYOUT if keep_layout else _INVISIBLE
    out: list[Segment] = []
    pos = 0
    for badges, match in enumerate(pattern.finditer(text)):
        if match.start() > pos:
            out.append((text[pos : match.start()], False))
        if badges == MAX_BADGES:  # enough badges: the rest plainly, marked
            rest, hidden = pattern.subn("\ufffd", text[match.start() :])
            out.append((f"{hidden:,} more invisible characters, shown as U+FFFD", True))
            out.append((rest, False))
            return out
        out.append((_code(match.group()), True))
        pos = match.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


_SPECIAL = '<span class="cc" title="invisible or control character">'


def bus_text(value: Any, keep_layout: bool = False) -> Markup:
    """Any value from the bus as HTML: escaped, isolated (<bdi>), invisible characters shown
    as U+XXXX badges. Every bus value in every template goes through this one function."""
    if value is None:
        return Markup('<span class="none">—</span>')
    parts = []
    for part, special in segments(value, keep_layout):
        parts.append(f"{_SPECIAL}{escape(part)}</span>" if special else str(escape(part)))
    return Markup('<bdi class="v">' + "".join(parts) + "</bdi>")  # noqa: S704 - parts escaped


def replace_invisible(text: str) -> tuple[str, int]:
    """`text` with its invisible characters as U+FFFD, and how many (past a badge budget)."""
    return _INVISIBLE.subn("\ufffd", text)


def visible(value: Any) -> str:
    """One line of text with invisible characters spelled out, for attributes like title."""
    if value is None:
        return ""
    return "".join(f"[{part}]" if special else part for part, special in segments(value))


def safe_text(value: str) -> str:
    """Text that encodes to UTF-8 (lone surrogates escaped as `\\udXXX`), for bodies shown as
    text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def human_size(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive; everything stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def clock(value: dt.datetime | None) -> str:
    """HH:MM:SS.mmm in UTC, the timeline's dense time column."""
    value = as_utc(value)
    return value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}" if value else "—"


def iso(value: dt.datetime | None) -> str:
    value = as_utc(value)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else "—"


def hexdump(data: bytes, limit: int = 64 * 1024) -> list[tuple[str, str, str]]:
    """Rows of (position, hex bytes, printable ASCII) for the hex view."""
    rows = []
    for start in range(0, min(len(data), limit), 16):
        chunk = data[start : start + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        printable = "".join(chr(b) if 0x20 <= b < 0x7F else "·" for b in chunk)
        rows.append((f"{start:08x}", hexes, printable))
    return rows


def cursor(row: dict[str, Any]) -> str:
    """A row's position in commit order, as the `before`/`after` parameters take it."""
    return f"{row['commit_seq']}-{row['id']}"
