"""The search indexer: keeps the full-text index behind ingest, never in its way.

Indexing in the recorder's transaction would slow every batch; instead this runtime task
follows the stored events in commit order (woken by the recorder's commits, polling
otherwise), turns each into its masked words (backend/search_text.py) and writes them with
the progress cursor in one transaction. It gives way to ingest: while the recorder drains a
backlog it waits, and catching up it takes at most half a core. How far behind it is shows in
the status bar and next to a search, so a search that misses the newest events says so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from eventscope.backend.behind_ingest import BehindIngest
from eventscope.backend.redaction import Redactor
from eventscope.backend.search_text import search_text
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor

log = logging.getLogger(__name__)

BATCH = 500


class SearchIndexer(BehindIngest):
    name = "search indexing"
    batch = BATCH

    def __init__(
        self,
        store: EventStore,
        redactor: Redactor,
        *,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(busy=busy)
        self.store = store
        self.redactor = redactor
        self.indexed = 0

    async def step(self) -> int:
        return await self.index_some()

    async def oldest_pending(self) -> dt.datetime | None:
        fulltext = self.store.fulltext
        return await fulltext.oldest_uncounted(await fulltext.progress())

    async def index_some(self) -> int:
        """Index the next batch; the number of events indexed."""
        fulltext = self.store.fulltext
        position = await fulltext.progress()
        rows = await fulltext.pending(position, BATCH)
        if not rows:  # caught up, or (Postgres) the next rows wait behind an open transaction
            self.behind = self.age(await fulltext.oldest_uncounted(position))
            return 0
        entries: list[tuple[int, str]] = []
        for n, row in enumerate(rows):
            entries.append((int(row["id"]), search_text(row, self.redactor)))
            if n % 100 == 99:
                await asyncio.sleep(0)  # let the recorder and the pages run
        last = Cursor.of(rows[-1])
        await fulltext.add(entries, last)
        self.indexed += len(rows)
        self.behind = self.age(await fulltext.oldest_uncounted(last))
        return len(rows)
