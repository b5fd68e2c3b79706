"""The aggregate catalog: every aggregate seen, with its event count, highest version, and last
event, kept behind ingest.

The list of aggregates must answer at once on a store of millions of events, so it never
groups the events table: this runtime task follows the stored events in commit order (woken
by the recorder's commits, polling otherwise) and adds each batch's counts to one row per
aggregate (backend/store/aggregates.py). Like the type catalog it gives way to ingest: while
the recorder drains a backlog it waits, and catching up it takes at most half a core. Each
batch is written with the progress row in one transaction, moved by compare-and-set, so two
processes over one database never count an event twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from eventscope.backend.behind_ingest import BehindIngest
from eventscope.backend.store.aggregates import CatalogWrite, catalog_rows
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor

log = logging.getLogger(__name__)

BATCH = 2000
CAUGHT_UP_EVERY = 0.5  # seconds: the least time between two small batches


class AggregateCatalog(BehindIngest):
    name = "aggregate catalog"
    batch = BATCH
    caught_up_every = CAUGHT_UP_EVERY

    def __init__(
        self,
        store: EventStore,
        *,
        busy: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(busy=busy, clock=clock)
        self.store = store
        self.counted = 0

    async def step(self) -> int:
        return await self.catalog_some()

    async def oldest_pending(self) -> dt.datetime | None:
        queries = self.store.aggregates
        return await queries.oldest_uncounted(await queries.progress())

    async def catalog_some(self) -> int:
        """Count the next batch of events; how many were read (0: caught up)."""
        queries = self.store.aggregates
        start = await queries.progress()
        rows = await queries.pending(start, BATCH)
        if not rows:  # caught up, or (Postgres) the next rows wait behind an open transaction
            self.behind = self.age(await queries.oldest_uncounted(start))
            return 0
        end = Cursor.of(rows[-1])
        if not await queries.save(CatalogWrite(catalog_rows(rows)), start, end):
            log.info("another aggregate catalog counted events %s to %s first", start, end)
            return 0
        self.counted += len(rows)
        self.behind = self.age(await queries.oldest_uncounted(end))
        return len(rows)
