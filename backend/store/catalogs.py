"""What the catalogs kept behind ingest (event types, aggregates) share: starting over.

Each catalog counts the stored events once, following them in commit order from its own
progress row. When stored events change under it (`eventscope reindex` re-extracted types or
aggregate ids), counts made under the old values are wrong: the catalog is emptied and its
progress set back to the start, in one transaction, and its task counts everything again. A
task that is running meanwhile finds the progress moved (its saves are compare-and-set) and
starts over too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Table, delete, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.dml import UpdateBase

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
