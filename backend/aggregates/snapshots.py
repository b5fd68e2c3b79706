"""Folds kept between requests, so that asking for another version of a big aggregate does not
read and fold its whole history again.

A cached fold is keyed by the aggregate and the reducers' fingerprint (a change of rules or
Python reducers is a different key). To use it, read only the rows committed after the ones
the fold holds and call `Fold.extended(rows)`: when they continue the history (later arrival,
higher versions, no dead letters) only they are folded; a late event with a lower version, a
duplicate or a dead-letter copy of a known version makes it fold everything again. Either way
the result is what a full fold gives (tests/unit/test_fold.py compares them on random
histories). Rows the fold already holds are skipped by row id, so reading a few too many is
harmless; reading too few is not: on Postgres read past the change feed's horizon only
(backend/store/events.py, PG_HORIZON).

Inside one fold, the state of every K-th step is kept (`FoldLimits.checkpoint_every`) and any
other state is folded again from the one before it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

from eventscope.backend.aggregates.fold import Fold
from eventscope.backend.aggregates.reducer_set import ReducerSet

DEFAULT_MAX_ROWS: Final = 200_000
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024


class FoldCache:
    """Recently used folds, least recently used dropped first, at most `max_rows` rows and
    `max_bytes` bytes of bodies and kept states held in all (rows alone would not bound
    memory: a stored body can be 16 MiB, a state 8 MiB). Safe to share between threads."""

    def __init__(
        self, max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._folds: OrderedDict[tuple[Hashable, str], Fold] = OrderedDict()
        self._weights: dict[tuple[Hashable, str], int] = {}  # body bytes of each kept fold
        self._rows = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, aggregate: Hashable, reducers: ReducerSet) -> Fold | None:
        """The cached fold of `aggregate` (e.g. its aggregate key) under these reducers."""
        key = (aggregate, reducers.fingerprint)
        with self._lock:
            found = self._folds.get(key)
            if found is not None:
                self._folds.move_to_end(key)
            return found

    def put(self, aggregate: Hashable, folded: Fold) -> None:
        """Keep `folded` (replacing what was kept for the aggregate under its reducers)."""
        key = (aggregate, folded.reducers.fingerprint)
        size = len(folded.rows)
        weight = sum(len(r.body) for r in folded.rows) + folded.held_bytes  # bodies and states
        with self._lock:
            old = self._folds.pop(key, None)
            if old is not None:
                self._rows -= len(old.rows)
                self._bytes -= self._weights.pop(key)
            if size > self.max_rows or weight > self.max_bytes:
                return  # larger than the whole cache: not kept
            self._folds[key] = folded
            self._weights[key] = weight
            self._rows += size
            self._bytes += weight
            while self._rows > self.max_rows or self._bytes > self.max_bytes:
                dropped_key, dropped = self._folds.popitem(last=False)
                self._rows -= len(dropped.rows)
                self._bytes -= self._weights.pop(dropped_key)

    def clear(self) -> None:
        with self._lock:
            self._folds.clear()
            self._weights.clear()
            self._rows = 0
            self._bytes = 0

    @property
    def rows(self) -> int:
        """Rows held by the cached folds."""
        return self._rows
