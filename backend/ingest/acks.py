"""Which delivery tag may be acked with `multiple=True` on one channel.

Tags on a channel are consecutive from 1. A batch ack must cover only tags below which every
delivery is committed, whatever order batches or callbacks finish in.
"""

from __future__ import annotations

from collections.abc import Iterable


class AckWatermark:
    """Tracks committed tags of one channel and the highest tag safe to ack cumulatively."""

    def __init__(self) -> None:
        self.acked = 0  # every tag <= acked has been acked
        self._committed: set[int] = set()

    def commit(self, tags: Iterable[int]) -> int | None:
        """Record committed tags; return the new watermark if it moved, else None."""
        self._committed.update(tags)
        mark = self.acked
        while mark + 1 in self._committed:
            mark += 1
            self._committed.discard(mark)
        if mark == self.acked:
            return None
        self.acked = mark
        return mark
