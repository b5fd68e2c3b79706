"""The full-text index, kept behind ingest: what is indexed, where indexing stands, writing it.

SQLite keeps the words of each event in the FTS5 table `events_fts` (rowid = event id);
Postgres in `event_search` (a `simple` tsvector per event, GIN-indexed). Both are written by
the search indexer (backend/search_index.py) in batches that also move `search_progress`, the
commit-order cursor up to which every event is indexed. On Postgres it reads, like the change
feed, only below the oldest running transaction, so no event is passed over.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sqlalchemy import text, update

from eventscope.backend.store.catalogs import FollowsEvents
from eventscope.backend.store.models import events, search_progress
from eventscope.backend.store.paging import Cursor

_COLUMNS = (
    events.c.id,
    events.c.commit_seq,
    events.c.received_at,
    events.c.exchange,
    events.c.routing_key,
    events.c.event_type,
    events.c.event_id,
    events.c.correlation_id,
    events.c.aggregate_type,
    events.c.aggregate_id,
    events.c.message_id,
    events.c.headers,
    events.c.body_kind,
    # The indexer reads only a prefix of each body (search_text.BODY_PREFIX).
    events.c.body,
)


class FullText(FollowsEvents):
    progress_table = search_progress
    pending_columns = _COLUMNS

    async def add(self, entries: Sequence[tuple[int, str]], position: Cursor) -> None:
        """Index (event id, words) pairs and move the progress cursor, in one transaction."""
        if self.store.is_sqlite:
            writer = self.store.sqlite_writer()

            def work(conn: sqlite3.Connection) -> None:
                conn.executemany(
                    "INSERT OR REPLACE INTO events_fts (rowid, words) VALUES (?, ?)", entries
                )
                conn.execute(
                    "UPDATE search_progress SET commit_seq = ?, event_id = ? WHERE id = 1",
                    (position.seq, position.id),
                )

            await writer.transaction(work)
            return
        async with self.store.engine.begin() as conn:
            if entries:
                await conn.execute(
                    text(
                        "INSERT INTO event_search (event_id, doc) "
                        "VALUES (:id, to_tsvector('simple', :words)) "
                        "ON CONFLICT (event_id) DO UPDATE SET doc = EXCLUDED.doc"
                    ),
                    [{"id": event_id, "words": words} for event_id, words in entries],
                )
            await conn.execute(
                update(search_progress)
                .where(search_progress.c.id == 1)
                .values(commit_seq=position.seq, event_id=position.id)
            )
