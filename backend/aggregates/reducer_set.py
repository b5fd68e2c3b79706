"""The reducers in force: which one folds an event, and where they came from.

Lookup for (aggregate type A, event type E), first found wins, a Python reducer before a rule
for the same pair: (A, E), (A, "*"), ("*", E), ("*", "*"). When nothing matches, an aggregate
type that has any rule or Python reducer leaves the state unchanged (the seed's
`default: return state`, shown on the step); any other uses the default deep merge.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from eventscope.backend.aggregates.reducer_modules import load_modules
from eventscope.backend.aggregates.reducer_rules import RuleBook, load_rules, rules_from_text
from eventscope.backend.aggregates.reducers import (
    DEFAULT_REDUCER,
    FoldLimits,
    Reducer,
    ReducerConfigError,
    Unhandled,
)

# The seed's Order as rules: examples/reducers/order.toml in the repo, package data installed.
DEMO_RULES: Final = ("examples", "reducers", "order.toml")
_FORMAT: Final = "eventscope-reducers-1"
_MAX_CHOSEN: Final = 4096  # part of every fingerprint: bump when folding changes


@dataclass(frozen=True)
class ReducerSet:
    """Reducers by (aggregate type, event type) with the fold limits; `fingerprint` changes
    whenever the rules or the registered functions do (what fold snapshots are keyed by)."""

    reducers: Mapping[tuple[str, str], Reducer] = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # for display: "rules /etc/eventscope/reducers.toml", …
    limits: FoldLimits = field(default_factory=FoldLimits)
    fingerprint: str = _FORMAT
    _chosen: dict[tuple[str | None, str | None], Reducer] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def reducer_for(self, aggregate_type: str | None, event_type: str | None) -> Reducer:
        """The reducer for an event (the lookup order is in the module docstring)."""
        pair = (aggregate_type, event_type)
        found = self._chosen.get(pair)
        if found is None:
            found = self._lookup(aggregate_type, event_type)
            if len(self._chosen) < _MAX_CHOSEN:  # event types come from the bus: bounded
                self._chosen[pair] = found
        return found

    def _lookup(self, aggregate_type: str | None, event_type: str | None) -> Reducer:
        kind = aggregate_type if aggregate_type is not None else "\x00none"
        name = event_type if event_type is not None else "\x00none"
        for key in ((kind, name), (kind, "*"), ("*", name), ("*", "*")):
            found = self.reducers.get(key)
            if found is not None:
                return found
        if any(k == kind for k, _ in self.reducers):
            return Unhandled(f"{', '.join(self.sources)} for {aggregate_type}/{event_type}")
        return DEFAULT_REDUCER


def demo_rules_text() -> str:
    """The packaged Order rules (the same file as examples/reducers/order.toml)."""
    resource = importlib.resources.files("eventscope")
    for part in DEMO_RULES:
        resource = resource / part
    return resource.read_text(encoding="utf-8")


def load_reducers(
    rules_path: Path | None,
    modules: Sequence[str],
    *,
    demo: bool,
    limits: FoldLimits | None = None,
    entry_points: bool = True,
) -> ReducerSet:
    """The reducers for `EVENTSCOPE_REDUCERS` (a TOML file) and `EVENTSCOPE_REDUCER_MODULES`
    (plus the `eventscope.reducers` entry points). With `demo` and no rules file, the packaged
    Order rules. Raises ReducerConfigError, naming the file or module, the rule and the reason:
    call it at start."""
    book: RuleBook | None = None
    if rules_path is not None:
        book = load_rules(rules_path)
    elif demo:
        book = rules_from_text(demo_rules_text(), "order.toml (demo)")
    registry = load_modules(modules, entry_points=entry_points)
    return combine(book, registry.reducers, limits=limits or FoldLimits())


def combine(
    book: RuleBook | None,
    python: Mapping[tuple[str, str], Reducer],
    *,
    limits: FoldLimits,
) -> ReducerSet:
    """Rules and Python reducers as one set (Python wins for the same pair)."""
    reducers: dict[tuple[str, str], Reducer] = {}
    sources: list[str] = []
    digest = hashlib.sha256(_FORMAT.encode())
    digest.update(repr((limits.max_state_bytes,)).encode())
    if book is not None:
        reducers.update(book.rules)
        sources.append(f"rules {book.source}")
        digest.update(b"rules\x00" + book.digest.encode())
    if python:
        reducers.update(python)
        sources.append("Python reducers")
        for key in sorted(python):
            digest.update(repr((key, python[key].label)).encode("utf-8", "surrogatepass"))
    if limits.checkpoint_every < 1 or limits.max_state_bytes < 64:
        raise ReducerConfigError("fold limits: checkpoint_every >= 1, max_state_bytes >= 64")
    return ReducerSet(reducers, tuple(sources), limits, digest.hexdigest())
