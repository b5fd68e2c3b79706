"""The live timeline's fan-out: change feed → one rendering per audience → each socket's queue.

The hub listens to the backend's change feed (every committed row, once, in commit order),
gathers what arrived since its last flush, renders it once per audience (operators, viewers with
secrets masked) and pushes the same string to every subscriber. A subscriber's queue is bounded:
a slow browser tab loses its oldest updates, it never slows ingest or other tabs. A paused
subscriber gets only a counter of what it missed. Bursts are coalesced: after a flush of n rows
the hub waits min(`flush_every`, n × 2 ms), so a trickle goes out at once and a fast stream
as a few fragments a second, each with the newest `max_rows` rows and the count of the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eventscope.backend.changefeed import ChangeFeed, Committed
from eventscope.backend.store.paging import Cursor
from eventscope.backend.waiting import sleep_unless_stopped

log = logging.getLogger(__name__)

SUBSCRIBER_BACKLOG = 32


@dataclass(frozen=True)
class Renderers:
    """How updates look (HTML, built by the app from templates)."""

    rows: Callable[[list[dict[str, Any]], int, bool], str]  # rows, total new, masked → fragment
    paused: Callable[[int], str]  # events missed while paused → fragment
    status: Callable[[], Awaitable[str]]  # the status bar


@dataclass(eq=False)
class Subscriber:
    """One websocket's view of the stream."""

    joined_at: Cursor | None = None  # the feed's position when this subscriber joined
    masked: bool = False  # a viewer: gets the masked rendering
    paused: bool = False
    missed: int = 0
    dropped: int = 0
    _queue: deque[str] = field(default_factory=lambda: deque(maxlen=SUBSCRIBER_BACKLOG))
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, message: str) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(message)
        self._ready.set()

    async def next(self) -> str:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()


class LiveHub:
    """Renders what the change feed delivers, once per audience, for every subscriber."""

    def __init__(
        self,
        feed: ChangeFeed,
        renderers: Renderers,
        *,
        max_rows: int,
        flush_every: float = 0.1,
        status_every: float = 1.0,
    ) -> None:
        self.feed = feed
        self.renderers = renderers
        self.max_rows = max_rows
        self.flush_every = flush_every
        self.status_every = status_every
        self.subscribers: set[Subscriber] = set()
        self._newest: deque[dict[str, Any]] = deque(maxlen=max_rows)  # oldest first
        self._new = 0
        self._arrived = asyncio.Event()

    @property
    def total(self) -> int | None:
        """Events in the store, once the feed has counted them."""
        return self.feed.total

    @property
    def position(self) -> Cursor | None:
        return self.feed.position

    def subscribe(self, masked: bool = False) -> Subscriber:
        """A new subscriber. It gets every row after `subscriber.joined_at`; a page showing rows
        up to X catches up on (X, joined_at] itself."""
        subscriber = Subscriber(joined_at=self.feed.position, masked=masked)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def pause(self, subscriber: Subscriber) -> None:
        subscriber.paused, subscriber.missed = True, 0
        subscriber.push(self.renderers.paused(0))

    def resume(self, subscriber: Subscriber) -> None:
        subscriber.paused, subscriber.missed = False, 0

    def _on_committed(self, batch: Committed) -> None:
        self._newest.extend(batch.rows)
        self._new += len(batch.rows)
        self._arrived.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush what the feed delivers and refresh the status bar, until `stop`."""
        forget = self.feed.listen(self._on_committed)
        loop = asyncio.get_running_loop()
        next_status = loop.time() + self.status_every
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                arrived = asyncio.ensure_future(self._arrived.wait())
                await asyncio.wait(
                    [arrived, stopped],
                    timeout=max(0.0, next_status - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                arrived.cancel()
                if stop.is_set():
                    return
                if self._new:
                    flushed = self.flush()
                    # A trickle goes out at once; a burst buys the browser a pause, so a
                    # fast stream arrives as a few larger fragments a second, not hundreds.
                    await sleep_unless_stopped(stop, min(self.flush_every, flushed * 0.002))
                if loop.time() >= next_status:
                    next_status = loop.time() + self.status_every
                    await self.broadcast_status()
        finally:
            stopped.cancel()
            forget()

    def flush(self) -> int:
        """Push what arrived since the last flush: newest first, rendered once per audience.
        Returns how many rows arrived."""
        self._arrived.clear()
        rows, new = list(reversed(self._newest)), self._new
        self._newest.clear()
        self._new = 0
        if not new:
            return 0
        fragments: dict[bool, str] = {}  # at most two renderings: operators', viewers'
        for subscriber in self.subscribers:
            if subscriber.paused:
                subscriber.missed += new
                subscriber.push(self.renderers.paused(subscriber.missed))
                continue
            if subscriber.masked not in fragments:
                fragments[subscriber.masked] = self.renderers.rows(rows, new, subscriber.masked)
            subscriber.push(fragments[subscriber.masked])
        return new

    async def broadcast_status(self) -> None:
        if not self.subscribers:
            return
        try:
            fragment = await self.renderers.status()
        except Exception as exc:
            log.warning("status not rendered: %s", exc)
            return
        for subscriber in self.subscribers:
            subscriber.push(fragment)
