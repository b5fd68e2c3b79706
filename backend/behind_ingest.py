"""Work kept behind ingest: the search index and the catalogs of types and aggregates.

Each follows the stored events in commit order from its own progress row and never gets in the
recorder's way: while the recorder drains a backlog it waits (keeping its `behind` current so
the pages can say how stale they are), catching up it takes at most half a core (it sleeps as
long as its last batch took), and caught up it wakes on the recorder's commits (`notify`), at
most once per `caught_up_every` seconds so a trickle of commits does not rewrite the same rows
over and over, else polls every `idle_wait` seconds (a recorder in another process).
Subclasses say what one batch is (`step`) and how old the first event they have not taken in
is (`oldest_pending`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from eventscope.backend.store.paging import Cursor
from eventscope.backend.waiting import sleep_unless_stopped

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

log = logging.getLogger(__name__)


class BehindIngest:
    name = "work behind ingest"  # for the log
    batch = 500  # a step that read fewer events than this has caught up
    busy_wait = 1.0
    idle_wait = 1.0
    caught_up_every = 0.0

    def __init__(
        self, *, busy: Callable[[], bool] = lambda: False, clock: Callable[[], float] = time.time
    ) -> None:
        self.busy = busy  # the recorder has a backlog: ingest goes first, this waits
        self.clock = clock
        self.behind: float | None = None  # seconds: the oldest pending event's age; 0 caught up
        self.error: str | None = None
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Events were committed (the runtime calls this after each of the recorder's commits)."""
        self._wake.set()

    async def step(self) -> int:
        """Take in the next batch; how many events were read (0: caught up)."""
        raise NotImplementedError

    async def oldest_pending(self) -> dt.datetime | None:
        """When the first event not yet taken in was received (None: none is pending)."""
        raise NotImplementedError

    def age(self, when: dt.datetime | None) -> float:
        """Seconds since `when` (0 for None): what `behind` holds."""
        if when is None:
            return 0.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, self.clock() - when.timestamp())

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.busy():  # recording a backlog: do not take a core from it
                await self._note_behind()
                await sleep_unless_stopped(stop, self.busy_wait)
                continue
            began = time.monotonic()
            self._wake.clear()  # commits from here on wake the next round
            try:
                done = await self.step()
                self.error = None
            except Exception as exc:  # the database is away: try again later
                self.error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("%s waits: %s", self.name, exc)
                done = 0
            if done < self.batch:
                spent = time.monotonic() - began
                await sleep_unless_stopped(stop, self.caught_up_every - spent)
                woken = asyncio.ensure_future(self._wake.wait())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    [woken, stopped], timeout=self.idle_wait, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
                stopped.cancel()
            else:  # at most half a core while catching up
                await sleep_unless_stopped(stop, time.monotonic() - began)

    async def _note_behind(self) -> None:
        """Keep `behind` current while waiting, so the pages say how stale they are."""
        try:
            self.behind = self.age(await self.oldest_pending())
        except Exception:
            return


class Counted(Protocol):
    """A catalog's store side (store/catalogs.py `FollowsEvents` plus how it saves a batch)."""

    async def progress(self) -> Cursor: ...

    async def pending(self, position: Cursor, limit: int) -> list[dict[str, Any]]: ...

    async def oldest_uncounted(self, position: Cursor) -> dt.datetime | None: ...

    async def save(self, counts: Any, start: Cursor, end: Cursor) -> bool: ...


class CatalogFollower(BehindIngest):
    """A catalog that counts the stored events once, in commit order, batch by batch: each
    batch's counts are saved with the move of its progress row (a compare-and-set, so two
    processes over one database never count an event twice). Subclasses name their store side
    (`tables`, the store attribute) and say what a batch's counts are (`count`)."""

    batch = 2000
    caught_up_every = 0.5  # seconds: the least time between two small batches
    tables = ""  # the store's attribute for this catalog (e.g. "aggregates")

    def __init__(
        self,
        store: EventStore,
        *,
        busy: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(busy=busy, clock=clock)
        self.store = store
        self.queries: Counted = getattr(store, self.tables)
        self.counted = 0

    async def count(self, rows: list[dict[str, Any]]) -> Any:
        """What one batch of events adds to the catalog."""
        raise NotImplementedError

    async def save(self, counts: Any, start: Cursor, end: Cursor) -> bool:
        """Save `counts` and move the progress from `start` to `end` (False: moved by another)."""
        return await self.queries.save(counts, start, end)

    def saved(self, counts: Any) -> None:
        """A batch was saved (for subclasses that keep time-based chores)."""

    async def step(self) -> int:
        return await self.catalog_some()

    async def oldest_pending(self) -> dt.datetime | None:
        return await self.queries.oldest_uncounted(await self.queries.progress())

    async def catalog_some(self) -> int:
        """Count the next batch of events; how many were read (0: caught up)."""
        queries = self.queries
        start = await queries.progress()
        rows = await queries.pending(start, self.batch)
        if not rows:  # caught up, or (Postgres) the next rows wait behind an open transaction
            self.behind = self.age(await queries.oldest_uncounted(start))
            return 0
        end = Cursor.of(rows[-1])
        counts = await self.count(rows)
        if not await self.save(counts, start, end):
            log.info("another %s counted events %s to %s first", self.name, start, end)
            return 0
        self.saved(counts)
        self.counted += len(rows)
        self.behind = self.age(await queries.oldest_uncounted(end))
        return len(rows)
