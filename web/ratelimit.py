"""A small in-memory sliding-window limiter (per process), for failed login attempts.

Memory is bounded twice: a key keeps only its newest `limit` hits (older ones cannot change the
answer), and at most `max_keys` keys are held. Past the bound one key is forgotten per new key:
the least recently hit key that is not blocked (the first of the oldest `EVICTION_SCAN` that
is not), else the least recently hit. Nobody's history is ever cleared wholesale, so a blocked
client cannot reset its own count by spraying new keys: a spray evicts the keys that are not
blocked first, and to push out a blocked one it needs `max_keys` blocked keys of its own — as
many addresses, each of which had its full count of guesses anyway.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

EVICTION_SCAN = 64


class SlidingWindow:
    """At most `limit` hits per key within `window` seconds."""

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()  # oldest newest-hit first

    def __len__(self) -> int:
        """Keys held."""
        return len(self._hits)

    @property
    def held(self) -> int:
        """Hits held, over all keys."""
        return sum(len(hits) for hits in self._hits.values())

    def _recent(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and now - hits[0] > self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def _expire(self, now: float) -> None:
        """Forget keys whose newest hit left the window (they are at the front)."""
        while self._hits:
            key, hits = next(iter(self._hits.items()))
            if now - hits[-1] <= self.window:
                return
            del self._hits[key]

    def blocked(self, key: str) -> bool:
        hits = self._recent(key, self.clock())
        return hits is not None and len(hits) >= self.limit

    def hit(self, key: str) -> None:
        now = self.clock()
        self._expire(now)
        hits = self._hits.pop(key, None)
        if hits is None:
            hits = deque(maxlen=self.limit)
        hits.append(now)
        self._hits[key] = hits  # now the newest
        while len(self._hits) > self.max_keys:
            self._evict(now)

    def _evict(self, now: float) -> None:
        for scanned, (key, hits) in enumerate(self._hits.items()):
            if scanned >= EVICTION_SCAN:
                break
            recent = sum(1 for t in hits if now - t <= self.window)
            if recent < self.limit:
                del self._hits[key]
                return
        self._hits.popitem(last=False)
