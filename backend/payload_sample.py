"""A small, valid copy of a payload to show as a type's sample: the shape of the real thing,
not all of it.

The types page shows one sample per event type; a sample must stay small whatever the event
was (a 16 MiB body, an array of 100,000 items) and stay JSON, so a viewer's copy can be masked
on its structure (Redactor.data) like any body. Long strings are cut (never inside a run of
digits: a card number cut in half would no longer be recognised and masked), arrays keep
their first items, objects their first keys, deep values are elided; each cut says what it
left out. Numbers an API client cannot read (NaN, integers past 64 bits) become text.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from eventscope.backend.shapes import cut_text

MAX_STRING = 200
MAX_ITEMS = 3
MAX_KEYS = 40
MAX_DEPTH = 8
MAX_NODES = 120  # values shown; the rest elided (a page shows up to 500 samples)
MAX_TEXT = 1000
_INT64 = 2**63


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return cut_text(value, MAX_STRING) + "…" if len(value) > MAX_STRING else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def bounded(value: Any) -> Any:
    """A copy of a parsed JSON document within the bounds above (iterative: any depth)."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(root, 0, value, 0)]
    nodes = 0
    while stack:
        container, slot, item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:  # enough shown: the rest is elided
            container[slot] = "…"
        elif isinstance(item, dict):
            if depth >= MAX_DEPTH:
                container[slot] = f"{{… {len(item)} keys}}"
                continue
            copy: dict[str, Any] = {}
            container[slot] = copy
            for key, child in itertools.islice(item.items(), MAX_KEYS):
                name = _scalar(str(key)) if len(str(key)) > MAX_STRING else str(key)
                copy[name] = None
                stack.append((copy, name, child, depth + 1))
            if len(item) > MAX_KEYS:
                copy["…"] = f"{len(item) - MAX_KEYS} more keys"
        elif isinstance(item, list | tuple):
            if depth >= MAX_DEPTH:
                container[slot] = f"[… {len(item)} items]"
                continue
            items: list[Any] = [None] * min(len(item), MAX_ITEMS)
            container[slot] = items
            stack.extend((items, i, item[i], depth + 1) for i in range(len(items)))
            if len(item) > MAX_ITEMS:
                items.append(f"… {len(item) - MAX_ITEMS} more items")
        else:
            container[slot] = _scalar(item)
    return root[0]


def sample(kind: str, document: Any, body: bytes) -> dict[str, Any] | None:
    """The sample of one stored body: `{"kind": "json", "value": ...}` or
    `{"kind": "text", "value": "..."}`; None for binary and empty bodies."""
    if kind == "json":
        return {"kind": "json", "value": bounded(document)}
    if kind == "text":
        text = body[: MAX_TEXT * 4].decode("utf-8", "replace")
        return {"kind": "text", "value": cut_text(text, MAX_TEXT)}
    return None
