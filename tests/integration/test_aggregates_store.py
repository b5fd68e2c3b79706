"""Aggregates in the store, on both databases: one aggregate's events matched exactly (prefixes,
look-alikes, long and NUL ids never join another), the catalog's counts, versions and searches
kept behind ingest, and folds kept between reads that stay equal to a full fold — on Postgres
also while an older transaction holds the horizon back."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from eventscope.backend.aggregate_catalog import AggregateCatalog
from eventscope.backend.aggregate_folds import AggregateFolds, reducers_for
from eventscope.backend.aggregates.fold import fold
from eventscope.backend.aggregates.reducer_set import load_reducers
from eventscope.backend.envelope import Delivery, aggregate_key, to_row
from eventscope.backend.runtime import Runtime
from eventscope.backend.store.aggregates import (
    AggregateRef,
    CatalogQuery,
    CatalogWrite,
    catalog_rows,
)
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor
from eventscope.web.cli import main
from tests.conftest import Broker, Names, eventually, make_settings

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
ORDER_RULES = Path(__file__).resolve().parents[2] / "examples" / "reducers" / "order.toml"
REDUCERS = load_reducers(ORDER_RULES, (), demo=False, entry_points=False)


def event(
    ident: str,
    version: int | None,
    event_type: str = "OrderCreated",
    *,
    kind: str | None = "Order",
    seconds: float = 0,
    routing_key: str = "order.created",
    **data: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"evt_{ident[:20]}_{version}_{event_type}",
        "eventType": event_type,
        "aggregateId": ident,
        "data": {"n": version, **data},
    }
    if kind is not None:
        body["aggregateType"] = kind
    if version is not None:
        body["version"] = version
    raw = json.dumps(body, ensure_ascii=False).encode()
    when = T0 + dt.timedelta(seconds=seconds)
    return to_row(Delivery("events", routing_key, False, {}, None, raw, when), 1 << 20)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(database_url)
    yield opened
    await opened.close()


async def catalogued(store: EventStore) -> None:
    """Count every stored event (Postgres reads below the oldest running transaction, which
    other sessions on the server can hold back a moment)."""
    counter = AggregateCatalog(store)
    newest = (await store.events.page(1)).rows

    async def done() -> bool:
        while await counter.catalog_some():
            pass
        return not newest or await store.aggregates.progress() == Cursor.of(newest[0])

    await eventually(done, 30, "the aggregate catalog to count every stored event")


async def ids_of(store: EventStore, ref: AggregateRef) -> list[int]:
    return [r["id"] for r in await store.aggregates.rows(ref, limit=1000)]


async def test_an_aggregate_s_events_are_matched_exactly(store: EventStore) -> None:
    long_a, long_b = "x" * 1100 + "a", "x" * 1100 + "b"  # the same first 1024 characters
    names = ["order_1", "order_10", "order_", "оrder_1", "Order_1", long_a, long_b, "nul\x00id"]
    await store.write([event(name, 1) for name in names])
    await store.write([event("order_1", 2, "OrderPaid"), event("order_1", 3, kind="Invoice")])
    found = await ids_of(store, AggregateRef.of("Order", "order_1"))
    assert len(found) == 2
    for name in names[1:5]:
        assert len(await ids_of(store, AggregateRef.of("Order", name))) == 1, name
    assert len(await ids_of(store, AggregateRef.of("Invoice", "order_1"))) == 1
    assert await ids_of(store, AggregateRef.of(None, "order_1")) == []
    assert len(await ids_of(store, AggregateRef.of("Order", long_a))) == 1
    assert len(await ids_of(store, AggregateRef.of("Order", long_b))) == 1
    # The stored (display) form of a long id is cut: it reaches the aggregate only with its key.
    shown = long_a[:1024]
    assert await ids_of(store, AggregateRef.of("Order", shown)) == []
    keyed = AggregateRef.of("Order", shown, aggregate_key("Order", long_a))
    assert len(await ids_of(store, keyed)) == 1
    # A NUL is stored as ␀: the sent id and the stored form with the key both reach it.
    assert len(await ids_of(store, AggregateRef.of("Order", "nul\x00id"))) == 1
    assert await ids_of(store, AggregateRef.of("Order", "nul\u2400id")) == []
    nul_key = aggregate_key("Order", "nul\x00id")
    assert len(await ids_of(store, AggregateRef.of("Order", "nul\u2400id", nul_key))) == 1


async def test_rows_are_read_in_commit_order_from_a_sequence_number(store: EventStore) -> None:
    await store.write([event("order_1", 1)])
    await store.write([event("order_1", 2, "OrderPaid")])
    ref = AggregateRef.of("Order", "order_1")
    rows = await store.aggregates.rows(ref, limit=10)
    assert [r["aggregate_version"] for r in rows] == [1, 2]
    assert rows[1]["commit_seq"] > rows[0]["commit_seq"]
    later = await store.aggregates.rows(ref, from_seq=rows[1]["commit_seq"], limit=10)
    assert [r["id"] for r in later] == [rows[1]["id"]]

    async def passed() -> bool:  # on Postgres, once no older transaction is open
        return await store.aggregates.horizon() > rows[1]["commit_seq"]

    await eventually(passed, 30, "the horizon to pass the rows")
    assert len(await store.aggregates.rows(ref, limit=1)) == 1


async def test_the_catalog_counts_events_versions_dead_letters_and_the_last_event(
    store: EventStore,
) -> None:
    await store.write([event("order_1", 1, seconds=0), event("order_2", 1, seconds=1)])
    await catalogued(store)
    await store.write(
        [
            event("order_1", 3, "OrderShipped", seconds=30),
            event("order_1", 2, "OrderPaid", seconds=20, routing_key="dlq.order.paid"),
            event("order_1", 2, "OrderPaid", seconds=10),
            event("loose", None, "Touched", kind=None, seconds=5),
        ]
    )
    await catalogued(store)
    one = await store.aggregates.one(aggregate_key("Order", "order_1"))  # type: ignore[arg-type]
    assert one is not None
    assert (one["events"], one["dead_letters"], one["max_version"]) == (4, 1, 3)
    assert one["last_event_type"] == "OrderPaid"  # the newest in commit order
    ids = [
        r["id"] for r in await store.aggregates.rows(AggregateRef.of("Order", "order_1"), limit=9)
    ]
    assert (one["first_event_id"], one["last_event_id"]) == (ids[0], ids[-1])
    utc = [v.replace(tzinfo=dt.UTC) for v in (one["first_seen"], one["last_seen"])]
    assert utc == [T0, T0 + dt.timedelta(seconds=30)]
    loose = await store.aggregates.one(aggregate_key(None, "loose"))  # type: ignore[arg-type]
    assert loose is not None and loose["aggregate_type"] is None and loose["max_version"] is None
    page = await store.aggregates.page(CatalogQuery())
    assert [r["aggregate_id"] for r in page.rows] == ["order_1", "loose", "order_2"]
    assert (page.total, page.capped) == (3, False)


async def test_the_catalog_searches_by_type_prefix_and_time_without_wildcards(
    store: EventStore,
) -> None:
    long_prefix = "p" * 70
    names = [
        "a%b",
        "a_b",
        "axb",
        "ab",
        "ümlaut-1",
        "\U0010ffffz",
        long_prefix + "1",
        long_prefix + "2",
    ]
    await store.write([event(n, 1, seconds=i) for i, n in enumerate(names)])
    await store.write([event("axb", 1, kind="Cart", seconds=100)])
    await catalogued(store)

    async def search(**q: Any) -> list[str]:
        return [r["aggregate_id"] for r in (await store.aggregates.page(CatalogQuery(**q))).rows]

    assert await search(prefix="a%") == ["a%b"]
    assert await search(prefix="a_") == ["a_b"]
    assert await search(prefix="a") == ["a%b", "a_b", "ab", "axb", "axb"]
    assert await search(prefix="ü") == ["ümlaut-1"]
    assert await search(prefix="\U0010ffff") == ["\U0010ffffz"]
    assert await search(prefix=long_prefix + "2") == [long_prefix + "2"]
    assert len(await search(prefix=long_prefix)) == 2
    assert await search(aggregate_type="Cart") == ["axb"]
    assert await search(aggregate_type="Cart", prefix="b") == []
    assert await search(since=T0 + dt.timedelta(seconds=50)) == ["axb"]
    assert len(await search(until=T0 + dt.timedelta(seconds=3))) == 4
    first = await store.aggregates.page(CatalogQuery(prefix="a", limit=2))
    rest = await store.aggregates.page(CatalogQuery(prefix="a", limit=10, before=first.next_before))
    assert [r["aggregate_id"] for r in first.rows + rest.rows] == await search(prefix="a")
    with pytest.raises(ValueError, match="cursor"):
        await store.aggregates.page(CatalogQuery(before="12_34", prefix="a"))


async def test_two_catalogs_never_count_a_batch_twice(store: EventStore) -> None:
    await store.write([event(f"o{n}", 1) for n in range(5)])
    start = await store.aggregates.progress()
    pending: list[dict[str, Any]] = []

    async def read_all() -> bool:
        pending[:] = await store.aggregates.pending(start, 500)
        return len(pending) == 5

    await eventually(read_all, 30, "the five events to be readable")
    await catalogued(store)  # another process counts them first
    late = CatalogWrite(catalog_rows(pending))
    assert await store.aggregates.save(late, start, Cursor.of(pending[-1])) is False
    assert (await store.aggregates.page(CatalogQuery())).total == 5
    one = await store.aggregates.one(aggregate_key("Order", "o1"))  # type: ignore[arg-type]
    assert one is not None and one["events"] == 1


async def test_a_kept_fold_extended_with_new_rows_equals_a_full_fold(store: EventStore) -> None:
    folds = AggregateFolds(store, REDUCERS)
    ref = AggregateRef.of("Order", "order_1")

    async def both() -> tuple[Any, Any]:
        kept = await folds.use(ref, lambda f: (f.fold.state, [s.version for s in f.fold.steps]))
        rows = await store.aggregates.rows(ref, limit=1000)
        full = fold(rows, REDUCERS)
        return kept, (full.state, [s.version for s in full.steps])

    assert await folds.use(ref, lambda f: f) is None
    await store.write([event("order_1", 1, total=5)])
    kept, full = await both()
    assert kept == full and kept[0]["status"] == "created"
    await store.write([event("order_1", 2, "OrderPaid", seconds=1)])
    kept, full = await both()
    assert kept == full and kept[0]["status"] == "paid"
    await store.write([event("order_1", 4, "OrderShipped", seconds=2)])
    await store.write([event("order_1", 3, "OrderCancelled", seconds=3)])  # late, lower
    kept, full = await both()
    assert kept == full and kept[1] == [1, 2, 3, 4]

    async def kept_all() -> bool:  # a fold read while any transaction on the server is open
        await folds.use(ref, lambda f: None)  # is complete but not kept: asked again
        return folds.cache.rows == 4

    await eventually(kept_all, 30, "the fold of all four rows to be kept")
    folds.close()


async def test_a_fold_read_past_an_open_transaction_is_complete_but_not_kept(
    pg_url: str,
) -> None:
    """Postgres only: on SQLite one writer commits in sequence order, nothing is held back."""
    store = EventStore(pg_url)
    try:
        await _fold_past_an_open_transaction(store)
    finally:
        await store.close()


async def _fold_past_an_open_transaction(store: EventStore) -> None:
    await store.write([event("order_1", 1)])
    folds = AggregateFolds(store, REDUCERS)
    ref = AggregateRef.of("Order", "order_1")
    async with store.engine.connect() as held:
        transaction = await held.begin()
        await held.execute(text("SELECT pg_current_xact_id()"))  # an older transaction, open
        await store.write([event("order_1", 2, "OrderPaid", seconds=1)])
        steps = await folds.use(ref, lambda f: len(f.fold.steps))
        assert steps == 2  # what is committed is shown
        # Only what no late commit can precede is kept (other sessions on the server may
        # hold the horizon back further: then nothing is kept yet).
        assert folds.cache.rows <= 1
        await transaction.rollback()
    await store.write([event("order_1", 3, "OrderShipped", seconds=2)])

    async def settled() -> bool:
        state = await folds.use(ref, lambda f: f.fold.state)
        return bool(state) and state["status"] == "shipped" and folds.cache.rows == 3

    await eventually(settled, 20, "the kept fold to catch up")
    folds.close()


async def test_bad_reducer_rules_stop_the_runtime_at_start_naming_file_and_rule(
    tmp_path: Path, sqlite_url: str, names: Names
) -> None:
    rules = tmp_path / "reducers.toml"
    rules.write_text('[Order.OrderPaid]\nsett = { status = "paid" }\n')
    with pytest.raises(
        ValueError, match=r"reducers\.toml: \[Order\.OrderPaid\] unknown operation 'sett'"
    ):
        make_settings(sqlite_url, names, reducers=str(rules))
    settings = make_settings(sqlite_url, names, reducer_modules=("no_such_module_here",))
    with pytest.raises(ValueError, match="no_such_module_here"):
        Runtime(settings, record=False)
    demo = reducers_for(make_settings(sqlite_url, names, demo=True))
    assert demo.sources == ("rules order.toml (demo)",)


@pytest.mark.parametrize("command", ["serve", "ingest"])
def test_serve_and_ingest_refuse_bad_reducers_before_starting(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rules = tmp_path / "reducers.toml"
    rules.write_text('[Order.OrderPaid]\nset = { paidAt = "$evnt.timestamp" }\n')
    for name in [n for n in os.environ if n.startswith("EVENTSCOPE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVENTSCOPE_REDUCERS", str(rules))
    with pytest.raises(SystemExit) as stopped:
        main([command])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert str(rules) in message and "[Order.OrderPaid]" in message and "$evnt" in message
    monkeypatch.delenv("EVENTSCOPE_REDUCERS")
    monkeypatch.setenv("EVENTSCOPE_REDUCER_MODULES", "no_such_module_here")
    monkeypatch.setenv("EVENTSCOPE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/e.db")
    if command == "serve":  # modules are imported when the runtime is built
        with pytest.raises(SystemExit, match="no_such_module_here"):
            main([command])


async def test_the_runtime_catalogs_what_the_recorder_records(
    database_url: str, names: Names, broker: Broker
) -> None:
    runtime = Runtime(make_settings(database_url, names), migrate=False)
    async with runtime.running():
        await eventually(lambda: runtime.recorder.status.broker_connected, 20, "the recorder")  # type: ignore[union-attr]
        for version in (1, 2):
            body = {"eventType": "OrderCreated", "aggregateType": "Order", "aggregateId": "o-9"}
            await broker.publish("order.created", json.dumps({**body, "version": version}).encode())

        async def counted() -> bool:
            found = await runtime.store.aggregates.one(aggregate_key("Order", "o-9"))  # type: ignore[arg-type]
            return found is not None and found["events"] == 2 and found["max_version"] == 2

        await eventually(counted, 30, "the catalog to count the aggregate's two events")
        await asyncio.sleep(0)


async def test_a_reset_catalog_counts_everything_again(store: EventStore) -> None:
    """After `eventscope reindex` changed stored events, the catalog counts again from zero."""
    await store.write([event(f"o{n}", 1) for n in range(3)])
    await catalogued(store)
    assert (await store.aggregates.page(CatalogQuery())).total == 3
    await store.aggregates.reset()
    assert (await store.aggregates.page(CatalogQuery())).total == 0
    assert await store.aggregates.progress() == Cursor(0, 0)
    await catalogued(store)
    one = await store.aggregates.one(aggregate_key("Order", "o1"))  # type: ignore[arg-type]
    assert one is not None and one["events"] == 1, "counted once, not twice"
