"""How failures show events: one line each, bus text made safe for a terminal.

Routing keys and ids are someone else's data: control characters, bidirectional overrides
and invisible characters are written as `\\uXXXX` escapes, and long values are cut, so a failure
message shows what arrived without rearranging the terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

MAX_CELL = 60
MAX_ROWS = 50


def safe(value: Any, limit: int = MAX_CELL) -> str:
    """A value as one visible line: invisible and control characters escaped, cut at `limit`."""
    if value is None:
        return "—"
    out = []
    for char in str(value):
        if char.isprintable() and unicodedata.category(char) not in ("Cf", "Zl", "Zp"):
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clock(iso: Any) -> str:
    """`2025-10-22T14:30:00.120Z` → `14:30:00.120` (the date is the same in one test)."""
    text = str(iso or "")
    return text[11:23] if len(text) >= 23 and text[10] == "T" else safe(text, 30)


def event_line(event: Mapping[str, Any]) -> str:
    return (
        f"{safe(event.get('routing_key')):<28} {safe(event.get('event_type')):<22} "
        f"{clock(event.get('received_at'))}  id {event.get('id')}  "
        f"correlation {safe(event.get('correlation_id'), 40)}"
    )


def event_table(events: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"  {n:>3}  {event_line(e)}" for n, e in enumerate(events[:MAX_ROWS], start=1)]
    if len(events) > MAX_ROWS:
        lines.append(f"  ... and {len(events) - MAX_ROWS} more")
    return "\n".join(lines)


def sequence_table(expected: Sequence[str], events: Sequence[Mapping[str, Any]]) -> str:
    """Expected names beside what arrived, row by row, `≠` where they differ."""
    width = max([len("expected"), *(len(safe(name)) for name in expected)])
    lines = [f"  {'':>3}  {'expected':<{width}}    arrived"]
    for index in range(min(max(len(expected), len(events)), MAX_ROWS)):
        name = expected[index] if index < len(expected) else None
        event = events[index] if index < len(events) else None
        got = event_line(event) if event is not None else "(nothing)"
        same = (
            name is not None
            and event is not None
            and name in (event.get("routing_key"), event.get("event_type"))
        )
        shown = safe(name) if name is not None else "(nothing more)"
        lines.append(f"  {index + 1:>3}  {shown:<{width}} {'  ' if same else '≠ '} {got}")
    return "\n".join(lines)


def filter_text(filters: Mapping[str, Any]) -> str:
    """`correlation_id='req_1', routing_key='order.*'`."""
    if not filters:
        return "(any event)"
    return ", ".join(f"{name}={safe(value)!r}" for name, value in filters.items())
