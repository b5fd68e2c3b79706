"""One correlation's events as a trace: waterfall, service lanes, causation tree, failures.

Pure: the rows come from the store (`store.trace`), the result goes to the page and the API.
Bus data decides everything here, so nothing in it may break the build: causation ids that
form cycles, point at their own event or at nothing, duplicated event ids, missing times —
every row given appears exactly once in the waterfall and once in the tree.

- Time of an event: `occurred_at`, else `received_at` (arrival). The waterfall is ordered by
  (time, commit_seq, id), what the store pages by.
- Dead letters (native `x-death` copies and the seed's `dlq.<key>` wrappers, which the
  envelope describes by their original event) and retry copies (an `x-death` copy whose latest
  death is `expired`, back on a working exchange: the usual TTL retry) are placed right after
  the event they are copies of, found by event id, then message id.
- A cause is the event whose event id (else message id) equals the causation id.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from eventscope.backend.xdeath import DeathEntry, death_history, first_death

Role = Literal["event", "dead_letter", "retry"]
LONG_GAP_MIN = dt.timedelta(seconds=1)  # never call a gap shorter than this long
LONG_GAP_FACTOR = 5  # ... nor one under five times the page's median gap
MAX_LANES = 12  # services with a lane of their own; the others share one
MAX_DEATH_HEADERS = 256 * 1024  # headers text parsed to read x-death (a frame holds less)
REPLAY_ID_MARK = '"x-eventscope-replay-id"'  # the header's name as the stored JSON holds it
_DEAD_LETTER_EXCHANGE = re.compile(r"(^|[^a-z])(dlx|dlq|dead)", re.IGNORECASE)
_UTC = dt.UTC


def event_time(row: Mapping[str, Any]) -> dt.datetime:
    """When the event happened: its occurred-at, else when it arrived (UTC, aware)."""
    value = row.get("occurred_at") or row.get("received_at")
    if not isinstance(value, dt.datetime):
        return dt.datetime.min.replace(tzinfo=_UTC)
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def sort_key(row: Mapping[str, Any]) -> tuple[dt.datetime, int, int]:
    """The waterfall's order, the one the store pages by."""
    return event_time(row), int(row.get("commit_seq") or 0), int(row.get("id") or 0)


def deaths(headers_json: str | None) -> list[DeathEntry]:
    """The `x-death` entries of a row's typed headers (newest first); [] when there are none
    or they cannot be read (a forged or malformed header is data, not an error)."""
    if not headers_json or len(headers_json) > MAX_DEATH_HEADERS:
        return []
    return death_history(headers_json)[0]


def _first_death_exchange(headers_json: str | None) -> str | None:
    first = first_death(headers_json)
    return first.exchange if first is not None and first.source == "headers" else None


def _replayed_on_a_working_exchange(row: Mapping[str, Any], headers: Any) -> bool:
    return (
        isinstance(headers, str)
        and REPLAY_ID_MARK in headers
        and row.get("captured_from") is None
        and not _DEAD_LETTER_EXCHANGE.search(str(row.get("exchange") or ""))
        and not str(row.get("routing_key") or "").startswith("dlq.")
    )


def role_of(row: Mapping[str, Any]) -> Role:
    """An ordinary event, a dead letter, or a retry copy.

    A retry copy carries `x-death` whose newest entry is `expired` and is back on a working
    exchange: the exchange it first died from, or any exchange not named like a dead-letter
    one (`dlx`, `dlq`, `dead`) under a routing key that is not `dlq.<key>`. A replay of a dead
    letter by eventscope (it carries `x-eventscope-replay-id`) seen on such a working
    exchange is an event again: it keeps its `x-death` byte for byte, but did not fail."""
    kind = row.get("dead_letter")
    if kind is None:
        return "event"
    if kind != "x-death":
        return "dead_letter"
    headers = row.get("death_headers", row.get("headers"))
    if _replayed_on_a_working_exchange(row, headers):
        return "event"
    entries = deaths(headers)
    if not entries or entries[0].reason != "expired":
        return "dead_letter"
    exchange = str(row.get("exchange") or "")
    if exchange and exchange == _first_death_exchange(headers):
        return "retry"
    routing_key = str(row.get("routing_key") or "")
    if _DEAD_LETTER_EXCHANGE.search(exchange) or routing_key.startswith("dlq."):
        return "dead_letter"
    return "retry"


def retry_count(row: Mapping[str, Any]) -> int | None:
    """How many times a retry copy has expired back (x-death `count` of that entry)."""
    entries = deaths(row.get("death_headers", row.get("headers")))
    return entries[0].count if entries else None


@dataclass(frozen=True)
class Lane:
    label: str | None  # the service; None for the shared lanes
    kind: Literal["service", "other", "unknown"]
    events: int = 0


@dataclass(frozen=True)
class Lanes:
    """One column per source service, in order of first appearance; past `MAX_LANES` the rest
    share an "other services" lane, events without a source an "unknown" lane."""

    lanes: tuple[Lane, ...]
    index: Mapping[str, int]
    other: int | None
    unknown: int | None

    @classmethod
    def of(cls, sources: Iterable[tuple[str | None, int]], max_lanes: int = MAX_LANES) -> Lanes:
        """`sources`: (service or None, events) in order of first appearance."""
        own: list[Lane] = []
        index: dict[str, int] = {}
        other_events = unknown_events = 0
        for source, count in sources:
            if source is None:
                unknown_events += count
            elif source in index:
                continue
            elif len(own) < max_lanes:
                index[source] = len(own)
                own.append(Lane(source, "service", count))
            else:
                other_events += count
        lanes = list(own)
        other = unknown = None
        if other_events:
            other = len(lanes)
            lanes.append(Lane(None, "other", other_events))
        if unknown_events:
            unknown = len(lanes)
            lanes.append(Lane(None, "unknown", unknown_events))
        return cls(tuple(lanes), index, other, unknown)

    def lane_of(self, source: str | None) -> int:
        """The lane of a source; a source first seen after the lanes were laid out (a live
        event of a new service) goes to the shared lane, made on demand at the end."""
        if source is None:
            return self.unknown if self.unknown is not None else len(self.lanes)
        found = self.index.get(source)
        if found is not None:
            return found
        return self.other if self.other is not None else len(self.lanes)

    @property
    def width(self) -> int:
        """Lanes a row may use (shared lanes made on demand included)."""
        return len(self.lanes) + 1


@dataclass
class Step:
    """One row of the waterfall."""

    row: dict[str, Any]
    role: Role
    offset: dt.timedelta  # since the first event of the correlation
    gap: dt.timedelta | None  # to the row shown before it (None for the very first)
    long_gap: bool
    lane: int
    cause: int | None = None  # row id of the event that caused it (or that it is a copy of)
    cause_lane: int | None = None
    copy_of: int | None = None  # dead letters and retries: the row id of the original
    orphan: bool = False  # names a cause that was never recorded
    self_caused: bool = False  # names itself as its cause
    retry: int | None = None  # a retry copy's count

    @property
    def id(self) -> int:
        return int(self.row["id"])


@dataclass(frozen=True)
class Node:
    """One entry of the causation tree, in pre-order."""

    id: int
    depth: int
    parent: int | None
    orphan: bool = False  # names a cause that was never recorded
    cycle: bool = False  # its cause chain leads back to itself (or it names itself): cut here
    elsewhere: bool = False  # its cause is recorded, beyond the rows given (another page)


@dataclass
class Trace:
    steps: list[Step]
    tree: list[Node]
    by_id: dict[int, dict[str, Any]] = field(default_factory=dict)


def _index(rows: Sequence[dict[str, Any]], column: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        value = row.get(column)
        if isinstance(value, str) and value:
            found.setdefault(value, []).append(row)
    return found


class _Resolver:
    """Finds the event a causation id or a copy names: by event id, then message id; among
    several, an original before a copy, then the earliest."""

    def __init__(self, rows: Sequence[dict[str, Any]], roles: Mapping[int, Role]) -> None:
        self.roles = roles
        self.by_event = _index(rows, "event_id")
        self.by_message = _index(rows, "message_id")

    def find(self, ident: str | None, exclude: int | None = None) -> dict[str, Any] | None:
        if not ident:
            return None
        for table in (self.by_event, self.by_message):
            candidates = [r for r in table.get(ident, ()) if r["id"] != exclude]
            originals = [r for r in candidates if self.roles.get(r["id"]) == "event"]
            if originals or candidates:
                return min(originals or candidates, key=sort_key)
        return None


def build(
    rows: Sequence[dict[str, Any]],
    *,
    lanes: Lanes | None = None,
    first_at: dt.datetime | None = None,
    previous_at: dt.datetime | None = None,
    outside: Sequence[dict[str, Any]] = (),
) -> Trace:
    """The trace of `rows` (one page of one correlation, any order).

    `first_at` is the correlation's first event time (offsets count from it; default: the
    first row's), `previous_at` the time of the row shown just before this page (its first
    gap), `outside` rows of the same correlation beyond this page that causes may name."""
    page = sorted((dict(r) for r in _unique(rows)), key=sort_key)
    roles: dict[int, Role] = {r["id"]: role_of(r) for r in page}
    lanes = lanes or Lanes.of(_sources(page))
    known = {r["id"]: r for r in page}
    outside_rows = [dict(r) for r in _unique(outside) if r["id"] not in known]
    for r in outside_rows:
        roles.setdefault(r["id"], role_of(r))
    resolver = _Resolver([*page, *outside_rows], roles)
    ordered = _copies_after_originals(page, roles, resolver)
    start = first_at or (event_time(ordered[0]) if ordered else None)
    gaps = _gaps(ordered, previous_at)
    threshold = _long_gap_threshold(gaps)
    steps: list[Step] = []
    for row, gap in zip(ordered, gaps, strict=True):
        role = roles[row["id"]]
        step = Step(
            row=row,
            role=role,
            offset=event_time(row) - start if start else dt.timedelta(0),
            gap=gap,
            long_gap=gap is not None and gap >= threshold,
            lane=lanes.lane_of(row.get("source")),
            retry=retry_count(row) if role == "retry" else None,
        )
        cause = _cause_of(row, role, resolver)
        if cause is not None:
            step.cause = cause["id"]
            step.cause_lane = lanes.lane_of(cause.get("source"))
            if role != "event":
                step.copy_of = cause["id"]
        elif row.get("causation_id"):
            names_itself = row["causation_id"] in (row.get("event_id"), row.get("message_id"))
            step.self_caused, step.orphan = names_itself, not names_itself
        steps.append(step)
    by_id = {r["id"]: r for r in page}
    return Trace(steps, causation_tree(page, roles, resolver), by_id)


def _unique(rows: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Each row id once (a page and a live update may overlap)."""
    seen: set[Any] = set()
    for row in rows:
        if row.get("id") is None or row["id"] in seen:
            continue
        seen.add(row["id"])
        yield row


def _sources(rows: Sequence[dict[str, Any]]) -> list[tuple[str | None, int]]:
    counts: dict[str | None, int] = {}
    for row in rows:
        source = row.get("source")
        counts[source] = counts.get(source, 0) + 1
    return list(counts.items())


def _cause_of(row: dict[str, Any], role: Role, resolver: _Resolver) -> dict[str, Any] | None:
    """A copy's cause is its original; an event's is what its causation id names (never
    itself)."""
    if role != "event":
        original = _original_of(row, resolver)
        if original is not None:
            return original
    return resolver.find(row.get("causation_id"), exclude=row["id"])


def _original_of(row: dict[str, Any], resolver: _Resolver) -> dict[str, Any] | None:
    for column, table in (("event_id", resolver.by_event), ("message_id", resolver.by_message)):
        ident = row.get(column)
        if not ident:
            continue
        originals = [
            r
            for r in table.get(ident, ())
            if r["id"] != row["id"] and resolver.roles.get(r["id"]) == "event"
        ]
        if originals:
            before = [r for r in originals if sort_key(r) <= sort_key(row)]
            return max(before, key=sort_key) if before else min(originals, key=sort_key)
    return None


def _copies_after_originals(
    page: list[dict[str, Any]], roles: Mapping[int, Role], resolver: _Resolver
) -> list[dict[str, Any]]:
    """Time order, with every dead letter and retry copy moved right after its original
    (when that is on this page), in their own time order."""
    on_page = {r["id"] for r in page}
    attached: dict[int, list[dict[str, Any]]] = {}
    rest: list[dict[str, Any]] = []
    for row in page:
        original = _original_of(row, resolver) if roles[row["id"]] != "event" else None
        if original is not None and original["id"] in on_page:
            attached.setdefault(original["id"], []).append(row)
        else:
            rest.append(row)
    ordered: list[dict[str, Any]] = []
    for row in rest:
        ordered.append(row)
        ordered.extend(attached.pop(row["id"], ()))
    for copies in attached.values():  # originals that are copies themselves: keep them all
        ordered.extend(copies)
    return ordered


def _gaps(
    ordered: Sequence[dict[str, Any]], previous_at: dt.datetime | None
) -> list[dt.timedelta | None]:
    gaps: list[dt.timedelta | None] = []
    previous = previous_at
    for row in ordered:
        at = event_time(row)
        gaps.append(at - previous if previous is not None else None)
        previous = at
    return gaps


def _long_gap_threshold(gaps: Sequence[dt.timedelta | None]) -> dt.timedelta:
    """Long: at least a second and five times the median positive gap of the page."""
    positive = [g for g in gaps if g is not None and g > dt.timedelta(0)]
    if not positive:
        return LONG_GAP_MIN
    return max(LONG_GAP_MIN, statistics.median_low(positive) * LONG_GAP_FACTOR)


def causation_tree(
    rows: Sequence[dict[str, Any]],
    roles: Mapping[int, Role] | None = None,
    resolver: _Resolver | None = None,
) -> list[Node]:
    """Who caused what, as a pre-order list of nodes: every row exactly once.

    A row's parent is its cause (copies: their original). A cause that was never recorded
    (not among `rows`) makes the row an orphan root; a chain that loops is cut at the first
    row of the loop in time order, which becomes a root marked `cycle`."""
    rows = sorted((dict(r) for r in _unique(rows)), key=sort_key)
    roles = roles or {r["id"]: role_of(r) for r in rows}
    resolver = resolver or _Resolver(rows, roles)
    order = {r["id"]: i for i, r in enumerate(rows)}
    parent: dict[int, int | None] = {}
    orphan: set[int] = set()
    elsewhere: set[int] = set()
    cycle: set[int] = set()
    for row in rows:
        ident = row["id"]
        cause = _cause_of(row, roles.get(ident, "event"), resolver)
        parent[ident] = cause["id"] if cause is not None and cause["id"] in order else None
        if cause is not None and parent[ident] is None:
            elsewhere.add(ident)
        elif cause is None and row.get("causation_id"):
            names_itself = row["causation_id"] in (row.get("event_id"), row.get("message_id"))
            (cycle if names_itself else orphan).add(ident)
    cycle |= _cut_cycles(parent, order)
    children: dict[int | None, list[int]] = {}
    for row in rows:
        children.setdefault(parent[row["id"]], []).append(row["id"])
    nodes: list[Node] = []
    stack = [(root, 0) for root in reversed(children.get(None, []))]
    while stack:
        ident, depth = stack.pop()
        nodes.append(
            Node(ident, depth, parent[ident], ident in orphan, ident in cycle, ident in elsewhere)
        )
        stack.extend((child, depth + 1) for child in reversed(children.get(ident, [])))
    return nodes


def _cut_cycles(parent: dict[int, int | None], order: Mapping[int, int]) -> set[int]:
    """Make the parent links a forest: in each loop, the earliest row loses its parent."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    cut: set[int] = set()
    for start in sorted(parent, key=order.__getitem__):
        path: list[int] = []
        node: int | None = start
        while node is not None and state.get(node) is None:
            state[node] = 1
            path.append(node)
            node = parent[node]
        if node is not None and state.get(node) == 1:  # walked into the current path: a loop
            loop = path[path.index(node) :]
            first = min(loop, key=order.__getitem__)
            parent[first] = None
            cut.add(first)
        for visited in path:
            state[visited] = 2
    return cut
