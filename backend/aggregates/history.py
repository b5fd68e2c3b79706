"""An aggregate's recorded rows → the steps to fold, in order, with every problem marked.

The folding rule (docs/architecture.md, "Aggregates"):

- Arrival order is (received_at, commit_seq, row id).
- Each distinct event is folded once. Rows with the same event id and the same body bytes are
  one event: the first to arrive is folded, the others are marked `duplicate` (a producer's
  second publish, or the same event seen on another exchange).
- Dead-letter copies (rows with `dead_letter`: RabbitMQ's `x-death` copies, the seed's
  `dlq.<key>` wrappers) are never folded: they are what failed. Each is shown at its version
  (a version with nothing else gets a step of its own), else at the step of the event with
  its event id, else where it arrived.
- When any event has a version, steps follow versions (`order == "version"`); an event without
  one is placed after the highest version that arrived before it (`unversioned`). Otherwise
  steps follow arrival (`order == "arrival"`).
- Two different events claiming one version: the first to arrive is folded, the others are
  listed on its step (`conflict`) and not folded.
- An event that arrived after an event with a higher version is folded at its version and
  marked `out-of-order`. Missing versions are marked `gap` on the step after them (before the
  first step when the first recorded version is above 1).
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from eventscope.backend.aggregates.json_values import parse_event_body
from eventscope.backend.aggregates.reducers import Event, ReducerError
from eventscope.backend.envelope import body_document, extract
from eventscope.backend.extraction import DEFAULT_EXTRACTOR, Extractor

Order = Literal["version", "arrival"]
MarkerKind = Literal[
    "gap",
    "conflict",
    "out-of-order",
    "duplicate",
    "dead-letter",
    "dead-letter-only",
    "unversioned",
    "error",
    "too-large",
    "note",
]
MAX_LISTED_ROWS: Final = 50  # rows linked from one marker; the text gives the full count


def _utc(value: Any) -> dt.datetime | None:
    """An aware datetime (SQLite gives naive ones, in UTC), or None."""
    if not isinstance(value, dt.datetime):
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


@dataclass(slots=True)  # not frozen: a frozen init costs more than folding the event
class RecordedEvent:
    """What the fold needs of one stored row (`from_row` reads the store's row dicts).
    Read-only by convention."""

    row_id: int
    received_at: dt.datetime
    body: bytes
    event_id: str | None = None
    event_type: str | None = None
    aggregate_type: str | None = None
    aggregate_id: str | None = None
    version: int | None = None
    occurred_at: dt.datetime | None = None
    commit_seq: int = 0
    dead_letter: str | None = None  # "x-death", "dlq-key" or None
    routing_key: str = ""
    body_size: int | None = None  # the original size when the stored body was truncated
    body_truncated: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RecordedEvent:
        get = row.get
        received = _utc(get("received_at")) or dt.datetime.min.replace(tzinfo=dt.UTC)
        occurred = get("occurred_at")
        return cls(
            int(row["id"]),
            received,
            bytes(get("body") or b""),
            get("event_id"),
            get("event_type"),
            get("aggregate_type"),
            get("aggregate_id"),
            get("aggregate_version"),
            _utc(occurred) if occurred is not None else None,
            int(get("commit_seq") or 0),
            get("dead_letter"),
            get("routing_key") or "",
            get("body_size"),
            bool(get("body_truncated")),
        )

    @property
    def time(self) -> dt.datetime:
        """When it happened: the occurred time, else the received time."""
        return self.occurred_at or self.received_at

    @property
    def arrival(self) -> tuple[dt.datetime, int, int]:
        return (self.received_at, self.commit_seq, self.row_id)

    @property
    def identity(self) -> tuple[str | None, int, bytes]:
        """Same event id and same body: the same event (`duplicate`)."""
        return (self.event_id, self.body_size or len(self.body), self.body)

    def event(self) -> Event:
        """The event reducers see; ReducerError when the body cannot be folded."""
        if self.body_truncated:
            raise ReducerError(
                f"the body was stored truncated ({len(self.body)} of {self.body_size} bytes): "
                "it cannot be folded"
            )
        parsed = parse_event_body(self.body)
        if isinstance(parsed, str):
            raise ReducerError(f"the body {parsed}: nothing to fold")
        original = parsed.get("originalEvent")
        if isinstance(original, dict) and "type" not in parsed and "eventType" not in parsed:
            parsed = original  # a seed dead letter: the event is the one it carries
        return Event(
            body=parsed,
            event_type=self.event_type,
            event_id=self.event_id,
            aggregate_type=self.aggregate_type,
            aggregate_id=self.aggregate_id,
            version=self.version,
            occurred_at=self.occurred_at,
            received_at=self.received_at,
            row_id=self.row_id if self.row_id > 0 else None,
        )


def candidate_from_body(
    body: bytes,
    *,
    received_at: dt.datetime,
    properties: Mapping[str, Any] | None = None,
    headers: Mapping[str, Any] | None = None,
    extractor: Extractor = DEFAULT_EXTRACTOR,
) -> RecordedEvent:
    """An event that was not recorded (an edited dead letter, say), read as the recorder would
    read it: for `Fold.what_if`. Its row id is 0."""
    props = properties or {}
    _, parsed = body_document(body, props)
    found = extract(parsed, props, headers, extractor)
    return RecordedEvent(
        row_id=0,
        received_at=_utc(received_at) or dt.datetime.now(dt.UTC),
        body=body,
        event_id=found["event_id"],
        event_type=found["event_type"],
        aggregate_type=found["aggregate_type"],
        aggregate_id=found["aggregate_id"],
        version=found["aggregate_version"],
        occurred_at=found["occurred_at"],
        commit_seq=2**62,
    )


@dataclass(frozen=True, slots=True)
class Marker:
    """A problem or fact shown at a step; `rows` are the row ids it links to."""

    kind: MarkerKind
    text: str
    rows: tuple[int, ...] = ()


_NONE: Final[list[Any]] = []  # shared "nothing yet": replaced, never appended to


class PlannedStep:
    """One step before folding: the event to fold (None when only dead letters are here) and
    the rows shown with it. Lists are made when first needed (fewer objects, less GC)."""

    __slots__ = ("dead_letters", "duplicates", "event", "markers", "position", "rivals", "version")

    def __init__(
        self, position: tuple[Any, ...], version: int | None, event: RecordedEvent | None
    ) -> None:
        self.position = position  # sort key: see `plan`
        self.version = version
        self.event = event
        self.duplicates: list[RecordedEvent] = _NONE
        self.rivals: list[RecordedEvent] = _NONE
        self.dead_letters: list[RecordedEvent] = _NONE
        self.markers: list[Marker] = _NONE

    def add(self, name: str, item: Any) -> None:
        """Append to the list attribute `name`, making it first if needed."""
        current = getattr(self, name)
        if current is _NONE:
            current = []
            setattr(self, name, current)
        current.append(item)

    @property
    def time(self) -> dt.datetime:
        first = self.event or self.dead_letters[0]
        return first.time


@dataclass(frozen=True, slots=True)
class Plan:
    order: Order
    steps: tuple[PlannedStep, ...]


_BEFORE_ALL: Final = float("-inf")
_ARRIVAL: Final = operator.attrgetter("received_at", "commit_seq", "row_id")


def plan(rows: Sequence[RecordedEvent], *, after_version: int | None = None) -> Plan:
    """The steps for one aggregate's rows, given in any order (see the module docstring).
    `after_version`: the rows continue a history that ended at that version (for gaps)."""
    arrived = sorted(rows, key=_ARRIVAL)
    firsts: dict[tuple[str | None, int, bytes], PlannedStep] = {}
    candidates: list[PlannedStep] = []
    dead: list[RecordedEvent] = []
    for row in arrived:
        if row.dead_letter:
            dead.append(row)
            continue
        seen = firsts.get(row.identity)
        if seen is not None:
            seen.add("duplicates", row)
            continue
        step = PlannedStep((), row.version, row)
        firsts[row.identity] = step
        candidates.append(step)
    versioned = any(s.version is not None for s in candidates) or (
        not candidates and any(d.version is not None for d in dead)
    )
    steps = _by_version(arrived, candidates, dead) if versioned else _by_arrival(candidates, dead)
    for step in steps:
        _mark(step)
    if versioned:
        _mark_gaps(steps, after_version)
    return Plan("version" if versioned else "arrival", tuple(steps))


def _by_version(
    arrived: list[RecordedEvent], candidates: list[PlannedStep], dead: list[RecordedEvent]
) -> list[PlannedStep]:
    winners: dict[int, PlannedStep] = {}
    by_row = {s.event.row_id: s for s in candidates if s.event is not None}
    # Anchors and out-of-order arrivals both need "the highest version folded so far", in
    # arrival order; rivals (not folded) do not count.
    highest: int | float = _BEFORE_ALL
    steps: list[PlannedStep] = []
    by_event_id: dict[str, PlannedStep] = {}
    unplaced_dead: list[tuple[RecordedEvent, int | float]] = []
    for row in arrived:
        if row.dead_letter:
            unplaced_dead.append((row, highest))
            continue
        step = by_row.get(row.row_id)
        if step is None:
            continue  # a duplicate, listed on its first
        if step.version is None:
            step.position = (highest, 1, row.arrival)
            step.add("markers", Marker("unversioned", "no version: placed where it arrived"))
            steps.append(step)
        elif step.version in winners:
            for rival in (row, *step.duplicates):
                winners[step.version].add("rivals", rival)
            continue
        else:
            winners[step.version] = step
            step.position = (step.version, 0, row.arrival)
            if step.version < highest:
                step.add(
                    "markers",
                    Marker(
                        "out-of-order",
                        f"arrived after version {int(highest)}: folded at version {step.version}",
                    ),
                )
            highest = max(highest, step.version)
            steps.append(step)
        if row.event_id is not None:
            by_event_id.setdefault(row.event_id, step)
    for row, anchor in unplaced_dead:
        if row.version is not None:
            home = winners.get(row.version)
            if home is None:
                home = PlannedStep((row.version, 0, row.arrival), row.version, None)
                winners[row.version] = home
                steps.append(home)
        else:
            home = by_event_id.get(row.event_id) if row.event_id is not None else None
            if home is None:
                home = PlannedStep((anchor, 1, row.arrival), None, None)
                home.add("markers", Marker("unversioned", "no version: placed where it arrived"))
                steps.append(home)
        home.add("dead_letters", row)
    steps.sort(key=lambda s: s.position)
    return steps


def _by_arrival(candidates: list[PlannedStep], dead: list[RecordedEvent]) -> list[PlannedStep]:
    by_event_id: dict[str, PlannedStep] = {}
    for step in candidates:
        assert step.event is not None
        step.position = (step.event.arrival,)
        if step.event.event_id is not None:
            by_event_id.setdefault(step.event.event_id, step)
    steps = list(candidates)
    for row in dead:
        home = by_event_id.get(row.event_id) if row.event_id is not None else None
        if home is None:
            home = PlannedStep((row.arrival,), None, None)
            steps.append(home)
        home.add("dead_letters", row)
    steps.sort(key=lambda s: s.position)
    return steps


def _rows(rows: Sequence[RecordedEvent]) -> tuple[int, ...]:
    return tuple(r.row_id for r in rows[:MAX_LISTED_ROWS])


def _mark(step: PlannedStep) -> None:
    if step.duplicates:
        n = len(step.duplicates) + 1
        step.add(
            "markers",
            Marker("duplicate", f"published {n} times: folded once", _rows(step.duplicates)),
        )
    if step.rivals:
        n = len(step.rivals)
        others = "another event claims" if n == 1 else f"{n} other events claim"
        step.add(
            "markers",
            Marker(
                "conflict",
                f"{others} version {step.version}: not folded (the first to arrive is)",
                _rows(step.rivals),
            ),
        )
    if step.dead_letters:
        for kind in ("x-death", "dlq-key"):
            copies = [d for d in step.dead_letters if d.dead_letter == kind]
            if not copies:
                continue
            if kind == "x-death":
                what = "dead-lettered by RabbitMQ (x-death)"
            else:
                keys = sorted({d.routing_key for d in copies})
                what = "published as a dead letter to " + ", ".join(keys[:3])
            count = "" if len(copies) == 1 else f" ({len(copies)} copies)"
            step.add("markers", Marker("dead-letter", f"{what}{count}: not folded", _rows(copies)))
        unknown = [d for d in step.dead_letters if d.dead_letter not in ("x-death", "dlq-key")]
        if unknown:
            marker = Marker("dead-letter", "dead-letter copy: not folded", _rows(unknown))
            step.add("markers", marker)
        if step.event is None:
            step.add(
                "markers",
                Marker("dead-letter-only", "only dead-letter copies were recorded: nothing folded"),
            )


def _mark_gaps(steps: list[PlannedStep], previous: int | None) -> None:
    for step in steps:
        if step.version is None:
            continue
        if previous is None:
            if step.version > 1:
                step.markers = [_gap(1, step.version - 1, "not recorded"), *step.markers]
        elif step.version > previous + 1:
            step.markers = [_gap(previous + 1, step.version - 1, "missing"), *step.markers]
        previous = step.version


def _gap(first: int, last: int, how: str) -> Marker:
    if first == last:
        return Marker("gap", f"version {first} {how}")
    return Marker("gap", f"versions {first}–{last} {how}")
