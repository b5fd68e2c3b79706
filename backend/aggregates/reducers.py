"""What a reducer is, what it sees, and the default one that needs no setup.

A reducer turns (state, event) into the next state. The fold calls `apply` with the state, its
size and the event; a reducer returns the new state (never changing the old one: states are
shared between steps, see json_values.py) or raises ReducerError, which the fold shows at that
step, leaving the state as it was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, Protocol

from eventscope.backend.aggregates.json_values import deep_merge, kind_of

State = dict[str, Any]

# Envelope fields of the seed's events: what the default reducer leaves out of a body that has
# no `data`.
ENVELOPE_FIELDS: Final = frozenset(
    {"id", "type", "eventType", "timestamp", "aggregateId", "aggregateType", "version", "metadata"}
)
DEFAULT_MAX_STATE_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FoldLimits:
    """Bounds of one fold. `checkpoint_every`: a state is kept every K steps; any other is
    re-folded from the one before it (at most K-1 events)."""

    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES
    checkpoint_every: int = 32


class ReducerError(Exception):
    """An event a reducer could not apply; the message is shown at that event's step."""


class ReducerConfigError(Exception):
    """Reducers that cannot be loaded: raised at start, naming the file or module, the rule
    and the reason."""


@dataclass(slots=True)  # not frozen: built for every event folded, a frozen init is slow
class Event:
    """One event as reducers see it: the body as published (a seed dead letter's
    `originalEvent`) and what was extracted from it when it was recorded."""

    body: dict[str, Any]
    event_type: str | None
    event_id: str | None
    aggregate_type: str | None
    aggregate_id: str | None
    version: int | None
    occurred_at: dt.datetime | None
    received_at: dt.datetime
    row_id: int | None = None

    @property
    def time(self) -> dt.datetime:
        """When it happened: the occurred time, else when it was received."""
        return self.occurred_at or self.received_at

    @property
    def data(self) -> Any:
        """The event's payload: `data`, or without `data` the body minus the envelope fields
        (ENVELOPE_FIELDS)."""
        if "data" in self.body:
            return self.body["data"]
        return {k: v for k, v in self.body.items() if k not in ENVELOPE_FIELDS}


@dataclass(frozen=True, slots=True)
class Applied:
    """A reducer's result: the new state, its size (bytes of compact JSON, about) and notes
    worth showing at the step (a referenced field that was missing, say)."""

    state: State
    size: int
    notes: tuple[str, ...] = ()


class Reducer(Protocol):
    """Anything that folds one event into a state. `label` says which reducer applied (shown
    on the step); `apply` must not change `state`."""

    @property
    def label(self) -> str: ...

    def apply(self, state: State, size: int, event: Event, limits: FoldLimits) -> Applied: ...


def merge_data(state: State, size: int, data: Any, what: str = "data") -> Applied:
    """Deep-merge `data` into the state: objects merge, arrays and scalars replace."""
    if data is None:
        return Applied(state, size, (f"{what} is null: nothing merged",))
    if not isinstance(data, dict):
        raise ReducerError(f"{what} is {kind_of(data)}, not an object: nothing to merge")
    merged, delta = deep_merge(state, data)
    return Applied(merged, size + delta)


class DefaultReducer:
    """Level 1: deep-merge each event's data (`Event.data`) into the state."""

    label = "default: merge data"

    def apply(self, state: State, size: int, event: Event, limits: FoldLimits) -> Applied:
        return merge_data(state, size, event.data)


@dataclass(frozen=True, slots=True)
class Unhandled:
    """An event type the aggregate type's rules do not mention: the state stays as it is (the
    seed's `default: return state`), and the step says so."""

    where: str

    @property
    def label(self) -> str:
        return f"no rule in {self.where}: state unchanged"

    def apply(self, state: State, size: int, event: Event, limits: FoldLimits) -> Applied:
        return Applied(state, size, (self.label,))


DEFAULT_REDUCER: Final = DefaultReducer()
