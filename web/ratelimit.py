"""A small in-memory sliding-window limiter (per process), for login attempts."""

from __future__ import annotations

import time
from collections import deque


class SlidingWindow:
    """At most `limit` hits per key within `window` seconds."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] > self.window:
            hits.popleft()
        return hits

    def blocked(self, key: str) -> bool:
        return len(self._recent(key, time.monotonic())) >= self.limit

    def hit(self, key: str) -> None:
        if len(self._hits) >= self.max_keys and key not in self._hits:
            self._hits.clear()  # bounded memory under a spray of addresses
        self._recent(key, time.monotonic()).append(time.monotonic())
