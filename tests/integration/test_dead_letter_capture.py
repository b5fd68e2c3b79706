"""Owned dead-letter queues (EVENTSCOPE_DEAD_LETTER_QUEUES) on the real broker and both
databases: eventscope drains the queue and holds each dead letter; the tap's copy (its
dead-letter exchange recorded too) is linked to the held one, never a second failure or a
second replay; two processes never split the queue; a connection cut between commit and ack
stores each once; a missing queue is reported and taken once it exists."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from sqlalchemy import select

from eventscope.backend.ingest.capture import DeadLetterCapture
from eventscope.backend.replay import Replayer, ReplayRefused
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from eventscope.backend.store.models import events
from tests.conftest import Broker, Names, Running, eventually, make_settings
from tests.integration.test_faults import close_connection_named

pytestmark = pytest.mark.asyncio
Start = Callable[..., Awaitable[Running]]


class Topology:
    def __init__(self, channel: aio_pika.abc.AbstractChannel, names: Names) -> None:
        self.channel = channel
        self.dlx = f"{names.exchange}.dlx"
        self.work = f"test.work.{names.suffix}"
        self.dlq = f"test.dlq.{names.suffix}"


@pytest.fixture
async def topology(names: Names, broker: Broker) -> AsyncIterator[Topology]:
    channel = await broker.connection.channel()
    made = Topology(channel, names)
    await channel.declare_exchange(made.dlx, aio_pika.ExchangeType.TOPIC, durable=True)
    work = await channel.declare_queue(made.work, arguments={"x-dead-letter-exchange": made.dlx})
    await work.bind(names.exchange, "order.paid")
    dlq = await channel.declare_queue(made.dlq, durable=True)
    await dlq.bind(made.dlx, "#")
    try:
        yield made
    finally:
        for queue in (made.work, made.dlq):
            await channel.queue_delete(queue)
        await channel.exchange_delete(made.dlx)
        await channel.close()


async def capture(
    store: EventStore, settings: Any, queue: str, cls: type[DeadLetterCapture] = DeadLetterCapture
) -> tuple[DeadLetterCapture, asyncio.Event, asyncio.Task[None]]:
    taking = cls(settings, store, queue)
    stop = asyncio.Event()
    return taking, stop, asyncio.create_task(taking.run(stop))


async def halt(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def reject_one(topology: Topology) -> None:
    queue = await topology.channel.declare_queue(topology.work, passive=True)
    for _ in range(200):
        message = await queue.get(fail=False)
        if message is not None:
            await message.reject(requeue=False)
            return
        await asyncio.sleep(0.05)
    raise AssertionError("nothing to reject")


async def held_rows(store: EventStore, queue: str) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        found = await conn.execute(
            select(events.c.id, events.c.observation, events.c.body).where(
                events.c.captured_from == queue
            )
        )
        return [dict(r._mapping) for r in found]


async def dead_letter_to(broker: Broker, queue: str, n: int) -> None:
    """A dead letter as the broker would have dead-lettered it, put straight into `queue`."""
    death = {
        "queue": "orders",
        "reason": "rejected",
        "count": 1,
        "exchange": "events",
        "routing-keys": ["order.paid"],
        "time": dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
    }
    message = aio_pika.Message(
        json.dumps({"id": f"evt_{n}", "n": n}).encode(),
        message_id=f"evt_{n}",
        headers={"x-death": [death]},
    )
    await broker.channel.default_exchange.publish(message, routing_key=queue)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    await upgrade_async(database_url)
    made = EventStore(database_url)
    try:
        yield made
    finally:
        await made.close()


async def test_held_dead_letters_drain_the_queue_and_the_tap_copy_is_linked(
    store: EventStore,
    database_url: str,
    names: Names,
    broker: Broker,
    topology: Topology,
    start_recorder: Start,
) -> None:
    settings = make_settings(
        database_url,
        names,
        exchanges=(names.exchange, topology.dlx),
        dead_letter_queues=(topology.dlq,),
        replay_targets=(f"queue:{topology.work}",),
    )
    await start_recorder(settings)
    _, stop, task = await capture(store, settings, topology.dlq)
    try:
        await broker.publish("order.paid", b'{"id":"evt_1"}', message_id="m-1")
        await reject_one(topology)

        async def held() -> bool:
            return len(await held_rows(store, topology.dlq)) == 1

        await eventually(held, 20, "the dead letter to be held")
        await eventually(_is_zero(broker, topology.dlq), 20, "the owned queue to be drained")
        (owned,) = await held_rows(store, topology.dlq)

        await eventually(_has_tap_copy(store), 20, "the tap to record its copy")
        page = await store.dead_letters.newest(_filter())
        held = await store.dead_letters.held_copies(page.rows)
        (tap,) = [r for r in page.rows if r["captured_from"] is None]
        assert held == {tap["id"]: owned["id"]}

        replayer = Replayer(store, settings)
        try:
            with pytest.raises(ReplayRefused, match=f"event {owned['id']}"):
                await replayer.replay(tap["id"], actor="ann", role="operator", reason=None)
            entry = await replayer.replay(owned["id"], actor="ann", role="operator", reason=None)
        finally:
            await replayer.close()
        assert entry["state"] == "delivered" and entry["target_name"] == topology.work
        await eventually(_is_n(broker, topology.work, 1), 10, "the replay to arrive")
    finally:
        await halt(stop, task)


async def test_two_processes_never_split_an_owned_queue(
    store: EventStore, database_url: str, names: Names, broker: Broker, topology: Topology
) -> None:
    settings = make_settings(database_url, names, dead_letter_queues=(topology.dlq,))
    first, stop1, task1 = await capture(store, settings, topology.dlq)
    await eventually(lambda: first.status.broker_connected, 20, "the first to consume")
    second, stop2, task2 = await capture(store, settings, topology.dlq)
    try:
        for n in range(20):
            await dead_letter_to(broker, topology.dlq, n)

        async def twenty() -> bool:
            return len(await held_rows(store, topology.dlq)) == 20

        await eventually(twenty, 20, "20 dead letters held")
        assert first.status.stored == 20 and second.status.stored == 0
        assert not second.status.broker_connected  # refused: the queue is in exclusive use
        await halt(stop1, task1)  # the first process goes: the second takes over
        for n in range(20, 25):
            await dead_letter_to(broker, topology.dlq, n)

        async def twenty_five() -> bool:
            return len(await held_rows(store, topology.dlq)) == 25

        await eventually(twenty_five, 60, "the second to take over")
        rows = await held_rows(store, topology.dlq)
        assert sorted(json.loads(r["body"])["n"] for r in rows) == list(range(25))
        assert {r["observation"] for r in rows} == {1}
    finally:
        if not task1.done():
            await halt(stop1, task1)
        await halt(stop2, task2)


class LosesTheFirstAck(DeadLetterCapture):
    """Its connection is cut by the broker between its first commit and that batch's ack."""

    cutting = False

    async def _ack(self, *args: Any, **kwargs: Any) -> None:
        if not self.cutting:
            self.cutting = True
            await asyncio.to_thread(close_connection_named, self.connection_name)
        await super()._ack(*args, **kwargs)


async def test_a_cut_between_commit_and_ack_stores_each_dead_letter_once(
    store: EventStore, database_url: str, names: Names, broker: Broker, topology: Topology
) -> None:
    settings = make_settings(database_url, names, dead_letter_queues=(topology.dlq,))
    taking, stop, task = await capture(store, settings, topology.dlq, LosesTheFirstAck)
    await eventually(lambda: taking.status.broker_connected, 20, "the capture to consume")
    await asyncio.sleep(1)  # rabbitmqctl lists a connection once the broker's stats have it
    for n in range(10):
        await dead_letter_to(broker, topology.dlq, n)
    try:

        async def ten() -> bool:
            return len(await held_rows(store, topology.dlq)) >= 10

        await eventually(ten, 60, "the 10 dead letters to be held")
        await eventually(lambda: taking.cutting, 20, "the cut between commit and ack")
        await eventually(lambda: taking.status.broker_connected, 60, "the capture to reconnect")
        await asyncio.sleep(1)  # the redeliveries of the cut batch come back and are absorbed
        await eventually(_is_zero(broker, topology.dlq), 60, "the owned queue to be drained")
        rows = await held_rows(store, topology.dlq)
        assert sorted(json.loads(r["body"])["n"] for r in rows) == list(range(10))
        assert {r["observation"] for r in rows} == {1}  # redeliveries absorbed, not duplicates
        assert taking.cutting
    finally:
        await halt(stop, task)


async def test_a_missing_owned_queue_is_reported_then_taken_when_it_exists(
    store: EventStore, database_url: str, names: Names, broker: Broker
) -> None:
    queue = f"test.dlq.later.{names.suffix}"
    settings = make_settings(database_url, names, dead_letter_queues=(queue,))
    taking, stop, task = await capture(store, settings, queue)
    try:
        await eventually(
            lambda: "does not exist" in (taking.status.last_error or ""), 20, "the report"
        )
        channel = await broker.connection.channel()
        await channel.declare_queue(queue)
        await dead_letter_to(broker, queue, 1)

        async def taken() -> bool:
            return len(await held_rows(store, queue)) == 1

        await eventually(taken, 60, "the queue to be taken once it exists")
        await channel.queue_delete(queue)
        await channel.close()
    finally:
        await halt(stop, task)


def _filter() -> Any:
    from eventscope.backend.filters import EventFilter

    return EventFilter()


def _is_zero(broker: Broker, queue: str) -> Callable[[], Awaitable[bool]]:
    return _is_n(broker, queue, 0)


def _is_n(broker: Broker, queue: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await broker.queue_depth(queue) == n

    return check


def _has_tap_copy(store: EventStore) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        page = await store.dead_letters.newest(_filter())
        return any(r["captured_from"] is None for r in page.rows)

    return check
