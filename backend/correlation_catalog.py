"""The correlation catalog: per correlation and service, the counts and times a trace's summary
shows, kept behind ingest.

A trace of 10,000 events must open as fast as one of ten: its summary (count, duration,
services, dead letters, retries) comes from these rows plus the few events committed since the
catalog's progress (backend/store/trace.py), never from reading every event of the
correlation. Like the other catalogs it follows the stored events in commit order, gives way
to ingest, and saves each batch with its progress row by compare-and-set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from eventscope.backend.behind_ingest import CatalogFollower
from eventscope.backend.store.correlations import service_rows
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor


class CorrelationCatalog(CatalogFollower):
    name = "correlation catalog"

    def __init__(
        self,
        store: EventStore,
        *,
        busy: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(store.correlations, busy=busy, clock=clock)
        self.store = store

    async def count(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return service_rows(rows)

    async def save(self, counts: list[dict[str, Any]], start: Cursor, end: Cursor) -> bool:
        return await self.store.correlations.save(counts, start, end)
