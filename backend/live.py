"""The live hub: tails the store, renders each update once, fans it out to every subscriber.

It reads new rows from the database (not from the recorder), so it works the same whether the
recorder runs in this process or another. A subscriber's queue is bounded: a slow browser tab
loses its oldest updates, it never slows ingest or other tabs. A paused subscriber gets only a
counter of what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend.store.queries import events_after, max_id_and_count

log = logging.getLogger(__name__)

SUBSCRIBER_BACKLOG = 32


@dataclass(frozen=True)
class Renderers:
    """How updates look; supplied by the web layer (the hub never knows about HTML)."""

    rows: Callable[[list[dict[str, Any]], int, bool], str]  # rows, total new, masked → fragment
    paused: Callable[[int], str]  # events missed while paused → fragment
    status: Callable[[], Awaitable[str]]  # the status bar


@dataclass(eq=False)
class Subscriber:
    """One websocket's view of the stream."""

    joined_at: int = 0  # the hub's last published row id when this subscriber joined
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
    """Polls for rows newer than the last seen id and publishes them to subscribers."""

    def __init__(
        self,
        engine: AsyncEngine,
        renderers: Renderers,
        *,
        max_rows: int,
        interval: float = 0.25,
        status_every: float = 1.0,
    ) -> None:
        self.engine = engine
        self.renderers = renderers
        self.max_rows = max_rows
        self.interval = interval
        self.status_every = status_every
        self.subscribers: set[Subscriber] = set()
        self.total: int | None = None  # events in the store, once counted
        self.last_id = 0

    def subscribe(self, masked: bool = False) -> Subscriber:
        """A new subscriber. The hub sends it every row newer than `subscriber.joined_at`;
        a page showing rows up to X catches up on (X, joined_at] itself."""
        subscriber = Subscriber(joined_at=self.last_id, masked=masked)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def pause(self, subscriber: Subscriber) -> None:
        subscriber.paused, subscriber.missed = True, 0
        subscriber.push(self.renderers.paused(0))

    def resume(self, subscriber: Subscriber) -> None:
        subscriber.paused, subscriber.missed = False, 0

    async def run(self, stop: asyncio.Event) -> None:
        """Tail the store until `stop`; database errors are logged and retried next tick."""
        start = await self._retrying(max_id_and_count, stop)
        if start is None:
            return
        self.last_id, self.total = start
        since_status = 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            try:
                await self.tick()
            except Exception as exc:
                log.warning("live hub could not read the store: %s", exc)
            since_status += self.interval
            if since_status >= self.status_every:
                since_status = 0.0
                await self.broadcast_status()

    async def tick(self) -> None:
        rows, new = await events_after(self.engine, self.last_id, self.max_rows)
        if not new:
            return
        self.last_id = max(row["id"] for row in rows)
        if self.total is not None:
            self.total += new
        fragments: dict[bool, str] = {}  # at most two renderings: operators', viewers'
        for subscriber in self.subscribers:
            if subscriber.paused:
                continue
            if subscriber.masked not in fragments:
                fragments[subscriber.masked] = self.renderers.rows(rows, new, subscriber.masked)
            subscriber.push(fragments[subscriber.masked])
        for subscriber in self.subscribers:
            if subscriber.paused:
                subscriber.missed += new
                subscriber.push(self.renderers.paused(subscriber.missed))

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

    async def _retrying(
        self, query: Callable[[AsyncEngine], Awaitable[tuple[int, int]]], stop: asyncio.Event
    ) -> tuple[int, int] | None:
        while not stop.is_set():
            try:
                return await query(self.engine)
            except Exception as exc:
                log.warning("live hub waiting for the database: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        return None
