"""The live timeline's fan-out: change feed → one rendering per view → each socket's queue.

The hub listens to the backend's change feed (every committed row, once, in commit order),
gathers what arrived since its last flush, keeps for each subscriber the rows its filter selects
(backend/filter_match.py; the filter language of pages and the API), renders once per view —
filter and audience (operators, viewers with secrets masked) — and pushes the same string to
every subscriber of that view. A subscriber's queue is bounded:
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
from eventscope.backend.filter_match import content_matches, needs_content, summary_matches
from eventscope.backend.filters import EventFilter
from eventscope.backend.redaction import Redactor
from eventscope.backend.store.paging import Cursor
from eventscope.backend.waiting import sleep_unless_stopped

log = logging.getLogger(__name__)

SUBSCRIBER_BACKLOG = 32
MAX_BUFFERED = 10_000  # rows gathered between two flushes; beyond, they are counted, not shown


@dataclass(frozen=True)
class Renderers:
    """How updates look (HTML, built by the app from templates)."""

    rows: Callable[[list[dict[str, Any]], int, bool], str]  # rows, total new, masked → fragment
    # Headers and bodies of rows, for filters that look into them (`q`, `header`, `field`).
    contents: Callable[[list[int]], Awaitable[dict[int, dict[str, Any]]]]
    paused: Callable[[int], str]  # events missed while paused → fragment
    status: Callable[[], Awaitable[str]]  # the status bar


@dataclass(eq=False)
class Subscriber:
    """One websocket's view of the stream."""

    joined_at: Cursor | None = None  # the feed's position when this subscriber joined
    masked: bool = False  # a viewer: gets the masked rendering
    filter: EventFilter | None = None  # only rows it selects are sent
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
        redactor: Redactor | None = None,
        flush_every: float = 0.1,
        status_every: float = 1.0,
    ) -> None:
        self.feed = feed
        self.renderers = renderers
        self.max_rows = max_rows
        self.flush_every = flush_every
        self.status_every = status_every
        self.redactor = redactor
        self.subscribers: set[Subscriber] = set()
        self._arrivals: deque[dict[str, Any]] = deque(maxlen=MAX_BUFFERED)  # oldest first
        self._new = 0
        self._arrived = asyncio.Event()
        self._rendered: dict[tuple[Any, bool], str] = {}

    @property
    def total(self) -> int | None:
        """Events in the store, once the feed has counted them."""
        return self.feed.total

    @property
    def position(self) -> Cursor | None:
        return self.feed.position

    def subscribe(
        self, masked: bool = False, event_filter: EventFilter | None = None
    ) -> Subscriber:
        """A new subscriber. It gets every row after `subscriber.joined_at` that its filter
        selects; a page showing rows up to X catches up on (X, joined_at] itself."""
        if event_filter is not None and event_filter.empty:
            event_filter = None
        subscriber = Subscriber(joined_at=self.feed.position, masked=masked, filter=event_filter)
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
        self._arrivals.extend(batch.rows)
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
                    flushed = await self.flush()
                    # A trickle goes out at once; a burst buys the browser a pause, so a
                    # fast stream arrives as a few larger fragments a second, not hundreds.
                    await sleep_unless_stopped(stop, min(self.flush_every, flushed * 0.002))
                if loop.time() >= next_status:
                    next_status = loop.time() + self.status_every
                    await self.broadcast_status()
        finally:
            stopped.cancel()
            forget()

    async def flush(self) -> int:
        """Push what arrived since the last flush to every subscriber: for each view (filter,
        audience) its matching rows, newest first, rendered once. Returns how many arrived."""
        self._arrived.clear()
        arrived, new = list(self._arrivals), self._new
        self._arrivals.clear()
        self._new = 0
        if not new:
            return 0
        lost = new - len(arrived)  # more than MAX_BUFFERED in one flush: counted, not shown
        views: dict[tuple[Any, bool], tuple[list[dict[str, Any]], int]] = {}
        for subscriber in list(self.subscribers):
            view = (subscriber.filter.raw if subscriber.filter else (), subscriber.masked)
            if view not in views:
                matched = await self._select(subscriber.filter, subscriber.masked, arrived)
                views[view] = (matched, len(matched) + (lost if subscriber.filter is None else 0))
            matched, count = views[view]
            if not count:
                continue
            if subscriber.paused:
                subscriber.missed += count
                subscriber.push(self.renderers.paused(subscriber.missed))
                continue
            rendered = self._rendered.get(view)
            if rendered is None:
                newest = list(reversed(matched[-self.max_rows :]))
                rendered = self._rendered[view] = self.renderers.rows(
                    newest, count, subscriber.masked
                )
            subscriber.push(rendered)
        self._rendered.clear()
        return new

    async def select(
        self, subscriber: Subscriber, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The rows (summaries) a subscriber's view shows, in the order given."""
        return await self._select(subscriber.filter, subscriber.masked, rows)

    async def _select(
        self, event_filter: EventFilter | None, masked: bool, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The rows a view shows, oldest first."""
        if event_filter is None:
            return rows
        kept = [row for row in rows if summary_matches(event_filter, row)]
        if not kept or not needs_content(event_filter):
            return kept
        try:
            contents = await self.renderers.contents([row["id"] for row in kept])
        except Exception as exc:  # the database is away: these rows are not shown live
            log.warning("live filter could not read event contents: %s", exc)
            return []
        index_mask = self.redactor or Redactor()
        reader_mask = self.redactor if masked else None
        return [
            row
            for row in kept
            if row["id"] in contents
            and content_matches(event_filter, contents[row["id"]], reader_mask, index_mask)
        ]

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
