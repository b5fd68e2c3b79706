"""The two batch writers (SQLite's thread, Postgres through asyncpg) store the same rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.sqlite_writer import sqlite_path
from eventscope.backend.store.writer import BatchResult, Ledger
from eventscope.web.display import as_utc
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


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row without what each database assigns itself (id, commit sequence), with
    values in one form (SQLite returns naive UTC datetimes and bytes-like blobs)."""
    out = {k: v for k, v in row.items() if k not in ("id", "commit_seq")}
    for name in ("received_at", "occurred_at"):
        out[name] = as_utc(out[name])
    for name in ("fingerprint", "body", "raw_properties"):
        out[name] = bytes(out[name]) if out[name] is not None else None
    return out


async def test_sqlite_and_postgres_writers_store_identical_rows(
    sqlite_url: str, pg_url: str
) -> None:
    rows = [to_row(d, 1 << 20) for d in deliveries()]
    # The redelivery is skipped when the batch that stored its original, by a recorder session
    # now gone (holder 1), still lists it as committed but not known to be acked.
    first = [r for r in rows if not r["redelivered"]]
    again = [r for r in rows if r["redelivered"]]
    results = []
    for url in (sqlite_url, pg_url):
        store = EventStore(url)
        try:
            one = await store.write(first, Ledger(holder=1, batch=11))
            two = await store.write(again, Ledger(holder=2, batch=12, released=frozenset({1})))
            results.append(
                BatchResult(
                    one.stored + two.stored,
                    one.skipped_redeliveries + two.skipped_redeliveries,
                    one.duplicates + two.duplicates,
                    one.batches + two.batches,
                )
            )
        finally:
            await store.close()

    by_sqlite, by_postgres = results
    assert by_sqlite == by_postgres
    assert (by_sqlite.stored, by_sqlite.duplicates, by_sqlite.skipped_redeliveries) == (253, 1, 1)
    sqlite_rows, postgres_rows = await stored_rows(sqlite_url), await stored_rows(pg_url)
    assert [_comparable(r) for r in sqlite_rows] == [_comparable(r) for r in postgres_rows]
    assert as_utc(sqlite_rows[0]["received_at"]) == WHEN
    assert sqlite_rows[1]["observation"] == 2
    assert {r["commit_seq"] for r in sqlite_rows} == {1}, "one batch, one commit sequence"
    assert len({r["commit_seq"] for r in postgres_rows}) == 1


def test_only_file_backed_sqlite_urls_get_the_thread_writer() -> None:
    assert sqlite_path("sqlite+aiosqlite:///events.db") == "events.db"
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("postgresql+asyncpg://u@h/db") is None
