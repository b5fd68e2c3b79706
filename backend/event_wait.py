"""Waiting for events: the long-poll behind `?wait=` ("has it happened yet?", asked by tests).

A waiter reads once (a short connection, back in the pool at once). While fewer than
`min_count` matching events are there, it sleeps — holding no connection — until the change
feed delivers a batch with a row its filter may select, then reads only the rows after those it
has. Many waiters cannot melt the database: a batch wakes a waiter at most once and only when
one of its rows passes the waiter's filter in memory (backend/filter_match.py; waiters on a
correlation id are found by a dictionary lookup, not by testing each), wake-ups that arrive
during a read are coalesced into one more read, and at most `MAX_CONCURRENT_READS` reads run at
once. `q` is answered by the search index, which fills behind ingest without telling the feed:
a waiter with `q` also reads again once a second.

Reads see only settled rows: on Postgres, rows below the oldest transaction still running (as
the feed), so no row can later appear behind a cursor a waiter handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select, true

from eventscope.backend.changefeed import ChangeFeed, Committed
from eventscope.backend.envelope import id_key, id_text
from eventscope.backend.filter_match import content_matches, summary_matches
from eventscope.backend.filters import EventFilter
from eventscope.backend.redaction import Redactor
from eventscope.backend.store.events import PG_HORIZON
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.models import SUMMARY_COLUMNS, events
from eventscope.backend.store.paging import NEWEST_FIRST, OLDEST_FIRST, ORIGIN, Cursor, after

MAX_CONCURRENT_READS = 4  # waiters reading at once; the others queue (the pool stays free)
MAX_WAITERS = 2000  # waiting at once, in all
MAX_SCANNING_WAITERS = 200  # of them, those whose filter is checked against every committed row


class TooManyWaiters(Exception):
    """More requests wait than the bounds allow: this one is refused (the caller may retry)."""


SCAN_CHUNK = 500  # rows read per query when `header`/`field` filters are checked here
SCAN_LIMIT = 20_000  # rows checked per read for those filters; the next read continues
INDEX_RECHECK = 1.0  # seconds between reads of a waiter whose filter has `q`

_SUMMARY_NAMES = tuple(c.name for c in SUMMARY_COLUMNS)


@dataclass(eq=False)
class Waiter:
    """One request waiting; `hinted` is set when a batch may hold rows it selects."""

    filter: EventFilter
    hinted: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def correlation(self) -> tuple[int | None, str | None] | None:
        value = self.filter.value("correlation_id")
        return None if value is None else (id_key(value), id_text(value))


class WaitRoom:
    """Where waiters sleep: hears the change feed, wakes the waiters a batch concerns."""

    def __init__(self, feed: ChangeFeed, *, concurrent_reads: int = MAX_CONCURRENT_READS) -> None:
        self.feed = feed
        self.reads = asyncio.Semaphore(concurrent_reads)
        self._by_correlation: dict[tuple[int | None, str | None], set[Waiter]] = {}
        self._others: set[Waiter] = set()

    def __len__(self) -> int:
        return len(self._others) + sum(len(w) for w in self._by_correlation.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Listen to the feed until `stop` (a runtime task: the feed then never goes idle,
        which would make it skip rows when it wakes)."""
        forget = self.feed.listen(self._on_committed)
        try:
            await stop.wait()
        finally:
            forget()

    @contextlib.contextmanager
    def waiting(self, event_filter: EventFilter) -> Iterator[Waiter]:
        """A registered waiter for the duration of the block."""
        waiter = Waiter(event_filter)
        key = waiter.correlation
        if len(self) >= MAX_WAITERS or (key is None and len(self._others) >= MAX_SCANNING_WAITERS):
            raise TooManyWaiters(
                f"{len(self)} requests are waiting already; try again shortly (a correlation_id "
                "filter waits more cheaply)"
            )
        bucket = self._others if key is None else self._by_correlation.setdefault(key, set())
        bucket.add(waiter)
        try:
            yield waiter
        finally:
            bucket.discard(waiter)
            if key is not None and not bucket:
                self._by_correlation.pop(key, None)

    def _on_committed(self, batch: Committed) -> None:
        """Set the hint of every waiter a row of the batch may concern (cheap: runs per batch)."""
        if self._by_correlation:
            for row in batch.rows:
                key = (row.get("correlation_key"), row.get("correlation_id"))
                bucket = self._by_correlation.get(key)
                for waiter in bucket or ():
                    if not waiter.hinted.is_set() and summary_matches(waiter.filter, row):
                        waiter.hinted.set()
        for waiter in list(self._others):
            if not waiter.hinted.is_set() and any(
                summary_matches(waiter.filter, row) for row in batch.rows
            ):
                waiter.hinted.set()


@dataclass(frozen=True)
class Found:
    """Matching summaries after a cursor, oldest first, and how far the read looked."""

    rows: list[dict[str, Any]]
    looked_to: Cursor | None  # the last row examined (matching or not), None: none
    more: bool = False  # a header/field scan stopped at its bound: read again at once


async def settled_matches(
    store: EventStore,
    event_filter: EventFilter,
    cursor: Cursor,
    limit: int,
    mask: Redactor | None = None,
) -> Found:
    """Summaries of settled rows after `cursor` the filter selects, oldest first, at most
    `limit`. `mask` is the reader's (a viewer's header/field filters compare masked values)."""
    conditions = await store.search.conditions(event_filter)
    if not store.is_sqlite:
        conditions.append(events.c.commit_seq < PG_HORIZON)
    if not (event_filter.headers or event_filter.fields):
        query = select(*SUMMARY_COLUMNS).where(and_(true(), *conditions, after(cursor)))
        rows = await _all(store, query, limit)
        return Found(rows, Cursor.of(rows[-1]) if rows else None)
    columns = (*SUMMARY_COLUMNS, events.c.headers, events.c.body, events.c.body_kind)
    found: list[dict[str, Any]] = []
    scanned, last = 0, cursor
    while len(found) < limit and scanned < SCAN_LIMIT:
        query = select(*columns).where(and_(true(), *conditions, after(last)))
        chunk = await _all(store, query, SCAN_CHUNK)
        for row in chunk:
            scanned += 1
            last = Cursor.of(row)
            if content_matches(event_filter, row, mask, None):
                found.append({name: row[name] for name in _SUMMARY_NAMES})
                if len(found) == limit:
                    break
        if len(chunk) < SCAN_CHUNK:
            return Found(found, last if scanned else None)
    return Found(found, last if scanned else None, more=len(found) < limit)


async def newest_settled(store: EventStore) -> Cursor:
    """Where the store ends now, as a cursor no later commit can sort before: what a test takes
    before it acts, to wait for what follows (cheap: one row off the commit-order index)."""
    query = select(events.c.commit_seq, events.c.id)
    if not store.is_sqlite:
        query = query.where(events.c.commit_seq < PG_HORIZON)
    async with store.engine.connect() as conn:
        found = (await conn.execute(query.order_by(*NEWEST_FIRST).limit(1))).first()
    return Cursor(int(found[0]), int(found[1])) if found else ORIGIN


async def _all(store: EventStore, query: Any, limit: int) -> list[dict[str, Any]]:
    """One short read: the connection goes back to the pool before anyone waits."""
    async with store.engine.connect() as conn:
        result = await conn.execute(query.order_by(*OLDEST_FIRST).limit(limit))
        return [dict(row._mapping) for row in result]


@dataclass(frozen=True)
class WaitResult:
    rows: list[dict[str, Any]]  # oldest first
    timed_out: bool  # the wait ended with fewer than min_count rows
    next_after: Cursor  # pass as `after` to continue after this answer
    waited: float  # seconds
    reads: int  # queries run (the first included)


async def wait_for_events(
    store: EventStore,
    room: WaitRoom,
    event_filter: EventFilter,
    *,
    after_cursor: Cursor | None,
    min_count: int,
    limit: int,
    wait_seconds: float,
    mask: Redactor | None = None,
    gone: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> WaitResult:
    """Matching rows after `after_cursor` (from the first row when None), returned as soon as
    there are `min_count` (at most `limit`), or when `wait_seconds` passed or `gone` is set
    (the client left): then with what there is and `timed_out`."""
    began = clock()
    deadline = began + max(0.0, wait_seconds)
    enough = min(min_count, limit)
    position = after_cursor or ORIGIN
    rows: list[dict[str, Any]] = []
    reads = 0
    with room.waiting(event_filter) as waiter:  # registered before the first read: no gap
        while True:
            waiter.hinted.clear()  # before the read: a batch committed during it wakes us again
            async with room.reads:
                found = await settled_matches(
                    store, event_filter, position, limit - len(rows), mask
                )
            reads += 1
            rows += found.rows
            position = found.looked_to or position
            left = deadline - clock()
            if len(rows) >= enough or left <= 0 or (gone is not None and gone.is_set()):
                break
            if found.more:
                continue
            pause = min(left, INDEX_RECHECK) if event_filter.q is not None else left
            await _first_of(waiter.hinted, gone, pause)
    return WaitResult(rows, len(rows) < min_count, position, clock() - began, reads)


async def _first_of(hint: asyncio.Event, gone: asyncio.Event | None, seconds: float) -> None:
    """Sleep until `hint` or `gone` is set, or `seconds` passed."""
    waits = [asyncio.ensure_future(hint.wait())]
    if gone is not None:
        waits.append(asyncio.ensure_future(gone.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
