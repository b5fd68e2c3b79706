"""The recorder against the real broker and both databases: every event stored exactly once."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aio_pika
from sqlalchemy import func, select

from eventscope.backend.ingest.recorder import Recorder
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.models import events
from tests.conftest import AMQP_URL, Broker, Names, eventually, make_settings


def seed_event(n: int, correlation: str = "req_1") -> bytes:
    return json.dumps(
        {
            "id": f"evt_{n}",
            "type": "order.created",
            "timestamp": "2026-11-26T10:00:00Z",
            "data": {"orderId": f"order_{n}", "total": 99.99},
            "metadata": {"source": "order-service", "version": "1.0", "correlationId": correlation},
            "aggregateId": f"order_{n}",
            "aggregateType": "Order",
            "eventType": "OrderCreated",
            "version": 1,
        }
    ).encode()


async def stored_rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(events).order_by(events.c.id))
            return [dict(r._mapping) for r in result]
    finally:
        await engine.dispose()


async def stored_count(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(events)) or 0)
    finally:
        await engine.dispose()


async def test_every_published_event_is_stored_exactly_once(
    database_url, names: Names, broker: Broker, start_recorder
) -> None:
    run = await start_recorder(make_settings(database_url, names))
    n = 500
    await broker.publish_many(
        [
            ("order.created", seed_event(i, f"req_{i % 7}"), {"message_id": f"evt_{i}"})
            for i in range(n)
        ]
    )
    await eventually(lambda: run.recorder.status.stored >= n, 30, f"{n} events stored")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "tap queue drained")
    await run.halt()

    rows = await stored_rows(database_url)
    assert len(rows) == n
    assert sorted(r["event_id"] for r in rows) == sorted(f"evt_{i}" for i in range(n))
    first = next(r for r in rows if r["event_id"] == "evt_3")
    assert first["routing_key"] == "order.created"
    assert first["exchange"] == names.exchange
    assert first["event_type"] == "OrderCreated"
    assert first["correlation_id"] == "req_3"
    assert (first["aggregate_type"], first["aggregate_id"], first["aggregate_version"]) == (
        "Order",
        "order_3",
        1,
    )
    assert bytes(first["body"]) == seed_event(3, "req_3")
    assert await broker.queue_depth(names.tap_queue) == 0


class CrashBeforeAck(Recorder):
    """A recorder that dies between commit and ack: the crash the idempotency rule is for."""

    async def _ack(self, session: Any, tags: list[int]) -> None:
        return None


async def test_redelivery_after_crash_between_commit_and_ack_is_stored_once(
    database_url, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(database_url, names)
    crashed = await start_recorder(
        settings, CrashBeforeAck, connection_name=f"{names.connection}-a"
    )
    n = 200
    await broker.publish_many([("order.created", seed_event(i), {}) for i in range(n)])
    await eventually(lambda: crashed.recorder.status.stored >= n, 30, "first recorder to commit")
    await crashed.halt()  # closes the channel with everything unacked: the broker requeues it

    assert await broker.queue_depth(names.tap_queue) == n
    second = await start_recorder(settings, connection_name=f"{names.connection}-b")
    await eventually(
        lambda: second.recorder.status.skipped_redeliveries >= n,
        30,
        "redeliveries to be recognised",
    )
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "tap queue drained")
    await second.halt()

    assert second.recorder.status.stored == 0
    assert await stored_count(database_url) == n


async def _depth_is(broker: Broker, queue: str, depth: int) -> bool:
    return await broker.queue_depth(queue) == depth


async def test_same_message_published_twice_is_kept_as_a_duplicate(
    database_url, names: Names, broker: Broker, start_recorder
) -> None:
    run = await start_recorder(make_settings(database_url, names))
    body = seed_event(1)
    props = {"message_id": "evt_1", "content_type": "application/json"}
    await broker.publish("order.created", body, **props)
    await broker.publish("order.created", body, **props)
    await eventually(lambda: run.recorder.status.stored >= 2, 20, "both publishes stored")
    await run.halt()

    rows = await stored_rows(database_url)
    assert [r["observation"] for r in rows] == [1, 2]
    assert rows[0]["fingerprint"] == rows[1]["fingerprint"]
    assert run.recorder.status.duplicates == 1


async def test_same_message_id_with_different_bodies_keeps_both(
    sqlite_url, names: Names, broker: Broker, start_recorder
) -> None:
    run = await start_recorder(make_settings(sqlite_url, names))
    await broker.publish("order.created", b'{"a": 1}', message_id="m-1")
    await broker.publish("order.created", b'{"a": 2}', message_id="m-1")
    await eventually(lambda: run.recorder.status.stored >= 2, 20, "both stored")
    await run.halt()
    rows = await stored_rows(sqlite_url)
    assert [r["observation"] for r in rows] == [1, 1]
    assert {bytes(r["body"]) for r in rows} == {b'{"a": 1}', b'{"a": 2}'}


async def test_fanout_and_headers_exchanges_get_catch_all_bindings(
    sqlite_url, names: Names, broker: Broker, start_recorder
) -> None:
    fanout, headers = f"{names.exchange}.fan", f"{names.exchange}.hdr"
    channel = await broker.connection.channel(publisher_confirms=True)
    fan_ex = await channel.declare_exchange(fanout, aio_pika.ExchangeType.FANOUT, durable=False)
    hdr_ex = await channel.declare_exchange(headers, aio_pika.ExchangeType.HEADERS, durable=True)
    try:
        run = await start_recorder(
            make_settings(sqlite_url, names, exchanges=(names.exchange, fanout, headers))
        )
        assert run.recorder.status.exchanges == {
            names.exchange: "topic",
            fanout: "fanout",
            headers: "headers",
        }
        await fan_ex.publish(aio_pika.Message(b"via fanout"), routing_key="whatever")
        await hdr_ex.publish(aio_pika.Message(b"via headers", headers={"k": "v"}), routing_key="")
        await broker.publish("order.created", b"via topic")
        await eventually(lambda: run.recorder.status.stored >= 3, 20, "three events")
        await run.halt()
        rows = await stored_rows(sqlite_url)
        assert {(r["exchange"], bytes(r["body"])) for r in rows} == {
            (fanout, b"via fanout"),
            (headers, b"via headers"),
            (names.exchange, b"via topic"),
        }
    finally:
        await channel.exchange_delete(fanout)
        await channel.exchange_delete(headers)


async def test_tap_queue_is_bounded_and_drops_oldest_without_refusing_publishers(
    sqlite_url, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(sqlite_url, names, tap_queue_max_length=10)
    run = await start_recorder(settings)
    await run.halt()  # topology declared; nobody consumes now
    # Publisher confirms: a reject-publish queue would nack these and publish() would raise.
    await broker.publish_many([("order.created", seed_event(i), {}) for i in range(30)])
    assert await broker.queue_depth(names.tap_queue) == 10

    again = await start_recorder(settings, connection_name=f"{names.connection}-2")
    await eventually(lambda: again.recorder.status.stored >= 10, 20, "the kept ten stored")
    await again.halt()
    rows = await stored_rows(sqlite_url)
    assert [r["event_id"] for r in rows] == [f"evt_{i}" for i in range(20, 30)]


async def test_missing_exchange_is_declared_durable_topic(
    sqlite_url, names: Names, start_recorder
) -> None:
    name = f"{names.exchange}.new-{uuid.uuid4().hex[:4]}"
    run = await start_recorder(make_settings(sqlite_url, names, exchanges=(name,)))
    await run.halt()
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        # Declaring with the same type and durability succeeds only if it matches.
        await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.queue_delete(names.tap_queue)
        await channel.exchange_delete(name)
    finally:
        await connection.close()


async def test_broker_unreachable_is_reported_and_retried(sqlite_url, names: Names) -> None:
    settings = make_settings(sqlite_url, names, amqp_url="amqp://guest:guest@127.0.0.1:1/")
    import asyncio

    store = EventStore(sqlite_url)
    recorder = Recorder(settings, store)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        await eventually(lambda: recorder.status.broker_error is not None, 15, "a broker error")
        assert recorder.status.broker_connected is False
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await store.close()
