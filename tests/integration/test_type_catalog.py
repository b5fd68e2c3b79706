"""The event type catalog on both databases: counts, first/last seen, sample, shape and shape
changes, kept behind ingest from the stored events (backend/type_catalog.py), dead letters
left out, hostile and very long type names stored safely."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventscope.backend.envelope import Delivery, id_key, to_row
from eventscope.backend.runtime import Runtime
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor
from eventscope.backend.type_catalog import TypeCatalog, routing_key_group
from tests.conftest import Broker, Names, eventually, make_settings

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
CLOCK = (T0 + dt.timedelta(minutes=30)).timestamp()


def order(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"evt_{n}",
        "eventType": "OrderCreated",
        "aggregateId": f"order_{n}",
        "data": {"orderId": f"order_{n}", "total": 10 + n},
        "metadata": {"correlationId": f"req_{n}"},
        **extra,
    }


def row(
    body: dict[str, Any] | bytes,
    routing_key: str = "order.created",
    *,
    minutes: float = 0,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    max_body: int = 1 << 20,
) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    when = T0 + dt.timedelta(minutes=minutes)
    delivery = Delivery("events", routing_key, False, properties or {}, headers, raw, when)
    return to_row(delivery, max_body)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(database_url)
    yield opened
    await opened.close()


async def catalog(store: EventStore, clock: float = CLOCK) -> TypeCatalog:
    """Count every stored event into the catalog (on Postgres the catalog reads below the
    oldest running transaction, which other sessions on the server can hold back a moment)."""
    counter = TypeCatalog(store, clock=lambda: clock)
    newest = (await store.events.page(1)).rows

    async def done() -> bool:
        while await counter.catalog_some():
            pass
        return not newest or await store.types.progress() == Cursor.of(newest[0])

    await eventually(done, 30, "the catalog to count every stored event")
    return counter


async def ids(store: EventStore) -> list[int]:
    return [r["id"] for r in reversed((await store.events.page(1000)).rows)]


async def the_type(store: EventStore, name: str) -> dict[str, Any]:
    found = await store.types.known([id_key(name)])  # type: ignore[list-item]
    assert found, f"{name} is not in the catalog"
    return found[id_key(name)]  # type: ignore[index]


def paths(stored: dict[str, Any]) -> dict[str, list[str]]:
    return {p["path"]: p["types"] for p in json.loads(stored["shape"])["paths"]}


async def test_a_type_is_counted_with_first_and_last_seen_sample_and_shape(
    store: EventStore,
) -> None:
    await store.write([row(order(1), minutes=0), row(order(2), minutes=5)])
    await store.write(
        [row(order(3), minutes=9), row({"eventType": "PaymentFailed"}, "pay.failed", minutes=12)]
    )
    await catalog(store)
    first, _, third, _ = await ids(store)
    created = await the_type(store, "OrderCreated")
    assert created["kind"] == "type"
    assert created["name"] == "OrderCreated"
    assert created["events"] == 3
    assert created["first_event_id"] == first
    assert created["last_event_id"] == third
    assert created["sample_event_id"] == third
    assert json.loads(created["sample"]) == {"kind": "json", "value": order(3)}
    assert json.loads(created["routing_keys"]) == [["order.created", 3]]
    assert paths(created)["data.total"] == ["integer"]
    assert paths(created)["metadata.correlationId"] == ["string"]
    assert created["changes"] == 0
    page = await store.types.page(100, since_minute=0)
    assert [r["name"] for r in page.rows] == ["PaymentFailed", "OrderCreated"]
    assert page.total == 2
    first_seen = page.rows[1]["first_seen"]
    last_seen = page.rows[1]["last_seen"]
    assert first_seen.replace(tzinfo=dt.UTC) == T0
    assert last_seen.replace(tzinfo=dt.UTC) == T0 + dt.timedelta(minutes=9)


async def test_a_shape_change_is_flagged_once_with_the_first_event_that_showed_it(
    store: EventStore,
) -> None:
    await store.write([row(order(1)), row(order(2))])
    await catalog(store)
    await store.write([row(order(3, coupon="X")), row(order(4, coupon="Y"))])
    await store.write([row({**order(5), "data": {"orderId": "o", "total": "12.50"}})])
    await catalog(store)
    *_, added_in, _, retyped_in = await ids(store)
    created = await the_type(store, "OrderCreated")
    assert created["changes"] == 2
    recent = json.loads(created["recent_changes"])
    assert [c["event_id"] for c in recent] == [retyped_in, added_in]
    assert recent[1]["changes"] == [
        {"path": "coupon", "change": "added", "before": [], "after": ["string"]}
    ]
    assert recent[0]["changes"] == [
        {"path": "data.total", "change": "type_changed", "before": ["integer"], "after": ["string"]}
    ]
    history = await store.types.changes(created["type_key"], 10)
    assert [h["event_id"] for h in history] == [retyped_in, added_in]
    assert paths(created)["coupon"] == ["string"]
    assert sorted(paths(created)["data.total"]) == ["integer", "string"]


async def test_dead_letters_are_left_out_and_never_a_shape_change(store: EventStore) -> None:
    await store.write([row(order(1)), row(order(2))])
    wrapper = {"originalEvent": order(3), "error": "card declined", "retries": 3}
    x_death = [{"queue": "orders", "reason": "rejected", "count": 1}]
    await store.write(
        [
            row(wrapper, "dlq.order.created"),
            row({**order(4), "surprise": [1]}, headers={"x-death": x_death}),
        ]
    )
    await catalog(store)
    created = await the_type(store, "OrderCreated")
    assert created["events"] == 2
    assert created["changes"] == 0
    page = await store.types.page(100, since_minute=0)
    assert [r["name"] for r in page.rows] == ["OrderCreated"]


async def test_events_without_a_type_are_grouped_by_routing_key(store: EventStore) -> None:
    await store.write(
        [row(b"plain text", "logs.app"), row(b"more text", "logs.app"), row(b"\x00\xff", "bin")]
    )
    await catalog(store)
    found = await store.types.known([routing_key_group("logs.app"), routing_key_group("bin")])
    logs = found[routing_key_group("logs.app")]
    assert (logs["kind"], logs["name"], logs["events"]) == ("routing_key", "logs.app", 2)
    assert json.loads(logs["sample"]) == {"kind": "text", "value": "more text"}
    assert paths(logs) == {"$": ["text"]}
    binary = found[routing_key_group("bin")]
    assert binary["sample"] is None
    assert paths(binary) == {"$": ["binary"]}


async def test_hostile_type_names_are_stored_as_the_timeline_shows_them(store: EventStore) -> None:
    names = ["<script>alert(1)</script>", "a\u202eb", "{{7*7}}", "zero\u200bwidth", "😀 type"]
    await store.write([row({"eventType": name, "v": 1}) for name in names])
    await store.write([row({"eventType": "nul\x00type"})])
    await catalog(store)
    for name in names:
        assert (await the_type(store, name))["name"] == name
    nul = await the_type(store, "nul\x00type")
    assert nul["name"] == "nul\u2400type"  # as the events' type column holds it


async def test_very_long_incompressible_type_names_are_told_apart(store: EventStore) -> None:
    """Two 20,000-character types of 4-byte characters sharing their first 5,000: one row
    each (keys, not names, are indexed; Postgres' btree limit never applies)."""
    common = "".join(chr(0x1F300 + (i * 7919) % 2000) for i in range(5_000))
    first = common + "".join(chr(0x1F300 + (i * 104729) % 2000) for i in range(15_000))
    second = common + "".join(chr(0x20000 + (i * 7919) % 40000) for i in range(15_000))
    await store.write([row({"eventType": first}), row({"eventType": second, "x": 1})])
    await catalog(store)
    one, two = await the_type(store, first), await the_type(store, second)
    assert one["type_key"] != two["type_key"]
    assert one["events"] == two["events"] == 1
    assert one["name"] == first[:1024]


async def test_a_body_too_large_or_stored_cut_is_counted_without_a_shape(
    store: EventStore,
) -> None:
    await store.write([row(order(1))])
    huge = {**order(2), "blob": "x" * 400_000}
    await store.write([row(huge), row({**order(3), "blob": "y" * 5000}, max_body=1000)])
    await catalog(store)
    created = await the_type(store, "OrderCreated")
    assert created["events"] == 3
    assert created["changes"] == 0
    assert "blob" not in paths(created)


async def test_the_rate_of_the_last_hour_is_kept_per_minute(store: EventStore) -> None:
    await store.write([row(order(n), minutes=m) for n, m in enumerate([1, 1, 1, 2, 20])])
    await store.write([row(order(9), minutes=-200)])  # older than the chart: not kept
    await catalog(store)
    created = await the_type(store, "OrderCreated")
    minute = int(T0.timestamp() // 60)
    page = await store.types.page(10, since_minute=minute - 500)
    assert page.rates[created["type_key"]] == {minute + 1: 3, minute + 2: 1, minute + 20: 1}


async def test_two_catalogs_never_count_a_batch_twice(store: EventStore) -> None:
    await store.write([row(order(n)) for n in range(5)])
    late = TypeCatalog(store, clock=lambda: CLOCK)
    start = await store.types.progress()
    pending: list[dict[str, Any]] = []

    async def read_all() -> bool:
        pending[:] = await store.types.pending(start, 500)
        return len(pending) == 5

    await eventually(read_all, 30, "the five events to be readable")
    await catalog(store)  # another process counts them first
    write = await late._count(pending)
    end = Cursor.of(pending[-1])
    assert await store.types.save(write, start, end) is False
    assert (await the_type(store, "OrderCreated"))["events"] == 5
    assert await late.catalog_some() == 0


async def test_the_runtime_catalogs_what_the_recorder_records(
    database_url: str, names: Names, broker: Broker
) -> None:
    runtime = Runtime(make_settings(database_url, names), migrate=False)
    async with runtime.running():
        await eventually(lambda: runtime.recorder.status.broker_connected, 20, "the recorder")  # type: ignore[union-attr]
        for n in range(3):
            await broker.publish("order.created", json.dumps(order(n)).encode())
        await broker.publish("order.created", json.dumps(order(9, extra=True)).encode())

        async def counted() -> bool:
            found = await runtime.store.types.known([id_key("OrderCreated")])  # type: ignore[list-item]
            return bool(found) and next(iter(found.values()))["events"] == 4

        await eventually(counted, 30, "the catalog to count four events")
        created = next(iter((await runtime.store.types.known([id_key("OrderCreated")])).values()))  # type: ignore[list-item]
        assert created["changes"] == 1
        await asyncio.sleep(0)
        assert runtime.catalog.behind == 0.0


async def test_a_reset_catalog_counts_everything_again(store: EventStore) -> None:
    """After `eventscope reindex` changed event types the catalog is reset and recounted."""
    await store.write([row(order(n)) for n in range(3)])
    await catalog(store)
    assert (await the_type(store, "OrderCreated"))["events"] == 3
    await store.types.reset()
    assert await store.types.known([id_key("OrderCreated")]) == {}  # type: ignore[list-item]
    assert await store.types.progress() == Cursor(0, 0)
    await catalog(store)
    assert (await the_type(store, "OrderCreated"))["events"] == 3, "counted once, not twice"
