"""The correlation catalog: per correlation and service, the counts and times a trace's summary
shows, kept behind ingest.

A trace of 10,000 events must open as fast as one of ten: its summary (count, duration,
services, dead letters, retries) comes from these rows plus the few events committed since the
catalog's progress (backend/store/trace.py), never from reading every event of the
correlation. Like the other catalogs it follows the stored events in commit order, gives way
to ingest, and saves each batch with its progress row by compare-and-set.
"""

from __future__ import annotations

from typing import Any

from eventscope.backend.behind_ingest import CatalogFollower
from eventscope.backend.store.correlations import service_rows


class CorrelationCatalog(CatalogFollower):
    name = "correlation catalog"
    tables = "correlations"

    async def count(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return service_rows(rows)
