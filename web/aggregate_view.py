"""An aggregate's fold as the page and the API present it: the selected step's state and what it
changed, the steps around it with their markers, diffs between two points, what-ifs.

Pure functions of a fold (backend/aggregates/fold.py), run in the fold worker thread
(backend/aggregate_folds.py). A step is addressed by version (`?version=N`: the state at N,
which includes events without a version that arrived before N+1), by its number (`?step=N`,
1-based, 0 before the first: arrival-ordered aggregates have no versions), by a recorded event
(`?event=<row id>`: the step that event is shown at) or by a time (`?as_of=T`). Viewers get
every state masked (the Redactor, as event bodies are) before anything is diffed or shown, and
every text that can quote bus data (event fields, marker texts, reducer errors) masked too.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from eventscope.backend.aggregates.fold import Fold, Step, WhatIf
from eventscope.backend.aggregates.history import RecordedEvent
from eventscope.backend.redaction import Redactor
from eventscope.backend.store.aggregates import AggregateRef
from eventscope.web.aggregate_links import aggregate_url
from eventscope.web.comparison import Differences, changed_rows
from eventscope.web.display import iso, safe_text
from eventscope.web.event_view import masked_row
from eventscope.web.json_tree import json_tree

STEP_WINDOW: Final = 20  # steps the page lists on each side of the selected one
API_STEPS: Final = 100
MAX_API_STEPS: Final = 1000
LISTED_ROWS: Final = 50  # row ids listed per kind on one step (the count says how many)
MARKER_LABELS: Final = {
    "gap": "gap",
    "conflict": "conflict",
    "out-of-order": "out of order",
    "duplicate": "duplicate",
    "dead-letter": "dead letter",
    "dead-letter-only": "dead letters only",
    "unversioned": "no version",
    "error": "reducer error",
    "too-large": "too large",
    "note": "note",
}


class SelectionError(ValueError):
    """A version, step, event or time this aggregate cannot be shown at (a 400)."""


@dataclass(frozen=True)
class Selection:
    """Where to look; nothing given: the current state (after the last step)."""

    version: int | None = None
    step: int | None = None  # 1-based; 0 is before the first step
    event: int | None = None  # a row id
    as_of: dt.datetime | None = None

    @property
    def given(self) -> int:
        return sum(v is not None for v in (self.version, self.step, self.event, self.as_of))


def selected_index(fold: Fold, where: Selection) -> int:
    """The step index the selection names (-1: before the first step, the empty state)."""
    count = len(fold.steps)
    if where.version is not None:
        if fold.order != "version":
            raise SelectionError(
                "version: no event of this aggregate carries a version; use step=N (1-based)"
            )
        found = fold.index_at_version(where.version)
        return -1 if found is None else found
    if where.step is not None:
        if where.step > count:
            raise SelectionError(f"step: this aggregate has {count:,} steps")
        return where.step - 1
    if where.event is not None:
        for step in fold.steps:
            if where.event in _row_ids(step):
                return step.index
        raise SelectionError(f"event: #{where.event} is not one of this aggregate's events")
    if where.as_of is not None:
        found = fold.index_as_of(where.as_of)
        return -1 if found is None else found
    return count - 1


def _row_ids(step: Step) -> set[int]:
    rows = [*step.duplicates, *step.rivals, *step.dead_letters]
    if step.event is not None:
        rows.append(step.event)
    return {r.row_id for r in rows}


def step_link(ref: AggregateRef, fold: Fold, index: int, *, api: bool = False) -> str | None:
    """The canonical URL of a step: by version when the version names exactly this step."""
    name, ident, key = ref.aggregate_type, ref.aggregate_id, ref.key
    if index < 0:
        return aggregate_url(name, ident, key, step=0, api=api)
    version = fold.steps[index].version
    if version is not None and fold.index_at_version(version) == index:
        return aggregate_url(name, ident, key, version=version, api=api)
    return aggregate_url(name, ident, key, step=index + 1, api=api)


def masked(value: Any, mask: Redactor | None) -> Any:
    """A state as this reader may see it."""
    return value if mask is None or value is None else mask.data(value)


def _error(value: str | None, mask: Redactor | None) -> str | None:
    """A reducer's error: its message can quote any value of the event (`int(data["pin"])`),
    so viewers see only what kind of error it was."""
    if value is None or mask is None:
        return value
    kind = value.split(":", 1)[0][:80]
    return f"{mask.text(kind)}: (the message is shown to operators only)"


def _text(value: str | None, mask: Redactor | None) -> str | None:
    return value if value is None or mask is None else mask.text(value)


def event_fields(event: RecordedEvent, mask: Redactor | None) -> dict[str, Any]:
    """What a step shows of its folded event (masked for viewers)."""
    row = {
        "id": event.row_id,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "routing_key": event.routing_key,
        "version": event.version,
        "received_at": event.received_at,
        "occurred_at": event.occurred_at,
        "dead_letter": event.dead_letter,
    }
    return masked_row(row, mask)


def step_view(
    ref: AggregateRef, fold: Fold, step: Step, mask: Redactor | None, *, api: bool = False
) -> dict[str, Any]:
    """One step: its version, event, reducer, error, markers and the rows shown with it."""
    event = event_fields(step.event, mask) if step.event is not None else None
    if api and event is not None:
        event["received_at"] = iso(event["received_at"])
        event["occurred_at"] = iso(event["occurred_at"]) if event["occurred_at"] else None
    listed = {
        name: [r.row_id for r in rows[:LISTED_ROWS]]
        for name, rows in (
            ("duplicates", step.duplicates),
            ("dead_letters", step.dead_letters),
            ("rivals", step.rivals),
        )
    }
    return {
        "step": step.index + 1,
        "version": step.version,
        "time": iso(step.time) if api else step.time,
        "event": event,
        "reducer": _text(step.reducer, mask),
        "error": _error(step.error, mask),
        "changed": step.changed,
        "markers": [
            {
                "kind": m.kind,
                "label": MARKER_LABELS.get(m.kind, m.kind),
                "text": _error(m.text, mask) if m.kind == "error" else _text(m.text, mask),
                "rows": list(m.rows),
            }
            for m in step.markers
        ],
        **listed,
        "counts": {
            "duplicates": len(step.duplicates),
            "dead_letters": len(step.dead_letters),
            "rivals": len(step.rivals),
        },
        "url": step_link(ref, fold, step.index, api=api),
    }


def _position(fold: Fold, index: int) -> dict[str, Any]:
    step = fold.steps[index] if index >= 0 else None
    return {
        "step": index + 1,
        "version": step.version if step else None,
        "time": iso(step.time) if step else None,
    }


def _changes(fold: Fold, index: int, mask: Redactor | None) -> Differences:
    """What step `index` changed, between the states this reader may see."""
    if index < 0:
        return Differences()
    before = masked(fold.state_after(index - 1), mask)
    return changed_rows(before, masked(fold.state_after(index), mask))


def problems(fold: Fold) -> list[dict[str, Any]]:
    """Each marker kind with how many steps carry it and the first of them."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for step in fold.steps:
        for marker in step.markers:
            if marker.kind not in counts:
                first[marker.kind] = step.index
            counts[marker.kind] += 1
    return [
        {"kind": kind, "label": MARKER_LABELS.get(kind, kind), "steps": n, "first": first[kind]}
        for kind, n in sorted(counts.items(), key=lambda kv: first[kv[0]])
    ]


def summary(ref: AggregateRef, fold: Fold, capped: bool) -> dict[str, Any]:
    """What is true of the whole history (both renderings)."""
    versions = [s.version for s in fold.steps if s.version is not None]
    return {
        "aggregate_type": ref.aggregate_type,
        "aggregate_id": ref.aggregate_id,
        "order": fold.order,
        "reducers": list(fold.reducers.sources) or ["default: deep merge of each event's data"],
        "steps_total": len(fold.steps),
        "events_recorded": len(fold.rows),
        "first_version": min(versions, default=None),
        "last_version": max(versions, default=None),
        "capped": capped,
    }


def api_state(
    ref: AggregateRef,
    fold: Fold,
    capped: bool,
    where: Selection,
    mask: Redactor | None,
    limit: int = API_STEPS,
) -> dict[str, Any]:
    """`GET /api/aggregates/{type}/{id}`: the state at the selection, what its step changed,
    and the steps folded up to it (at most `limit`, the latest)."""
    index = selected_index(fold, where)
    found = _changes(fold, index, mask)
    first = max(0, index + 1 - limit)
    listed = [step_view(ref, fold, fold.steps[i], mask, api=True) for i in range(first, index + 1)]
    return {
        **summary(ref, fold, capped),
        "problems": [{k: v for k, v in p.items() if k != "first"} for p in problems(fold)],
        "at": _position(fold, index),
        "state": json_safe(masked(fold.state_after(index), mask)),
        "changes": found.changes,
        "changes_truncated": found.truncated,
        "steps": listed,
        "steps_from": first + 1 if listed else None,
        "redacted": mask is not None,
    }


def api_diff(fold: Fold, start: Selection, end: Selection, mask: Redactor | None) -> dict[str, Any]:
    """`GET …/diff`: the structural diff of the states at two points."""
    a, b = selected_index(fold, start), selected_index(fold, end)
    found = changed_rows(masked(fold.state_after(a), mask), masked(fold.state_after(b), mask))
    return {
        "from": _position(fold, a),
        "to": _position(fold, b),
        "changes": found.changes,
        "truncated": found.truncated,
        "redacted": mask is not None,
    }


def api_what_if(fold: Fold, result: WhatIf) -> dict[str, Any]:
    """`POST …/what-if` (operators: nothing masked)."""
    found = changed_rows(result.baseline, result.state)
    return {
        "placement": result.placement,
        "step": result.index + 1,
        "candidate_error": result.candidate_error,
        "state": json_safe(result.state),
        "baseline": json_safe(result.baseline),
        "changes": found.changes,
        "changes_truncated": found.truncated,
        "errors": [
            {
                "step": e.index + 1,
                "version": e.version,
                "row": e.row_id,
                "error": e.error,
                "new": e.new,
            }
            for e in result.errors
        ],
        "stored": False,
    }


def page_view(
    ref: AggregateRef, fold: Fold, capped: bool, where: Selection, mask: Redactor | None
) -> dict[str, Any]:
    """The aggregate page: the selected step, its state and changes, the steps around it,
    and what the stepper links to."""
    index = selected_index(fold, where)
    count = len(fold.steps)
    found = _changes(fold, index, mask)
    lo, hi = max(0, index - STEP_WINDOW), min(count, index + STEP_WINDOW + 1)
    newest = max(((r.commit_seq, r.row_id) for r in fold.rows), default=(0, 0))

    def link(i: int) -> str | None:
        return step_link(ref, fold, i)

    current = aggregate_url(ref.aggregate_type, ref.aggregate_id, ref.key) or ""
    action, _, names = current.partition("?")
    return {
        **summary(ref, fold, capped),
        "problems": [{**p, "url": link(p["first"])} for p in problems(fold)],
        "index": index,
        "selected": step_view(ref, fold, fold.steps[index], mask) if index >= 0 else None,
        "state_tree": json_tree(masked(fold.state_after(index), mask)),
        "changes": found,
        "steps": [step_view(ref, fold, fold.steps[i], mask) for i in range(lo, hi)],
        "earlier": lo,  # steps before the listed ones
        "later": count - hi,
        "links": {
            "first": link(-1),
            "prev": link(index - 1) if index >= 0 else None,
            "next": link(index + 1) if index + 1 < count else None,
            "last": link(count - 1) if count else None,
            "current": current,
            "self": link(index) if where.given else None,
            "api": step_link(ref, fold, index, api=True),
        },
        "form": {"action": action, "hidden": parse_qsl(names, keep_blank_values=True)},
        "as_of": where.as_of,
        "live_after": f"{newest[0]}-{newest[1]}",
        "redacted": mask is not None,
    }


def json_safe(value: Any) -> Any:
    """A state an API client can read: lone surrogates escaped (`\\udXXX`), NaN and the
    infinities as the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return value
    except (ValueError, UnicodeEncodeError):
        pass
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        into, key, item = stack.pop()
        if isinstance(item, dict):
            pairs = [(safe_text(str(k)), v) for k, v in item.items()]
            into[key] = dict.fromkeys(k for k, _ in pairs)  # keys in their order
            stack.extend((into[key], k, v) for k, v in pairs)
        elif isinstance(item, list):
            into[key] = [None] * len(item)
            stack.extend((into[key], i, v) for i, v in enumerate(item))
        elif isinstance(item, str):
            into[key] = safe_text(item)
        elif isinstance(item, float) and not math.isfinite(item):
            into[key] = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
        else:
            into[key] = item
    return root[0]
