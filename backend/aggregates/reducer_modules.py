"""Level 3: reducers written in Python, for what the rules cannot say.

A module named in `EVENTSCOPE_REDUCER_MODULES` (comma-separated; `package.module` calls its
`register`, `package.module:function` calls that function), and every entry point of the group
`eventscope.reducers`, is called once at start with a ReducerRegistry:

    def register(reducers):
        @reducers.on("Order", "OrderRefunded")
        def refunded(state, event):
            return {**state, "status": "refunded", "refund": event.data.get("amount")}

`reduce(state, event) -> state` gets a private copy of the state (changing it in place is
fine) and an `Event` (reducers.py); it returns the new state, a dict of JSON values. What it
raises, or returns that is not such a dict, is shown as an error at that event's step; the
fold goes on with the state from before. Reducers must be deterministic: a state at a version
is folded again from the nearest kept state when asked for.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eventscope.backend.aggregates.json_values import (
    ValueProblem,
    checked_copy,
    kind_of,
    size_of,
)
from eventscope.backend.aggregates.reducers import (
    Applied,
    Event,
    FoldLimits,
    ReducerConfigError,
    ReducerError,
    State,
)

ENTRY_POINT_GROUP: Final = "eventscope.reducers"
MAX_ERROR_CHARS: Final = 500

ReduceFunction = Callable[[State, Event], State]


@dataclass(frozen=True, slots=True)
class PythonReducer:
    """A registered function, made safe to fold with: copied input, checked output."""

    function: ReduceFunction
    name: str  # module.qualname

    @property
    def label(self) -> str:
        return f"python {self.name}"

    def apply(self, state: State, size: int, event: Event, limits: FoldLimits) -> Applied:
        try:
            # a private copy: the function may change it; the fold's states are shared
            own = checked_copy(state, max_bytes=2 * limits.max_state_bytes)
            result = self.function(own, event)
        except Exception as exc:  # any error of user code is shown at its step
            raise ReducerError(describe_error(exc)) from None
        if not isinstance(result, dict):
            raise ReducerError(f"{self.name} returned {kind_of(result)}, not a dict")
        try:
            new = checked_copy(result, max_bytes=limits.max_state_bytes)
        except ValueProblem as exc:
            raise ReducerError(f"{self.name} returned a state that is {exc}") from None
        if new == state:
            return Applied(state, size)  # unchanged: keep sharing the previous state
        return Applied(new, size_of(new))


def describe_error(exc: BaseException) -> str:
    """`ValueError: message (at reducers.py:12 in paid)`, capped: what a step shows."""
    text = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class ReducerRegistry:
    """What `register(reducers)` receives: add a function per aggregate type and event type
    (`"*"` for any). A later registration for the same pair replaces the earlier one."""

    def __init__(self) -> None:
        self.reducers: dict[tuple[str, str], PythonReducer] = {}
        self.origin = "Python reducers"

    def add(self, aggregate_type: str, event_type: str, function: ReduceFunction) -> None:
        if not isinstance(aggregate_type, str) or not isinstance(event_type, str):
            raise TypeError("aggregate_type and event_type must be strings ('*' for any)")
        if not callable(function):
            raise TypeError(f"{function!r} is not callable")
        module = getattr(function, "__module__", None) or "?"
        name = f"{module}.{getattr(function, '__qualname__', repr(function))}"
        self.reducers[(aggregate_type, event_type)] = PythonReducer(function, name)

    def on(
        self, aggregate_type: str, event_type: str = "*"
    ) -> Callable[[ReduceFunction], ReduceFunction]:
        """Decorator form of `add`."""

        def decorate(function: ReduceFunction) -> ReduceFunction:
            self.add(aggregate_type, event_type, function)
            return function

        return decorate


def load_modules(specs: Sequence[str], *, entry_points: bool = True) -> ReducerRegistry:
    """Call every named module's `register` (and every `eventscope.reducers` entry point) with
    one registry. ReducerConfigError names the module and the reason."""
    registry = ReducerRegistry()
    for spec in (s.strip() for s in specs):
        if not spec:
            continue
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ReducerConfigError(
                f"reducer module {spec!r}: cannot import: {describe_error(exc)}"
            ) from None
        hook = getattr(module, attribute or "register", None)
        if not callable(hook):
            raise ReducerConfigError(
                f"reducer module {spec!r}: has no function {attribute or 'register'!r} "
                "to call with the registry"
            )
        _call(hook, registry, f"reducer module {spec!r}")
    if entry_points:
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            where = f"entry point {point.name!r} ({point.value}) in {ENTRY_POINT_GROUP}"
            try:
                hook = point.load()
            except Exception as exc:
                raise ReducerConfigError(f"{where}: cannot load: {describe_error(exc)}") from None
            _call(hook, registry, where)
    return registry


def _call(hook: Any, registry: ReducerRegistry, where: str) -> None:
    try:
        hook(registry)
    except Exception as exc:
        raise ReducerConfigError(f"{where}: register failed: {describe_error(exc)}") from None
