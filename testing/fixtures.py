"""A correlation recorded once, as a fixture, compared with a later run of the same flow.

A fixture is the JSON file `GET /api/correlations/{id}/fixture` downloads: the correlation's
events as export records (typed, byte-exact). A later run matches it when it has the same
events — exchange, routing key and type — in the same causal order, with bodies that are equal
except for what differs on every run by nature: ids, correlation ids and timestamps (see
`normalise`), and the paths the caller ignores.

Causal order: an event whose `causation_id` names an earlier event of the correlation (its
event id or message id) comes after it, as its child; the effects of one cause may be recorded
in either order (they are compared sorted); events without a known cause keep the order they
were recorded in. Pure: no I/O except `load_fixture` reading a file.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_REPORTED = 20  # body differences listed in one failure

# Keys whose values are ids or times: by name. `id`, `orderId`, `order_id`, `request-id`,
# `uuid`; `timestamp`, `createdAt`, `created_at`, `startTime`, `dueDate`, `at`.
_ID_KEY = re.compile(r"^(id|ID|uuid|guid)$|(Id|ID|[_-]id|Uuid|UUID|[_-]uuid|Guid|[_-]guid)$")
_TIME_KEY = re.compile(
    r"^(timestamp|time|date|at|ts)$|(Timestamp|[_-]timestamp|At|[_-]at|Time|[_-]time|Date|[_-]date)$"
)
# Values that are ids or times whatever their key: UUIDs and ISO 8601 date-times.
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
ID, TIME, CORRELATION, IGNORED = "<id>", "<timestamp>", "<correlation id>", "<ignored>"


class FixtureError(ValueError):
    """The file is not an eventscope fixture (or one this version cannot read)."""


@dataclass(frozen=True)
class FixtureEvent:
    """One event of a fixture: what is compared, and the whole record it came from."""

    exchange: str | None
    routing_key: str | None
    event_type: str | None
    event_id: str | None
    message_id: str | None
    causation_id: str | None
    body: Any  # parsed JSON, or str (text), or bytes (binary), or None (withheld)
    record: dict[str, Any] = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        """`order.created (OrderCreated)`: how failures name an event."""
        key = self.routing_key if self.routing_key is not None else "—"
        return f"{key} ({self.event_type})" if self.event_type else key


@dataclass(frozen=True)
class Fixture:
    correlation_id: str
    events: tuple[FixtureEvent, ...]
    masked: bool = False  # exported by a viewer: secrets masked, binary bodies withheld
    truncated: bool = False  # the correlation was larger than an export holds
    source: str | None = None  # the file it was read from


def load_fixture(path: str | Path) -> Fixture:
    """Read a fixture file (as downloaded from eventscope)."""
    data = Path(path).read_bytes()
    return parse_fixture(data, source=str(path))


def parse_fixture(data: bytes | str | dict[str, Any], source: str | None = None) -> Fixture:
    """A fixture from its JSON text or parsed document."""
    document = json.loads(data) if isinstance(data, bytes | str) else data
    if not isinstance(document, dict) or "eventscope_fixture" not in document:
        raise FixtureError(f"{source or 'data'}: not an eventscope fixture")
    if document["eventscope_fixture"] != 1:
        raise FixtureError(f"{source or 'data'}: fixture format {document['eventscope_fixture']}")
    records = document.get("events")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise FixtureError(f"{source or 'data'}: `events` is not a list of records")
    return Fixture(
        correlation_id=str(document.get("correlation_id")),
        events=tuple(event_of(record) for record in records),
        masked=bool(document.get("masked")),
        truncated=bool(document.get("truncated")),
        source=source,
    )


def event_of(record: dict[str, Any]) -> FixtureEvent:
    def text(name: str) -> str | None:
        value = record.get(name)
        return None if value is None else str(value)

    return FixtureEvent(
        exchange=text("exchange"),
        routing_key=text("routing_key"),
        event_type=text("event_type"),
        event_id=text("event_id"),
        message_id=text("message_id"),
        causation_id=text("causation_id"),
        body=body_of(record),
        record=record,
    )


def body_of(record: dict[str, Any]) -> Any:
    """The body a record carries: JSON data when it is JSON, else text, else bytes."""
    encoding = record.get("body_encoding")
    if encoding == "json":
        return record.get("body")
    if encoding == "text":
        text = str(record.get("body_text") or "")
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    if encoding == "base64":
        try:
            return base64.b64decode(str(record.get("body_base64") or ""), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


# -- normalising bodies ---------------------------------------------------------------------------


def _matches(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return len(path) == len(pattern) and all(
        p in ("*", k) for k, p in zip(path, pattern, strict=True)
    )


def normalise(body: Any, correlation_id: str | None = None, ignore: Iterable[str] = ()) -> Any:
    """The body with what differs on every run replaced by a placeholder: values under id and
    time keys (`id`, `orderId`, `order_id`, `timestamp`, `createdAt`, ...), UUIDs and ISO
    date-times anywhere, the correlation id itself, and the `ignore` paths (`data.total`,
    `items.*.price`; `*` is any one key or list index). The key stays: a key that is missing
    or extra is still a difference."""
    patterns = [tuple(p.split(".")) for p in ignore]

    def walk(value: Any, path: tuple[str, ...], key: str | None) -> Any:
        if any(_matches(path, p) for p in patterns):
            return IGNORED
        if key is not None and not isinstance(value, dict | list):
            if _ID_KEY.search(key):
                return ID
            if _TIME_KEY.search(key):
                return TIME
        if isinstance(value, dict):
            return {k: walk(v, (*path, str(k)), str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, str(i)), None) for i, v in enumerate(value)]
        if isinstance(value, str):
            if correlation_id and value == correlation_id:
                return CORRELATION
            if _UUID.match(value):
                return ID
            if _ISO_TIME.match(value):
                return TIME
        return value

    return walk(body, (), None)


# -- causal order ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """An event in causal order: its depth and the position of its cause in that order."""

    event: FixtureEvent
    depth: int
    cause: int | None  # index in the ordered list, None for an event without a known cause
    body: Any  # normalised

    @property
    def shape(self) -> tuple[Any, ...]:
        return (
            self.event.exchange,
            self.event.routing_key,
            self.event.event_type,
            self.depth,
            self.cause,
        )


def causal_order(
    events: Sequence[FixtureEvent], correlation_id: str | None, ignore: Iterable[str] = ()
) -> list[Placed]:
    """The events as a forest walked depth first: roots in recorded order, the effects of one
    cause sorted (exchange, routing key, type, normalised body, what they caused), each after
    its cause."""
    ignore = list(ignore)
    bodies = [normalise(e.body, correlation_id, ignore) for e in events]
    known: dict[str, int] = {}
    parent: list[int | None] = []
    for index, event in enumerate(events):
        # Only an earlier event can be the cause: no cycles, whatever the ids claim.
        cause = known.get(event.causation_id) if event.causation_id else None
        parent.append(cause)
        for ident in (event.event_id, event.message_id):
            if ident and ident not in known:
                known[ident] = index
    children: dict[int | None, list[int]] = {}
    for index, cause in enumerate(parent):
        children.setdefault(cause, []).append(index)
    # A digest of each event with everything it caused: siblings are sorted by it, so two runs
    # whose effects arrived in other orders give the same sequence. Effects come after their
    # cause, so walking backwards meets every child before its parent.
    own = [
        _canonical([e.exchange, e.routing_key, e.event_type, bodies[i]])
        for i, e in enumerate(events)
    ]
    digest = [""] * len(events)
    for index in reversed(range(len(events))):
        below = sorted(digest[child] for child in children.get(index, []))
        digest[index] = hashlib.sha256(json.dumps([own[index], below]).encode()).hexdigest()

    def sort_key(index: int) -> tuple[str, str]:
        return (own[index], digest[index])

    placed: list[Placed] = []
    stack: list[tuple[int, int, int | None]] = [
        (root, 0, None) for root in reversed(children.get(None, []))
    ]
    while stack:
        index, depth, cause_position = stack.pop()
        position = len(placed)
        placed.append(Placed(events[index], depth, cause_position, bodies[index]))
        for child in sorted(children.get(index, []), key=sort_key, reverse=True):
            stack.append((child, depth + 1, position))
    return placed


def _canonical(body: Any) -> str:
    if isinstance(body, bytes):
        return "b:" + body.hex()
    try:
        return json.dumps(body, sort_keys=True, ensure_ascii=True, default=str)
    except (ValueError, RecursionError):
        return repr(body)


# -- comparing ------------------------------------------------------------------------------------


def differences(expected: Fixture, actual: Fixture, ignore: Iterable[str] = ()) -> list[str]:
    """What differs between a fixture and a later run, as lines a person reads; empty when
    they match."""
    ignore = list(ignore)
    want = causal_order(expected.events, expected.correlation_id, ignore)
    got = causal_order(actual.events, actual.correlation_id, ignore)
    if [p.shape for p in want] != [p.shape for p in got]:
        return sequence_report(want, got)
    lines: list[str] = []
    for number, (w, g) in enumerate(zip(want, got, strict=True), start=1):
        for line in body_differences(w.body, g.body):
            lines.append(f"event {number} {w.event.label}: body{line}")
    if len(lines) > MAX_REPORTED:
        lines = [*lines[:MAX_REPORTED], f"... and {len(lines) - MAX_REPORTED} more differences"]
    return lines


def _outline(placed: Placed) -> str:
    indent = "  " * placed.depth
    arrow = "└ " if placed.depth else ""
    exchange = f"  [{placed.event.exchange}]" if placed.event.exchange else ""
    return f"{indent}{arrow}{placed.event.label}{exchange}"


def sequence_report(want: list[Placed], got: list[Placed]) -> list[str]:
    """The two causal orders side by side, with what is missing and what is extra."""
    left = [_outline(p) for p in want]
    right = [_outline(p) for p in got]
    lines = ["the events differ (causal order: an effect is indented under its cause):"]
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            lines += [f"    {line}" for line in left[a0:a1]]
            continue
        lines += [f"  - {line}    (expected, missing)" for line in left[a0:a1]]
        lines += [f"  + {line}    (arrived, not expected)" for line in right[b0:b1]]
    return lines


def body_differences(want: Any, got: Any, path: str = "") -> list[str]:
    """`.data.total: expected 62.49, got 60.0`-style lines, one per differing leaf."""
    out: list[str] = []
    stack: list[tuple[Any, Any, str]] = [(want, got, path)]
    while stack and len(out) <= MAX_REPORTED:
        w, g, here = stack.pop()
        if isinstance(w, dict) and isinstance(g, dict):
            deeper = []
            for key in dict.fromkeys([*w, *g]):
                where = f"{here}.{key}"
                if key not in g:
                    out.append(f"{where}: missing (expected {_short(w[key])})")
                elif key not in w:
                    out.append(f"{where}: not expected (got {_short(g[key])})")
                else:
                    deeper.append((w[key], g[key], where))
            stack.extend(reversed(deeper))
        elif isinstance(w, list) and isinstance(g, list):
            if len(w) != len(g):
                out.append(f"{here}: expected {len(w)} items, got {len(g)}")
            for index in reversed(range(min(len(w), len(g)))):
                stack.append((w[index], g[index], f"{here}.{index}"))
        elif w != g or type(w) is not type(g):
            out.append(f"{here or ' '}: expected {_short(w)}, got {_short(g)}")
    return out


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, bytes):
        text = f"{len(value)} bytes {value[:24].hex()}"
    else:
        try:
            text = json.dumps(value, ensure_ascii=True)
        except (ValueError, RecursionError, TypeError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
