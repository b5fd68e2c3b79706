"""The recorder's SQLite writer stores exactly what the SQLAlchemy writer would."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.migrate import upgrade_async
from eventscope.backend.store.sqlite_writer import SqliteBatchWriter, sqlite_path
from eventscope.backend.store.writer import store_batch
from tests.integration.test_ingest import seed_event, stored_rows

WHEN = dt.datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=dt.UTC)


def deliveries() -> list[Delivery]:
    props = {"message_id": "m1", "timestamp": WHEN, "delivery_mode": 2}
    return [
        Delivery("events", "order.created", False, props, {"h": 1}, seed_event(1), WHEN),
        Delivery("events", "order.created", False, props, {"h": 1}, seed_event(1), WHEN),  # dup
        Delivery("events", "order.created", True, props, {"h": 1}, seed_event(1), WHEN),  # skip
        Delivery("events", "nul\x00key", False, {}, None, b"\xff\x00binary", WHEN),
        *(Delivery("events", f"k.{i}", False, {}, None, seed_event(i), WHEN) for i in range(250)),
    ]


async def test_thread_writer_and_sqlalchemy_writer_store_identical_rows(tmp_path: Path) -> None:
    urls = [f"sqlite+aiosqlite:///{tmp_path}/{name}.db" for name in ("thread", "orm")]
    for url in urls:
        await upgrade_async(url)
    rows = [to_row(d, 1 << 20) for d in deliveries()]

    path = sqlite_path(urls[0])
    assert path is not None
    writer = SqliteBatchWriter(path)
    try:
        by_thread = await writer.store(rows)
    finally:
        await writer.close()
    engine = create_engine(urls[1])
    try:
        by_orm = await store_batch(engine, rows)
    finally:
        await engine.dispose()

    assert by_thread == by_orm
    assert (by_thread.stored, by_thread.duplicates, by_thread.skipped_redeliveries) == (253, 1, 1)
    thread_rows, orm_rows = await stored_rows(urls[0]), await stored_rows(urls[1])
    assert thread_rows == orm_rows
    assert thread_rows[0]["received_at"] == WHEN.replace(tzinfo=None)
    assert thread_rows[1]["observation"] == 2


def test_only_file_backed_sqlite_urls_get_the_thread_writer() -> None:
    assert sqlite_path("sqlite+aiosqlite:///events.db") == "events.db"
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("postgresql+asyncpg://u@h/db") is None
