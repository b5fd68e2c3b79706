"""The recorder's health as plain data, read by the status bar and /api/status.

The status must never claim health while nothing is being recorded: `health()` looks at what
the recorder did (the last commit, the last error), not only at whether a connection is open.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

STALLED_AFTER = 30.0  # seconds without a commit while deliveries wait
RECENT_ERROR = 300.0  # an error this recent is still shown


@dataclass(frozen=True)
class Health:
    state: str  # "ok", "warning" (recording, but something went wrong lately), "stopped"
    reason: str | None = None


@dataclass
class RecorderStatus:
    """Mutated only by the recorder; everyone else reads."""

    broker_connected: bool = False
    broker_error: str | None = None
    database_error: str | None = None
    database_error_since: float | None = None  # epoch seconds
    tap_depth: int | None = None
    tap_bound_hit_at: float | None = None  # epoch seconds when the depth last reached the bound
    tap_queue_args_mismatch: str | None = None
    exchanges: dict[str, str] = field(default_factory=dict)  # name → type, or error text
    stored: int = 0
    skipped_redeliveries: int = 0
    duplicates: int = 0
    reduced: int = 0  # rows the database refused whole, stored reduced
    undecodable: int = 0  # messages whose properties nothing could decode (raw bytes kept)
    excluded: int = 0  # deliveries not stored: their routing key is excluded (acked, counted)
    holding: int = 0  # deliveries received but not yet committed
    held_bytes: int = 0  # their bytes (bodies as kept, headers, properties)
    held_bound: int = 0  # max_held_bytes: at this many the recorder stops taking deliveries
    paused: bool = False  # at the byte bound: takes no delivery until a commit frees room
    last_error: str | None = None
    last_error_at: float | None = None  # epoch seconds
    last_stored_at: float | None = None  # epoch seconds of the last commit that stored rows
    started_at: float = field(default_factory=time.time)
    _last_progress: float = field(default_factory=lambda: time.monotonic())  # commit or idle
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=4096))

    def record_commit(self, stored: int, skipped: int, duplicates: int) -> None:
        self.stored += stored
        self.skipped_redeliveries += skipped
        self.duplicates += duplicates
        now = time.monotonic()
        self._last_progress = now
        if stored:
            self.last_stored_at = time.time()
        self._samples.append((now, stored))

    def note_idle(self) -> None:
        """Nothing to do (no deliveries held): not a stall."""
        self._last_progress = time.monotonic()

    def note_excluded_acked(self) -> None:
        """Excluded deliveries were acked: the tap queue moves although nothing is stored."""
        self._last_progress = time.monotonic()

    def note_error(self, message: str) -> None:
        self.last_error = message[:300]
        self.last_error_at = time.time()

    def set_database_error(self, message: str | None) -> None:
        if message is None:
            self.database_error = self.database_error_since = None
            return
        if self.database_error is None:
            self.database_error_since = time.time()
        self.database_error = message[:300]
        self.note_error(f"database: {message}")

    def rate(self, window: float = 10.0) -> float:
        """Events stored per second over the last `window` seconds."""
        now = time.monotonic()
        return sum(n for t, n in self._samples if now - t <= window) / window

    def seconds_without_progress(self) -> float:
        return time.monotonic() - self._last_progress

    def health(self) -> Health:
        """Whether events are being recorded, and if not, why — from what actually happened."""
        if not self.broker_connected:
            return Health("stopped", f"not recording: broker unreachable ({self.broker_error})")
        if self.database_error is not None:
            return Health("stopped", f"not recording: the database fails ({self.database_error})")
        stalled = self.seconds_without_progress()
        waiting = self.holding or self.tap_depth or 0
        if waiting and stalled > STALLED_AFTER:
            return Health(
                "stopped",
                f"not recording: {waiting:,} messages wait and nothing was committed for "
                f"{stalled:.0f} s",
            )
        if self.last_error_at is not None and time.time() - self.last_error_at < RECENT_ERROR:
            return Health("warning", self.last_error)
        return Health("ok")
