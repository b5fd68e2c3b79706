"""One catalogued event type as the types page and /api/types present it (one shape, two
renderings), masked for viewers.

Viewers see every value from the bus masked (backend/redaction.py): the type name and routing
keys as text (or whole when their column is a configured secret word), field paths as text (a
card number can be a key), the sample on its structure like any body. The rate chart is drawn
here as bar geometry for an inline SVG (the CSP allows no inline style).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import orjson

from eventscope.backend.redaction import MASK, Redactor
from eventscope.web.display import iso

RATE_MINUTES = 60
CHART_WIDTH = 120
CHART_HEIGHT = 22
LIST_PATHS = 60  # shape paths per type in lists (the page, /api/types); one type has all
LIST_CHANGES = 10  # changes per flagged event in lists (one type has all, up to 50)


def _loads(text: str | None, default: Any) -> Any:
    """The catalog's own JSON (written ASCII by backend/type_catalog.py); orjson reads it
    fastest, Python's json what orjson refuses (a lone surrogate's escape)."""
    if not text:
        return default
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return default


def _masked(value: str, column: str | None, mask: Redactor | None) -> str:
    """A value as `mask` shows it: whole masked when its column's name is a secret word."""
    if mask is None:
        return value
    return MASK if column and mask.sensitive(column) else mask.text(value)


def rate(buckets: dict[int, int], now_minute: int) -> list[int]:
    """Events per minute over the last RATE_MINUTES minutes, oldest first, this minute last."""
    first = now_minute - RATE_MINUTES + 1
    return [buckets.get(first + i, 0) for i in range(RATE_MINUTES)]


def chart(per_minute: list[int]) -> list[dict[str, float]]:
    """Bars (x, y, width, height) in a CHART_WIDTH x CHART_HEIGHT box; minutes without events
    draw nothing, the busiest minute is full height, any other at least one unit."""
    peak = max(per_minute, default=0)
    if peak == 0:
        return []
    step = CHART_WIDTH / len(per_minute)
    bars = []
    for i, n in enumerate(per_minute):
        if n:
            height = max(1.0, round(n / peak * CHART_HEIGHT, 1))
            bars.append({"x": round(i * step, 1), "y": CHART_HEIGHT - height, "h": height})
    return bars


def _iso_text(value: Any) -> str | None:
    """A stored ISO time in the form every other time is shown in."""
    try:
        return iso(dt.datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _changes(entries: Any, mask: Redactor | None, limit: int | None) -> list[dict[str, Any]]:
    """Flagged events as stored, each with at most `limit` changes (`more` counts the rest)."""
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        stored = [c for c in entry.get("changes", []) if isinstance(c, dict)]
        changes = [
            {
                "path": _masked(str(c.get("path", "")), None, mask),
                "change": str(c.get("change", "")),
                "before": [str(t) for t in c.get("before", [])],
                "after": [str(t) for t in c.get("after", [])],
            }
            for c in (stored if limit is None else stored[:limit])
        ]
        out.append(
            {
                "event_id": entry.get("event_id"),
                "at": _iso_text(entry.get("at")),
                "changes": changes,
                "more": int(entry.get("more") or 0) + len(stored) - len(changes),
            }
        )
    return out


def change_record(row: dict[str, Any], mask: Redactor | None) -> dict[str, Any]:
    """One stored shape change (type_shape_changes) for the API."""
    data = _loads(row["changes"], {})
    entry = {**(data if isinstance(data, dict) else {}), "event_id": row["event_id"]}
    found = _changes([{**entry, "at": row["at"].isoformat()}], mask, None)[0]
    return {"id": row["id"], **found}


def _sample(text: str | None, mask: Redactor | None) -> dict[str, Any] | None:
    found = _loads(text, None)
    if not isinstance(found, dict) or found.get("kind") not in ("json", "text"):
        return None
    value = found.get("value")
    if mask is not None:
        value = mask.data(value) if found["kind"] == "json" else mask.text(str(value))
    return {"kind": found["kind"], "value": value}


def _pretty(sample: dict[str, Any] | None) -> str | None:
    if sample is None:
        return None
    if sample["kind"] == "text":
        return str(sample["value"])
    return json.dumps(sample["value"], indent=2, ensure_ascii=False)


def timeline_link(kind: str, name: str) -> str:
    """The timeline filtered by this type (or, without a type, by this routing key)."""
    parameter = "type" if kind == "type" else "routing_key_exact"
    return "/?" + urlencode({parameter: name})


def type_view(
    row: dict[str, Any],
    rates: dict[int, int],
    now_minute: int,
    mask: Redactor | None,
    max_paths: int | None = LIST_PATHS,
) -> dict[str, Any]:
    """Everything the page and the API show of one type. Lists show the first `max_paths`
    paths of its shape (`shape.paths_total` says how many there are) and LIST_CHANGES changes
    per flagged event; with `max_paths=None`, all of them."""
    kind = row["kind"]
    name = _masked(row["name"], "event_type" if kind == "type" else "routing_key", mask)
    shape = _loads(row["shape"], {})
    stored = shape.get("paths", []) if isinstance(shape, dict) else []
    stored = [p for p in stored if isinstance(p, dict)] if isinstance(stored, list) else []
    paths = [
        {
            "path": _masked(str(p.get("path")), None, mask),
            "types": [str(t) for t in p.get("types", [])],
            "optional": bool(p.get("optional")),
        }
        for p in (stored if max_paths is None else stored[:max_paths])
    ]
    routes = _loads(row["routing_keys"], [])
    per_minute = rate(rates, now_minute)
    sample = _sample(row["sample"], mask)
    return {
        "key": str(row["type_key"]),
        "kind": kind,
        "name": name,
        "events": row["events"],
        "first_seen": iso(row["first_seen"]),
        "last_seen": iso(row["last_seen"]),
        "first_event_id": row["first_event_id"],
        "last_event_id": row["last_event_id"],
        "routing_keys": [
            {"routing_key": _masked(str(r[0]), "routing_key", mask), "events": r[1]}
            for r in (routes if isinstance(routes, list) else [])
            if isinstance(r, list) and len(r) == 2
        ],
        "other_routing_keys": row["other_routing_keys"],
        "rate": {"per_minute": per_minute, "last_hour": sum(per_minute)},
        "sample": None if sample is None else {"event_id": row["sample_event_id"], **sample},
        "shape": {
            "paths": paths,
            "paths_total": len(stored),
            "truncated": bool(shape.get("truncated")) if isinstance(shape, dict) else False,
        },
        "changes": row["changes"],
        "last_change_at": iso(row["last_change_at"]) if row["last_change_at"] else None,
        "recent_changes": _changes(
            _loads(row["recent_changes"], []), mask, None if max_paths is None else LIST_CHANGES
        ),
        "timeline": timeline_link(kind, name),
    }


def age_text(seconds: float) -> str:
    """How far behind, in the unit a person reads at a glance."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def page_extras(view: dict[str, Any]) -> dict[str, Any]:
    """What only the page needs: the chart's bars and the sample as display text."""
    return {
        **view,
        "bars": chart(view["rate"]["per_minute"]),
        "pretty": _pretty(view["sample"]),
        "paths_more": view["shape"]["paths_total"] - len(view["shape"]["paths"]),
    }
