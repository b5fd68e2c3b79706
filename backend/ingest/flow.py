"""How much the recorder takes from the broker: a bound on the bytes it holds uncommitted.

`prefetch` bounds deliveries, not bytes: 2000 messages of up to 16 MiB each is 32 GiB held during
a database outage. RabbitMQ refuses `prefetch_size` and closes the connection on
`channel.flow`, so the recorder steers with what it has: the prefetch count of each consumer it
starts. A consumer is started with a window of as many deliveries as fit in the room left
under `max_held_bytes`, sized like the largest recent delivery (`HeldBytes.window`); at the
bound the consumer is cancelled, and a new one starts when commits free room. One delivery is
always accepted when nothing is held, so a message larger than the bound cannot stop recording.

Before it has seen any delivery the recorder assumes the largest possible (the body cap), so a
recorder started on a backlog of large messages during an outage takes what fits at that size,
then sizes its window from what those weighed. What this cannot bound: deliveries suddenly much
larger than the recent ones, when the broker has already been granted a window sized for small
ones (at most that window).
Pure: the recorder (backend/ingest/recorder.py) does the broker calls.
"""

from __future__ import annotations

from typing import Any

SAMPLE = 1000  # deliveries per bucket of the sliding maximum of sizes


def held_size(row: dict[str, Any]) -> int:
    """The bytes one held delivery accounts for: its (capped) body, headers and properties as
    the recorder keeps them until they are committed."""
    raw = row.get("raw_properties")
    return (
        len(row["body"])
        + len(row["headers"])
        + len(row["properties"])
        + (len(raw) if raw is not None else 0)
    )


class HeldBytes:
    """Bytes held uncommitted, and the consumer window that keeps them under `bound`."""

    def __init__(self, bound: int, prefetch: int, first_guess: int) -> None:
        self.bound = bound
        self.prefetch = prefetch
        self.held = 0
        self._guess = max(1, first_guess)  # until a delivery has been seen
        self._seen = False
        self._now = 0  # largest size in the current bucket
        self._before = 0  # largest size in the previous bucket
        self._count = 0

    def add(self, size: int) -> None:
        self.held += size
        self._seen = True
        if size > self._now:
            self._now = size
        self._count += 1
        if self._count >= SAMPLE:
            self._before, self._now, self._count = self._now, 0, 0

    def release(self, size: int) -> None:
        self.held = max(0, self.held - size)

    @property
    def hint(self) -> int:
        """The size a coming delivery is assumed to have: the largest of the recent ones."""
        if not self._seen:
            return self._guess
        return max(1, self._now, self._before)

    @property
    def full(self) -> bool:
        return self.held >= self.bound

    def window(self) -> int:
        """The prefetch count for a consumer started now; 0 means take nothing for now."""
        room = self.bound - self.held
        fits = room // self.hint if room > 0 else 0
        if self.held == 0:
            fits = max(fits, 1)  # one delivery is always accepted, however large
        return min(self.prefetch, fits)
