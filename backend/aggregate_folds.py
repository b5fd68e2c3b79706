"""Folds of aggregates for readers: read from the store, kept between requests, extended with
what was committed since, and computed off the event loop.

Folding a 10,000-event aggregate costs a fifth of a second of CPU, so the fold of an aggregate
is kept (`FoldCache`, keyed by the aggregate key and the reducers' fingerprint) and the next
request reads only the rows committed since and folds them on (`Fold.extended`, which folds
everything again when a late row does not simply continue the history: the result is always a
full fold's). What is kept never holds a row a later commit could still precede: the rows are
split at the store's horizon, read before them (backend/store/aggregates.py); those below it
are kept, those above it (committed a moment ago on Postgres while an older transaction is
still open) are folded on for this answer only. Folding and everything built from a fold run
in a worker thread, one request per aggregate at a time, so a big fold never stalls the
recorder that shares the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from eventscope.backend.aggregates.fold import Fold, fold
from eventscope.backend.aggregates.reducer_set import ReducerSet, load_reducers
from eventscope.backend.aggregates.reducers import ReducerConfigError
from eventscope.backend.aggregates.snapshots import FoldCache
from eventscope.backend.envelope import id_text
from eventscope.backend.settings import Settings
from eventscope.backend.store.aggregates import AggregateRef
from eventscope.backend.store.eventstore import EventStore

MAX_FOLD_ROWS: Final = 20_000  # events of one aggregate folded; past it, the first ones
T = TypeVar("T")


def reducers_for(settings: Settings) -> ReducerSet:
    """The reducers the settings name (with `--demo` and no rules, the seed's Order rules);
    a ValueError naming the file or module, the rule and the reason when they cannot work."""
    rules = Path(settings.reducers) if settings.reducers else None
    try:
        return load_reducers(rules, settings.reducer_modules, demo=settings.demo)
    except ReducerConfigError as exc:
        raise ValueError(f"reducers: {exc}") from None


@dataclass(frozen=True)
class Folded:
    """One aggregate's fold as a request sees it; `capped` when it has more than
    MAX_FOLD_ROWS events (the first ones, in commit order, are folded)."""

    ref: AggregateRef
    fold: Fold
    capped: bool


class AggregateFolds:
    def __init__(
        self,
        store: EventStore,
        reducers: ReducerSet,
        *,
        cache: FoldCache | None = None,
        max_rows: int = MAX_FOLD_ROWS,
        workers: int = 2,
    ) -> None:
        self.store = store
        self.reducers = reducers
        self.cache = cache or FoldCache()
        self.max_rows = max_rows
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None  # made when first needed
        self._locks: dict[int, tuple[asyncio.Lock, list[int]]] = {}

    async def use(self, ref: AggregateRef, work: Callable[[Folded], T]) -> T | None:
        """`work(folded)` on the aggregate's current fold, in a worker thread; None when no
        event belongs to the aggregate."""
        async with self._exclusive(ref.key):
            folded = await self._current(ref)
            if folded is None:
                return None
            return await self._off_loop(work, folded)

    async def _off_loop(self, work: Callable[[Any], T], arg: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="eventscope-fold")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, arg)

    @asynccontextmanager
    async def _exclusive(self, key: int) -> AsyncIterator[None]:
        """One request per aggregate at a time: a second one waits and finds the fold kept."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    async def _current(self, ref: AggregateRef) -> Folded | None:
        # Kept under the key *and* the names: a key given with other names matches no row,
        # and must not find this aggregate's fold either.
        name = (ref.key, id_text(ref.aggregate_type), id_text(ref.aggregate_id))
        kept = self.cache.get(name, self.reducers)
        horizon = await self.store.aggregates.horizon()  # before the rows: see the docstring
        start = max((r.commit_seq for r in kept.rows), default=0) if kept else 0
        known = sum(r.commit_seq == start for r in kept.rows) if kept else 0  # read again
        room = self.max_rows - (len(kept.rows) if kept else 0)
        rows = await self.store.aggregates.rows(ref, from_seq=start, limit=room + known + 1)
        if kept is not None:
            rows = [r for r in rows if r["id"] not in kept.row_ids]
        if kept is None and not rows:
            return None
        capped = len(rows) > room
        rows = rows[:room]
        settled = [r for r in rows if r["commit_seq"] < horizon]
        recent = [r for r in rows if r["commit_seq"] >= horizon]

        def build(_: None) -> Fold:
            base = kept.extended(settled) if kept else fold(settled, self.reducers)
            if base.rows and not capped and base is not kept:
                self.cache.put(name, base)
            return base.extended(recent) if recent else base

        if kept is not None and not settled and not recent:
            return Folded(ref, kept, capped)
        return Folded(ref, await self._off_loop(build, None), capped)

    def close(self) -> None:
        """Stop the worker threads (a later request starts new ones)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
