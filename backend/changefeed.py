"""The change feed: every committed row, once, in commit order, to whoever listens.

A recorder in this process calls `notify()` right after each commit, so listeners hear of new
rows within one query's time; without one (the recorder runs in another process), polling every
`poll_interval` is the fallback. Rows are read by the commit-order cursor (store/paging.py), so
rows that commit out of id order on Postgres are delivered too, once; rows held back there
behind an older open transaction are read again within milliseconds, not at the next poll
(backoff from `HELD_RETRY` up to the poll interval). Listeners are plain
callbacks that must return quickly (render, enqueue, wake a waiter): the web layer's live hub
renders and fans out; long-poll waiters and background workers will listen the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor
from eventscope.backend.waiting import sleep_unless_stopped

log = logging.getLogger(__name__)

PAGE = 500  # rows read per query
MAX_PER_CYCLE = 10_000  # rows handed out per wake-up before yielding to the loop
HELD_RETRY = 0.01  # first re-read after rows were held back behind an open transaction


@dataclass(frozen=True)
class Committed:
    """Rows committed since the previous delivery, oldest first, and the feed's new position."""

    rows: list[dict[str, Any]]
    position: Cursor


Listener = Callable[[Committed], None]


class ChangeFeed:
    """`run(stop)` tails the store; `listen(callback)` to hear about every committed row."""

    def __init__(self, store: EventStore, *, poll_interval: float = 0.25) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.position: Cursor | None = None  # None until the feed has read where it starts
        self.total: int | None = None  # rows in the store, once counted
        self._listeners: list[Listener] = []
        self._wake = asyncio.Event()
        self._stale = False
        self._held = False  # Postgres: committed rows wait behind an older open transaction
        self.started = asyncio.Event()

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every later delivery; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    @property
    def idle(self) -> bool:
        """Nobody listens (e.g. `eventscope ingest`): the feed reads nothing."""
        return not self._listeners

    def notify(self) -> None:
        """Rows were committed (called by an in-process writer right after its commit)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Tail the store until `stop`; database errors are logged and retried."""
        while not stop.is_set() and self.position is None:
            try:
                self.position, self.total = await self.store.events.position()
            except Exception as exc:
                log.warning("change feed waiting for the database: %s", exc)
                await sleep_unless_stopped(stop, 1.0)
        self.started.set()
        stopped = asyncio.ensure_future(stop.wait())
        retry = HELD_RETRY
        try:
            while not stop.is_set():
                self._wake.clear()  # before reading: a commit during the read wakes the next one
                try:
                    await self.deliver()
                except Exception as exc:
                    log.warning("change feed could not read the store: %s", exc)
                if self._held:  # look again soon, backing off while the old transaction lasts
                    timeout, retry = retry, min(retry * 2, self.poll_interval)
                else:
                    timeout, retry = self.poll_interval, HELD_RETRY
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    [woken, stopped],
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
        finally:
            stopped.cancel()

    async def deliver(self) -> int:
        """Read what was committed since the last delivery and hand it out; returns the count."""
        if self.position is None:
            return 0
        if self.idle:
            self._stale = True
            return 0
        if self._stale:  # listeners came back: start from now, not from when they left
            self.position, self.total = await self.store.events.position()
            self._stale = False
        delivered = 0
        while delivered < MAX_PER_CYCLE:
            rows = await self.store.events.committed_after(self.position, PAGE)
            if not rows:
                break
            self.position = Cursor.of(rows[-1])
            if self.total is not None:
                self.total += len(rows)
            delivered += len(rows)
            batch = Committed(rows, self.position)
            for listener in list(self._listeners):
                try:
                    listener(batch)
                except Exception:
                    log.exception("a change feed listener failed")
            if len(rows) < PAGE:
                break
        if delivered >= MAX_PER_CYCLE:
            self._wake.set()  # more to read: come back right after other tasks ran
        else:
            self._held = await self.store.events.held_back_after(self.position)
        return delivered
