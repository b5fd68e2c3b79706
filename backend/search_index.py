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
import time
from collections.abc import Callable

from eventscope.backend.redaction import Redactor
from eventscope.backend.search_text import search_text
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor
from eventscope.backend.waiting import sleep_unless_stopped

log = logging.getLogger(__name__)

BATCH = 500
IDLE_WAIT = 1.0
BUSY_WAIT = 1.0


class SearchIndexer:
    def __init__(
        self,
        store: EventStore,
        redactor: Redactor,
        *,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.redactor = redactor
        self.busy = busy  # the recorder has a backlog: ingest goes first, search waits
        self.behind: float | None = None  # seconds: the oldest unindexed event's age; 0 caught up
        self.indexed = 0
        self.error: str | None = None
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Events were committed (the runtime calls this after each of the recorder's commits)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.busy():  # recording a backlog: do not take a core from it
                await self._note_behind()
                await sleep_unless_stopped(stop, BUSY_WAIT)
                continue
            try:
                began = time.monotonic()
                done = await self.index_some()
                self.error = None
            except Exception as exc:  # the database is away: try again later
                self.error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("search indexing waits: %s", exc)
                done = 0
            if done < BATCH:
                self._wake.clear()
                woken = asyncio.ensure_future(self._wake.wait())
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    [woken, stopped], timeout=IDLE_WAIT, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
                stopped.cancel()
            else:  # at most half a core while catching up
                await sleep_unless_stopped(stop, time.monotonic() - began)

    async def _note_behind(self) -> None:
        """Keep `behind` current while waiting, so the status says how stale search is."""
        try:
            fulltext = self.store.fulltext
            oldest = await fulltext.oldest_unindexed(await fulltext.progress())
        except Exception:
            return
        self.behind = _age(oldest) if oldest is not None else 0.0

    async def index_some(self) -> int:
        """Index the next batch; the number of events indexed."""
        fulltext = self.store.fulltext
        position = await fulltext.progress()
        rows = await fulltext.pending(position, BATCH)
        if not rows:
            self.behind = 0.0
            return 0
        entries: list[tuple[int, str]] = []
        for n, row in enumerate(rows):
            entries.append((int(row["id"]), search_text(row, self.redactor)))
            if n % 100 == 99:
                await asyncio.sleep(0)  # let the recorder and the pages run
        last = Cursor.of(rows[-1])
        await fulltext.add(entries, last)
        self.indexed += len(rows)
        oldest = await fulltext.oldest_unindexed(last)
        self.behind = _age(oldest) if oldest is not None else 0.0
        return len(rows)


def _age(when: dt.datetime) -> float:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (dt.datetime.now(dt.UTC) - when).total_seconds())
