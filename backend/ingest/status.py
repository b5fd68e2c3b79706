"""The recorder's health as plain data, read by the status bar and /api/status."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RecorderStatus:
    """Mutated only by the recorder; everyone else reads."""

    broker_connected: bool = False
    broker_error: str | None = None
    database_error: str | None = None
    tap_queue: str = ""
    tap_depth: int | None = None
    tap_bound: int = 0
    tap_bound_hit_at: float | None = None  # epoch seconds when the depth last reached the bound
    tap_queue_args_mismatch: str | None = None
    exchanges: dict[str, str] = field(default_factory=dict)  # name → type, or error text
    stored: int = 0
    skipped_redeliveries: int = 0
    duplicates: int = 0
    holding: int = 0  # deliveries received but not yet committed
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=4096))

    def record_commit(self, stored: int, skipped: int, duplicates: int) -> None:
        self.stored += stored
        self.skipped_redeliveries += skipped
        self.duplicates += duplicates
        self._samples.append((time.monotonic(), stored))

    def rate(self, window: float = 10.0) -> float:
        """Events stored per second over the last `window` seconds."""
        now = time.monotonic()
        return sum(n for t, n in self._samples if now - t <= window) / window
