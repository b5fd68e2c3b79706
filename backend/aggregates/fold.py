"""Fold an aggregate's events into its state at every step, with diffs and what-ifs.

`fold(rows, reducers)` plans the steps (history.py: order, duplicates, conflicts, dead-letter
copies, gaps) and applies each step's event with its reducer. A reducer error, an event that
cannot be read, or a state that would grow past the limit is shown at that step and the state
stays as it was; the fold goes on.

States are shared between steps (never changed in place, json_values.py). The fold keeps the
state after every K-th step (`FoldLimits.checkpoint_every`); any other state is folded again
from the checkpoint before it, at most K-1 events. Snapshot-assisted and full folds give the
same states (tests/unit/test_fold.py checks it on random histories). Treat returned states as
read-only.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eventscope.backend.aggregates.history import (
    Marker,
    Order,
    PlannedStep,
    RecordedEvent,
    plan,
)
from eventscope.backend.aggregates.json_values import size_of
from eventscope.backend.aggregates.reducer_modules import describe_error
from eventscope.backend.aggregates.reducer_set import ReducerSet
from eventscope.backend.aggregates.reducers import ReducerError, State
from eventscope.backend.structural_diff import Change, diff

EMPTY_SIZE: Final = 2  # "{}"

# The most the kept states of one fold may weigh: a history where every event adds a field
# would otherwise keep ever larger states every K steps (memory growing with the square).
MAX_KEPT_BYTES = 64 * 1024 * 1024


class Step:
    """One step of the history. `event` is the folded row (None when only dead-letter copies
    are at this version); `error` says why it was not applied (the state is unchanged).
    Made for every event, so it is a thin view of the planned step (read-only)."""

    __slots__ = ("_extra", "_planned", "changed", "error", "index", "reducer")

    def __init__(
        self,
        index: int,
        planned: PlannedStep,
        reducer: str | None,
        error: str | None,
        changed: bool,
        extra: tuple[Marker, ...],
    ) -> None:
        self.index = index
        self._planned = planned
        self.reducer = reducer  # which reducer applied (its label); None when nothing was
        self.error = error
        self.changed = changed  # False: the step certainly changed nothing (see `changes`)
        self._extra = extra  # markers of the fold itself: error, too-large, notes

    @property
    def version(self) -> int | None:
        return self._planned.version

    @property
    def event(self) -> RecordedEvent | None:
        return self._planned.event

    @property
    def time(self) -> dt.datetime:
        """When it happened: the occurred time, else the received time."""
        return self._planned.time

    @property
    def markers(self) -> tuple[Marker, ...]:
        return (*self._planned.markers, *self._extra)

    @property
    def duplicates(self) -> tuple[RecordedEvent, ...]:
        return tuple(self._planned.duplicates)

    @property
    def rivals(self) -> tuple[RecordedEvent, ...]:
        return tuple(self._planned.rivals)

    @property
    def dead_letters(self) -> tuple[RecordedEvent, ...]:
        return tuple(self._planned.dead_letters)

    def __repr__(self) -> str:
        kinds = ",".join(m.kind for m in self.markers)
        return f"Step({self.index}, v{self.version}, markers=[{kinds}], error={self.error!r})"


@dataclass(frozen=True, slots=True)
class StateAt:
    """The state after step `index` (None: before the first step, the empty state)."""

    index: int | None
    step: Step | None
    state: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StepError:
    """An error at a step re-folded by a what-if; `new` when that step had none before."""

    index: int
    version: int | None
    row_id: int
    error: str
    new: bool


@dataclass(frozen=True, slots=True)
class WhatIf:
    """The candidate folded in at its place: the resulting current state, the current state
    without it (`baseline`) and the difference. Nothing is stored."""

    placement: str  # "replaces row 12 at version 4", "fills version 4", …
    index: int  # the candidate's step in the what-if history
    candidate_error: str | None  # why the candidate itself could not be applied
    state: Mapping[str, Any]
    baseline: Mapping[str, Any]
    changes: list[Change]
    errors: tuple[StepError, ...]  # errors at the steps folded again after the candidate


class WhatIfError(ValueError):
    """A candidate that cannot be folded into this aggregate (another aggregate's event)."""


@dataclass(slots=True)
class _Outcome:
    state: State
    size: int
    error: str | None
    label: str | None
    notes: tuple[str, ...]
    too_large: bool = False


def _apply(
    state: State, size: int, row: RecordedEvent | None, reducers: ReducerSet, kind: str | None
) -> _Outcome:
    """One event folded into the state; any failure leaves the state unchanged."""
    if row is None:
        return _Outcome(state, size, None, None, ())
    label: str | None = None
    try:
        event = row.event()
        reducer = reducers.reducer_for(kind, event.event_type)
        label = reducer.label
        applied = reducer.apply(state, size, event, reducers.limits)
    except ReducerError as exc:
        return _Outcome(state, size, str(exc), label, ())
    except Exception as exc:  # a bug must not hide the rest of the history
        return _Outcome(state, size, describe_error(exc), label, ())
    new_size = applied.size
    limit = reducers.limits.max_state_bytes
    if new_size > limit:
        new_size = size_of(applied.state)  # the running size is an estimate: measure
        if new_size > limit:
            text = f"the state would grow to about {new_size:,} bytes (limit {limit:,})"
            return _Outcome(state, size, text + ": not applied", label, applied.notes, True)
    return _Outcome(applied.state, max(new_size, EMPTY_SIZE), None, label, applied.notes)


class Fold:
    """The folded history of one aggregate. Build it with `fold(rows, reducers)`."""

    def __init__(
        self,
        aggregate_type: str | None,
        aggregate_id: str | None,
        order: Order,
        reducers: ReducerSet,
        rows: Sequence[RecordedEvent],
    ) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.order: Order = order
        self.reducers = reducers
        self.rows: tuple[RecordedEvent, ...] = tuple(rows)  # every row given, in given order
        self.row_ids = frozenset(r.row_id for r in self.rows)
        self._every = reducers.limits.checkpoint_every
        self._planned: tuple[PlannedStep, ...] = ()
        self._checkpoints: dict[int, tuple[State, int]] = {-1: ({}, EMPTY_SIZE)}
        # What the kept states weigh (JSON bytes, shared parts counted again: an upper bound).
        self.held_bytes = EMPTY_SIZE
        self.steps: tuple[Step, ...] = ()
        self._final: tuple[State, int] = ({}, EMPTY_SIZE)
        self._recent: tuple[int, State, int] = (-1, {}, EMPTY_SIZE)
        self._versions: tuple[list[int], list[int]] | None = None  # built when first asked
        self._latest: list[dt.datetime] | None = None
        self._highest: int | None = max(
            (r.version for r in self.rows if r.version is not None), default=None
        )
        self._last_arrival = max((r.arrival for r in self.rows), default=None)

    def _fold(self, planned: Sequence[PlannedStep]) -> None:
        """Fold `planned` after the steps folded so far (only while building)."""
        steps = list(self.steps)
        state, size = self._final
        first = len(steps)
        for index, planned_step in enumerate(planned, start=first):
            outcome = _apply(state, size, planned_step.event, self.reducers, self.aggregate_type)
            steps.append(_step(index, planned_step, outcome, outcome.state is not state))
            state, size = outcome.state, outcome.size
            if (index + 1) % self._every == 0 and self.held_bytes + size <= MAX_KEPT_BYTES:
                self._checkpoints[index] = (state, size)  # past the bound: folded again
                self.held_bytes += size
        self._planned += tuple(planned)
        self.steps = tuple(steps)
        self._final = (state, size)
        self._recent = (len(steps) - 1, state, size)

    def extended(self, rows: Sequence[RecordedEvent | Mapping[str, Any]]) -> Fold:
        """This history with more rows (those already in it are skipped): the same result as
        folding all rows again, found by folding only the new ones when they simply continue
        the history — every new row arrived after every known one, is not a dead letter and
        has a version above every known version — else by folding everything again."""
        new = [r for r in _recorded(rows) if r.row_id not in self.row_ids]
        if not new:
            return self
        if not self._continues(new):
            return fold([*self.rows, *new], self.reducers)
        grown = Fold(self.aggregate_type, self.aggregate_id, "version", self.reducers, new)
        grown.rows = (*self.rows, *new)
        grown.row_ids = self.row_ids | grown.row_ids
        grown._highest = max(r.version for r in new if r.version is not None)
        grown._planned, grown.steps = self._planned, self.steps
        grown._checkpoints = dict(self._checkpoints)
        grown.held_bytes = self.held_bytes
        grown._final = self._final
        grown._fold(plan(new, after_version=self._highest).steps)
        return grown

    def _continues(self, new: list[RecordedEvent]) -> bool:
        highest, latest = self._highest, self._last_arrival
        if self.order != "version" or highest is None or latest is None:
            return False
        return all(
            r.dead_letter is None
            and r.version is not None
            and r.version > highest
            and r.arrival > latest
            and r.aggregate_type == self.aggregate_type
            for r in new
        )

    # --- reading states -------------------------------------------------------------------

    @property
    def state(self) -> Mapping[str, Any]:
        """The current state: after the last step."""
        return self._final[0]

    def state_after(self, index: int) -> Mapping[str, Any]:
        """The state after step `index` (-1: before the first step)."""
        return self._state_and_size(index)[0]

    def _state_and_size(self, index: int) -> tuple[State, int]:
        if not -1 <= index < len(self.steps):
            raise IndexError(f"no step {index} (0–{len(self.steps) - 1})")
        if index == len(self.steps) - 1:
            return self._final
        recent_index, recent_state, recent_size = self._recent
        start = (index + 1) // self._every * self._every - 1  # the checkpoint at or before
        if start <= recent_index <= index:
            start, state, size = recent_index, recent_state, recent_size
        else:
            while start not in self._checkpoints:  # not kept (MAX_KEPT_BYTES): an earlier one
                start -= self._every
            state, size = self._checkpoints[start]
        for i in range(start + 1, index + 1):
            row = self._planned[i].event
            outcome = _apply(state, size, row, self.reducers, self.aggregate_type)
            state, size = outcome.state, outcome.size
        self._recent = (index, state, size)
        return state, size

    def changes(self, index: int, *, max_changes: int = 1000) -> list[Change]:
        """What step `index` changed: the structural diff of the states before and after it."""
        before = self.state_after(index - 1)
        after = self.state_after(index)
        return diff(before, after, max_changes=max_changes)

    def index_at_version(self, version: int) -> int | None:
        """The last step before the first step above `version` (None: before the first step):
        the state at version N includes events without a version that arrived before N+1.
        ValueError in arrival order (no event has a version): ask by step there."""
        if self.order != "version":
            raise ValueError("this aggregate's events have no versions: ask by step")
        versions, indexes = self._version_index()
        above = bisect.bisect_right(versions, version)  # versioned steps increase
        last = indexes[above] - 1 if above < len(indexes) else len(self.steps) - 1
        return last if last >= 0 else None

    def index_as_of(self, when: dt.datetime) -> int | None:
        """The last step of the longest run of steps, from the first, that had all happened by
        `when` (occurred time, else received time). A step whose time is after `when` ends the
        run even when later steps carry earlier times: the state as of T never skips an
        event."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        count = bisect.bisect_right(self._running_latest(), when)
        return count - 1 if count else None

    def _version_index(self) -> tuple[list[int], list[int]]:
        """The versions of the versioned steps (increasing) and their step indexes."""
        if self._versions is None:
            pairs = [(s.version, s.index) for s in self.steps if s.version is not None]
            self._versions = ([v for v, _ in pairs], [i for _, i in pairs])
        return self._versions

    def _running_latest(self) -> list[dt.datetime]:
        """For each step, the latest time of the steps up to it (non-decreasing)."""
        if self._latest is None:
            latest: list[dt.datetime] = []
            for step in self.steps:
                time = step.time
                latest.append(time if not latest or time > latest[-1] else latest[-1])
            self._latest = latest
        return self._latest

    def state_at(self, *, version: int) -> StateAt:
        return self._at(self.index_at_version(version))

    def state_as_of(self, when: dt.datetime) -> StateAt:
        return self._at(self.index_as_of(when))

    def _at(self, index: int | None) -> StateAt:
        if index is None:
            return StateAt(None, None, self.state_after(-1))
        return StateAt(index, self.steps[index], self.state_after(index))

    @property
    def problems(self) -> Counter[str]:
        """How many steps carry each marker kind (for a summary line)."""
        return Counter(m.kind for step in self.steps for m in step.markers)

    # --- what-if ----------------------------------------------------------------------------

    def what_if(self, candidate: RecordedEvent) -> WhatIf:
        """Fold `candidate` in at its own place — replacing the folded event with its event id
        and version, else at its version (filling a version with no event, or after the event
        that holds it), else after the last step — fold the later steps again after it, and
        compare the resulting current state with the current one."""
        self._check_belongs(candidate)
        index, replaced, placement = self._placement(candidate)
        state, size = self._state_and_size(index - 1)
        outcome = _apply(state, size, candidate, self.reducers, self.aggregate_type)
        state, size = outcome.state, outcome.size
        errors: list[StepError] = []
        resume = index + 1 if replaced else index
        for old in self.steps[resume:]:
            planned = self._planned[old.index]
            later = _apply(state, size, planned.event, self.reducers, self.aggregate_type)
            state, size = later.state, later.size
            if later.error is not None and planned.event is not None:
                errors.append(
                    StepError(
                        old.index + (0 if replaced else 1),
                        old.version,
                        planned.event.row_id,
                        later.error,
                        old.error is None,
                    )
                )
        return WhatIf(
            placement=placement,
            index=index,
            candidate_error=outcome.error,
            state=state,
            baseline=self.state,
            changes=diff(self.state, state),
            errors=tuple(errors),
        )

    def _check_belongs(self, candidate: RecordedEvent) -> None:
        for what, ours, theirs in (
            ("aggregate id", self.aggregate_id, candidate.aggregate_id),
            ("aggregate type", self.aggregate_type, candidate.aggregate_type),
        ):
            if ours is not None and theirs != ours:
                raise WhatIfError(
                    f"the candidate's {what} is {theirs!r}, not {ours!r}: "
                    "it belongs to another aggregate"
                )

    def _placement(self, candidate: RecordedEvent) -> tuple[int, bool, str]:
        """(the candidate's step index, whether it replaces that step's event, a description)."""
        version = candidate.version
        folded = [(s, e) for s in self.steps if (e := s.event) is not None]
        own = next(((s, e) for s, e in folded if 0 < candidate.row_id == e.row_id), None)
        if own is None and candidate.event_id is not None:
            own = next(
                (
                    (s, e)
                    for s, e in folded
                    if (s.version, e.event_id) == (version, candidate.event_id)
                ),
                None,
            )
        if own is not None:
            where = f" at version {version}" if version is not None else ""
            return own[0].index, True, f"replaces row {own[1].row_id}{where}"
        if self.order != "version" or version is None:
            return len(self.steps), False, "after the last step"
        for step in self.steps:
            if step.version != version:
                continue
            if step.event is None:
                return step.index, True, f"fills version {version} (only dead letters there)"
            return step.index + 1, False, f"after version {version}'s event (a conflict)"
        # Where the plan would have put it: steps are sorted by their positions.
        index = bisect.bisect_left(
            [p.position for p in self._planned], (version, 0, candidate.arrival)
        )
        return index, False, f"at version {version} (no event was recorded there)"


def _step(index: int, planned: PlannedStep, outcome: _Outcome, changed: bool) -> Step:
    extra: tuple[Marker, ...] = ()
    if outcome.error is not None:
        extra = (Marker("too-large" if outcome.too_large else "error", outcome.error),)
    if outcome.notes:
        extra += tuple(Marker("note", note) for note in outcome.notes)
    return Step(index, planned, outcome.label, outcome.error, changed, extra)


def _recorded(rows: Sequence[RecordedEvent | Mapping[str, Any]]) -> list[RecordedEvent]:
    return [r if isinstance(r, RecordedEvent) else RecordedEvent.from_row(r) for r in rows]


def fold(rows: Sequence[RecordedEvent | Mapping[str, Any]], reducers: ReducerSet) -> Fold:
    """Fold one aggregate's rows (store row dicts or RecordedEvents, in any order)."""
    events = _recorded(rows)
    kind = next((e.aggregate_type for e in events if e.aggregate_type is not None), None)
    ident = next((e.aggregate_id for e in events if e.aggregate_id is not None), None)
    planned = plan(events)
    result = Fold(kind, ident, planned.order, reducers, events)
    result._fold(planned.steps)
    return result
