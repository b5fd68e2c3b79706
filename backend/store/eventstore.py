"""`EventStore`: the engine, the dialect's differences, batch writing, and the feature queries.

Everything that reads or writes the database goes through one store object, so the places
where SQLite and Postgres differ are written once, here and in the writers. The store grows by
feature modules, each a small class holding the store: `events` (pages, one event, related
events, the committed-rows feed), `search` (the filter language), `fulltext` (the search index
behind ingest), `types` (the event type catalog, also behind ingest), `aggregates` (one
aggregate's events and the aggregate catalog) and `audit`; dead letters and retention add theirs
the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend.store.aggregates import AggregateQueries
from eventscope.backend.store.audit import AuditLog
from eventscope.backend.store.correlations import CorrelationCatalogQueries
from eventscope.backend.store.dead_letters import DeadLetterQueries
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.events import EventQueries
from eventscope.backend.store.fulltext import FullText
from eventscope.backend.store.replay_batches import ReplayBatches
from eventscope.backend.store.replays import ReplayLedger
from eventscope.backend.store.search import EventSearch
from eventscope.backend.store.sqlite_writer import SqliteBatchWriter, sqlite_path
from eventscope.backend.store.trace import TraceQueries
from eventscope.backend.store.types import EventTypes
from eventscope.backend.store.writer import BatchResult, Ledger, PostgresBatchWriter


class EventStore:
    """Open with `EventStore(url)`; `await store.close()` when done."""

    def __init__(self, database_url: str, *, engine: AsyncEngine | None = None) -> None:
        self.url = database_url
        self.engine = engine or create_engine(database_url)
        self.dialect = self.engine.dialect.name  # "sqlite" or "postgresql"
        self.events = EventQueries(self)
        self.audit = AuditLog(self)
        self.search = EventSearch(self)
        self.fulltext = FullText(self)
        self.trace = TraceQueries(self)  # one correlation's events (backend/trace.py)
        self.types = EventTypes(self)  # the event type catalog (backend/type_catalog.py)
        self.aggregates = AggregateQueries(self)  # one aggregate's events, the catalog
        self.correlations = CorrelationCatalogQueries(self)  # what traces summarise from
        self.dead_letters = DeadLetterQueries(self)  # the newest dead letters, for /dlq
        self.replays = ReplayLedger(self)  # the replay ledger, dead letters' states
        self.replay_batches = ReplayBatches(self)  # bulk replays and their messages
        self._writer: SqliteBatchWriter | PostgresBatchWriter | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def name(self) -> str:
        """Where the events are, without credentials (for logs and the status bar)."""
        return self.url if self.is_sqlite else self.url.rsplit("@", 1)[-1]

    async def write(
        self, rows: Sequence[dict[str, Any]], ledger: Ledger | None = None
    ) -> BatchResult:
        """Store one batch in one transaction (the only way rows enter `events`); raises on
        database errors, which the caller retries or splits (backend/ingest/committer.py).

        The recorder passes a `Ledger` (backend/store/writer.py): the batch then lists what it
        took in `pending_acks`, and redeliveries listed by sessions that are gone are skipped.
        Without one (tests, imports) every row is a new observation."""
        return await self._batch_writer().store(rows, ledger)

    async def pending_holders(self, fingerprints: Collection[bytes], exclude: int) -> set[int]:
        """The recorder sessions (other than `exclude`) whose batches, committed but not known
        to be acked, list any of `fingerprints`."""
        return await self._batch_writer().pending_holders(fingerprints, exclude)

    async def clear_pending(
        self, batches: Sequence[int], expire_before: dt.datetime | None = None
    ) -> None:
        """Forget the listings of `batches` (their ack was confirmed), and any listing older
        than `expire_before`."""
        await self._batch_writer().clear_pending(batches, expire_before)

    def sqlite_writer(self) -> SqliteBatchWriter:
        """The one thread that writes this SQLite file (other writers queue behind it)."""
        writer = self._batch_writer()
        assert isinstance(writer, SqliteBatchWriter)
        return writer

    def _batch_writer(self) -> SqliteBatchWriter | PostgresBatchWriter:
        if self._writer is None:
            self._writer = self._make_writer()
        return self._writer

    def _make_writer(self) -> SqliteBatchWriter | PostgresBatchWriter:
        if self.is_sqlite:
            path = sqlite_path(self.url)
            if path is None:
                raise ValueError(f"{self.url}: eventscope needs a SQLite file, not in-memory")
            return SqliteBatchWriter(path)
        if self.engine.dialect.driver != "asyncpg":
            raise ValueError(f"{self.name}: use postgresql+asyncpg://")
        return PostgresBatchWriter(self.engine)

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.scalar(select(1))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        await self.engine.dispose()
