"""The change feed hands every committed row out once, in commit order — also rows that commit
out of id order when two writers share one Postgres (the old `id > last` tail skipped them)."""

from __future__ import annotations

import asyncio

import asyncpg

from eventscope.backend.changefeed import ChangeFeed, Committed
from eventscope.backend.envelope import to_row
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor
from eventscope.backend.store.writer import _PG_INSERT, _PG_TRANSACTION_ID, COLUMNS
from tests.conftest import eventually
from tests.web.conftest import delivery


async def _insert(conn: asyncpg.Connection, routing_key: str) -> None:
    """One row as the Postgres writer inserts it, in the caller's open transaction."""
    row = {**to_row(delivery(routing_key, b"{}"), 1024), "observation": 1}
    seq = await conn.fetchval(_PG_TRANSACTION_ID)
    await conn.execute(_PG_INSERT, *(row.get(name) for name in COLUMNS), seq)


async def test_rows_committed_out_of_id_order_reach_the_feed_once(pg_url: str) -> None:
    store = EventStore(pg_url)
    feed = ChangeFeed(store, poll_interval=0.02)
    seen: list[Committed] = []
    feed.listen(seen.append)
    stop = asyncio.Event()
    running = asyncio.create_task(feed.run(stop))
    dsn = pg_url.replace("postgresql+asyncpg", "postgresql")
    slow, fast = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        await asyncio.wait_for(feed.started.wait(), 10)
        slow_tx = slow.transaction()
        await slow_tx.start()
        await _insert(slow, "first.id.commits.last")  # the smaller id
        async with fast.transaction():
            await _insert(fast, "second.id.commits.first")
        await asyncio.sleep(0.3)  # several polls while the slow writer is still open
        assert [r["routing_key"] for batch in seen for r in batch.rows] == [], (
            "nothing is handed out while an older transaction could still commit before it"
        )
        await slow_tx.commit()
        await eventually(lambda: sum(len(b.rows) for b in seen) >= 2, 10, "both rows delivered")
        await asyncio.sleep(0.2)
        delivered = [r for batch in seen for r in batch.rows]
        assert sorted(r["routing_key"] for r in delivered) == [
            "first.id.commits.last",
            "second.id.commits.first",
        ], "each row exactly once"
        cursors = [Cursor.of(r) for r in delivered]
        assert cursors == sorted(cursors), "in commit order"
    finally:
        stop.set()
        await running
        await slow.close()
        await fast.close()
        await store.close()


async def test_a_page_never_shifts_when_new_rows_arrive(database_url: str) -> None:
    """Cursor paging: the page older than a cursor is the same before and after new commits."""
    store = EventStore(database_url)
    try:
        for n in range(5):
            await store.write([to_row(delivery(f"batch.{n}", b"{}"), 1024)])
        first = await store.events.page(2)
        assert first.older is not None and first.newer is None
        older = await store.events.page(2, older_than=first.older)
        await store.write([to_row(delivery("late", b"{}"), 1024)])
        assert (await store.events.page(2, older_than=first.older)).rows == older.rows
        back = await store.events.page(2, newer_than=older.newer) if older.newer else None
        assert back is not None and [r["id"] for r in back.rows] == [r["id"] for r in first.rows]
        newest = (await store.events.page(10)).rows[0]
        assert newest["routing_key"] == "late"
    finally:
        await store.close()
