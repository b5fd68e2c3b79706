"""What the catalogs kept behind ingest (event types, aggregates) share: saving a batch with
their progress, and starting over.

A batch is written with the move of the catalog's progress row in one transaction, the move a
compare-and-set: when another process moved the progress first, nothing is written (so two
processes over one database never count an event twice).

Each catalog counts the stored events once, following them in commit order from its own
progress row. When stored events change under it (`eventscope reindex` re-extracted types or
aggregate ids), counts made under the old values are wrong: the catalog is emptied and its
progress set back to the start, in one transaction, and its task counts everything again. A
task that is running meanwhile finds the progress moved (its saves are compare-and-set) and
starts over too.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, delete, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.dml import UpdateBase

from eventscope.backend.store.events import PG_HORIZON
from eventscope.backend.store.models import events
from eventscope.backend.store.paging import OLDEST_FIRST, Cursor, after
from eventscope.backend.store.sqlite_writer import sql_value

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore


async def start_over(store: EventStore, tables: Sequence[Table], progress: Table) -> None:
    """Empty `tables` and move the `progress` row back before the first event."""
    statements: list[UpdateBase] = [delete(table) for table in tables]
    statements.append(update(progress).values(commit_seq=0, event_id=0))
    if store.is_sqlite:
        compiled = [
            str(s.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            for s in statements
        ]

        def work(conn: sqlite3.Connection) -> None:
            for statement in compiled:
                conn.execute(statement)

        await store.sqlite_writer().transaction(work)
        return
    async with store.engine.begin() as conn:
        for statement in statements:
            await conn.execute(statement)


# (statement, rows): executed once per row; statements with no rows are skipped.
Writes = Sequence[tuple[str, Sequence[dict[str, Any]]]]


class _Moved(Exception):
    """Another catalog moved the progress first: this batch is not written."""


async def save_with_progress(
    store: EventStore, progress: Table, start: Cursor, end: Cursor, writes: Writes
) -> bool:
    """Run `writes` and move `progress` from `start` to `end`, in one transaction; False
    (nothing written) when the progress is no longer at `start`."""
    move = text(
        f"UPDATE {progress.name} SET commit_seq = :seq, event_id = :id "  # noqa: S608 - a table of ours
        "WHERE id = 1 AND commit_seq = :from_seq AND event_id = :from_id"
    )
    moved = {"seq": end.seq, "id": end.id, "from_seq": start.seq, "from_id": start.id}
    writes = [(sql, rows) for sql, rows in writes if rows]
    if store.is_sqlite:

        def work(conn: sqlite3.Connection) -> bool:
            if conn.execute(move.text, moved).rowcount != 1:
                raise _Moved
            for sql, rows in writes:
                conn.executemany(sql, [{k: sql_value(v) for k, v in r.items()} for r in rows])
            return True

        try:
            return await store.sqlite_writer().transaction(work)
        except _Moved:
            return False
    async with store.engine.connect() as conn, conn.begin() as transaction:
        if (await conn.execute(move, moved)).rowcount != 1:
            await transaction.rollback()
            return False
        for sql, rows in writes:
            await conn.execute(text(sql), list(rows))
    return True


class FollowsEvents:
    """A catalog's place in the stored events: its progress row, the next events to count, and
    how long the first uncounted one has waited. Subclasses name their progress table and the
    columns they count."""

    progress_table: Table
    pending_columns: Sequence[Any]

    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def progress(self) -> Cursor:
        table = self.progress_table
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(select(table.c.commit_seq, table.c.event_id))).first()
        return Cursor(int(row[0]), int(row[1])) if row else Cursor(0, 0)

    async def pending(self, position: Cursor, limit: int) -> list[dict[str, Any]]:
        """The next events to count, oldest first; on Postgres only those below the horizon
        (no transaction still running can commit an event before them)."""
        query = select(*self.pending_columns).where(*past(position))
        if not self.store.is_sqlite:
            query = query.where(events.c.commit_seq < PG_HORIZON)
        async with self.store.engine.connect() as conn:
            result = await conn.execute(query.order_by(*OLDEST_FIRST).limit(limit))
            return [dict(r._mapping) for r in result]

    async def oldest_uncounted(self, position: Cursor) -> dt.datetime | None:
        """When the first event not yet counted was received (how far the catalog is behind)."""
        query = select(events.c.received_at).where(*past(position))
        async with self.store.engine.connect() as conn:
            found: dt.datetime | None = await conn.scalar(query.order_by(*OLDEST_FIRST).limit(1))
        return found


def past(position: Cursor) -> tuple[ColumnElement[bool], ...]:
    """Rows after `position` in commit order, with a bound the commit-order index can start
    from: `after` alone (an OR) makes both databases walk the index from its first entry,
    about a second at a million events."""
    return events.c.commit_seq >= position.seq, after(position)
