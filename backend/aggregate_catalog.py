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

from typing import Any

from eventscope.backend.behind_ingest import CatalogFollower
from eventscope.backend.store.aggregates import CatalogWrite, catalog_rows


class AggregateCatalog(CatalogFollower):
    name = "aggregate catalog"
    tables = "aggregates"

    async def count(self, rows: list[dict[str, Any]]) -> CatalogWrite:
        return CatalogWrite(catalog_rows(rows))
