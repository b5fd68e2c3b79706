"""Replaying dead letters against the real broker and both databases: a consumer rejects into a
dead-letter exchange, the recorder stores the dead letter, a replay sends it back to the queue
it died in exactly once, byte for byte plus the replay headers; the ledger, the audit log and
the dead letter's state say so. The seed's `dlq.<key>` wrapper goes back to `<key>`. What may
not be sent is refused before anything is published; what the broker returns is a failure."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest

from eventscope.backend.amqp_wire import with_headers
from eventscope.backend.replay import (
    ORIGINAL_ID_HEADER,
    REPLAY_COUNT_HEADER,
    STALE_AFTER,
    Replayer,
    ReplayRefused,
)
from eventscope.backend.replay_publisher import REPLAY_ID_HEADER
from eventscope.backend.replay_targets import Target
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from tests.conftest import Broker, Names, Running, eventually, make_settings

pytestmark = pytest.mark.asyncio


@dataclasses.dataclass
class Bus:
    """A working queue that dead-letters into `dlx`, whose dead letters the recorder stores."""

    channel: aio_pika.abc.AbstractChannel
    work: aio_pika.abc.AbstractQueue
    dlx: str
    parked: str


@pytest.fixture
async def bus(names: Names, broker: Broker) -> AsyncIterator[Bus]:
    channel = await broker.connection.channel()
    dlx = f"{names.exchange}.dlx"
    await channel.declare_exchange(dlx, aio_pika.ExchangeType.TOPIC, durable=True)
    work = await channel.declare_queue(
        f"test.work.{names.suffix}", arguments={"x-dead-letter-exchange": dlx}
    )
    await work.bind(names.exchange, "order.paid")
    parked = await channel.declare_queue(f"test.parked.{names.suffix}")
    await parked.bind(dlx, "#")
    try:
        yield Bus(channel, work, dlx, parked.name)
    finally:
        for queue in (work.name, parked.name):
            await channel.queue_delete(queue)
        await channel.exchange_delete(dlx)
        await channel.close()


async def reject_one(bus: Bus) -> aio_pika.abc.AbstractIncomingMessage:
    message = await get(bus.work)
    await message.reject(requeue=False)
    return message


async def get(queue: aio_pika.abc.AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage:
    for _ in range(200):
        message = await queue.get(fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing arrived in {queue.name}")


async def stored_dead_letter(store: EventStore, exchange: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        page = await store.events.page(50)
        found[:] = [r for r in page.rows if r["exchange"] == exchange and r["dead_letter"]]
        return bool(found)

    await eventually(arrived, 20, f"the dead letter on {exchange} to be recorded")
    row = await store.events.get(found[0]["id"])
    assert row is not None
    return row


async def get_raw(bus: Bus) -> Any:
    """One message of the working queue as the wire had it (aiormq keeps the property bytes)."""
    channel = await bus.channel.get_underlay_channel()
    for _ in range(200):
        message = await channel.basic_get(bus.work.name, no_ack=True)
        if message.delivery_tag is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing arrived in {bus.work.name}")


def left_publishing(
    replay_id: str, event_id: int, original_id: str, target: Target, at: dt.datetime
) -> dict[str, Any]:
    """A ledger row as a process that stopped mid-replay leaves it (state publishing)."""
    return {
        "replay_id": replay_id,
        "event_id": event_id,
        "original_id": original_id,
        "dead_letter": True,
        "target_kind": target.kind,
        "target_name": target.name,
        "routing_key": target.routing_key,
        "edited": False,
        "replay_count": 1,
        "actor": "ann",
        "role": "operator",
        "reason": None,
        "requested_at": at,
    }


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def recorded(
    database_url: str, names: Names, bus: Bus, start_recorder: Start
) -> AsyncIterator[tuple[EventStore, Any]]:
    settings = make_settings(
        database_url,
        names,
        exchanges=(names.exchange, bus.dlx),
        replay_targets=(
            f"exchange:{names.exchange}",
            f"exchange:{names.exchange}.side",  # declared, nothing bound
            f"exchange:{names.exchange}.missing",  # never declared
            f"queue:{bus.work.name}",
        ),
    )
    await upgrade_async(database_url)
    await start_recorder(settings)
    store = EventStore(database_url)
    try:
        yield store, settings
    finally:
        await store.close()


async def test_a_rejected_message_is_replayed_to_its_queue_once_byte_for_byte(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus
) -> None:
    store, settings = recorded
    body = json.dumps({"id": "evt_1", "type": "order.paid", "aggregateId": "o1"}).encode()
    await broker.publish("order.paid", body, message_id="m-1", headers={"tenant": "acme"})
    await reject_one(bus)
    dead = await stored_dead_letter(store, bus.dlx)
    replayer = Replayer(store, settings)
    try:
        plan = await replayer.plan(dead["id"])
        assert plan is not None and plan.ready, plan
        assert plan.target == Target.queue(bus.work.name)
        entry = await replayer.replay(dead["id"], actor="ann", role="operator", reason="fixed")
    finally:
        await replayer.close()

    assert entry["state"] == "delivered", entry
    assert entry["target_kind"] == "queue" and entry["target_name"] == bus.work.name
    message = await get_raw(bus)
    assert message.body == body
    headers = message.header.properties.headers or {}
    assert headers[REPLAY_ID_HEADER] == entry["replay_id"]
    assert headers[ORIGINAL_ID_HEADER] == "evt_1"
    assert headers[REPLAY_COUNT_HEADER] == 1
    assert headers["tenant"] == "acme" and "x-death" in headers
    assert message.header.properties.message_id == "m-1"
    assert message.routing_key == bus.work.name
    extra = {
        REPLAY_ID_HEADER: entry["replay_id"],
        ORIGINAL_ID_HEADER: "evt_1",
        REPLAY_COUNT_HEADER: 1,
    }
    assert message.header.raw_properties == with_headers(
        dead["raw_properties"], extra, replace=True
    )
    await asyncio.sleep(0.3)
    assert await bus.work.get(fail=False) is None, "delivered more than once"

    (ledger,) = await store.replays.entries(10)
    assert ledger["state"] == "delivered" and ledger["actor"] == "ann"
    assert (await store.replays.states([dead["id"]]))[dead["id"]]["state"] == "replayed"
    audit = await store.audit.entries(10)
    assert [(a["action"], a["result"]) for a in audit[:2]] == [
        ("replay", "delivered"),
        ("replay", "requested"),
    ]
    assert audit[0]["reason"] == "fixed"


async def test_a_replay_that_fails_again_is_linked_to_its_attempt(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus
) -> None:
    store, settings = recorded
    await broker.publish("order.paid", b'{"id":"evt_2"}', message_id="m-2")
    await reject_one(bus)
    dead = await stored_dead_letter(store, bus.dlx)
    replayer = Replayer(store, settings)
    try:
        entry = await replayer.replay(dead["id"], actor="ann", role="operator", reason=None)
        assert entry["state"] == "delivered"
        await reject_one(bus)  # the consumer fails it again

        async def linked() -> bool:
            await replayer.outcomes_once()
            again = await store.replays.entry(entry["replay_id"])
            return again is not None and again["failed_again_id"] is not None

        await eventually(linked, 20, "the second dead letter to be linked to the replay")
        again = await store.replays.entry(entry["replay_id"])
        assert again is not None
        second = await store.events.get(again["failed_again_id"])
        assert second is not None and second["id"] != dead["id"]
        plan = await replayer.plan(second["id"])
        assert plan is not None and plan.replay_count == 2  # carried by the header
        assert plan.original_id == "evt_2"
    finally:
        await replayer.close()


async def test_the_seed_convention_replays_the_original_event_to_its_routing_key(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus
) -> None:
    store, settings = recorded
    original = {"id": "evt_3", "type": "order.paid", "metadata": {"correlationId": "req_3"}}
    wrapper = {"data": {"originalEvent": original, "error": "timeout", "retries": 3}}
    await broker.publish(
        "dlq.order.paid", json.dumps(wrapper).encode(), content_type="application/json"
    )

    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        page = await store.events.page(20)
        found[:] = [r for r in page.rows if r["routing_key"] == "dlq.order.paid"]
        return bool(found)

    await eventually(arrived, 20, "the dlq wrapper to be recorded")
    replayer = Replayer(store, settings)
    try:
        entry = await replayer.replay(found[0]["id"], actor="ann", role="operator", reason="x")
    finally:
        await replayer.close()
    assert entry["state"] == "delivered"
    assert (entry["target_kind"], entry["target_name"], entry["routing_key"]) == (
        "exchange",
        settings.exchanges[0],
        "order.paid",
    )
    message = await get(bus.work)  # bound to order.paid on the working exchange
    await message.ack()
    assert json.loads(message.body) == original
    assert message.content_type == "application/json"


async def test_what_may_not_be_sent_is_refused_before_anything_is_published(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus, names: Names
) -> None:
    store, settings = recorded
    forged = {
        "x-death": [
            {
                "queue": "payments",
                "reason": "rejected",
                "count": 1,
                "exchange": "payments.internal",
                "routing-keys": ["payment.captured"],
                "time": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            }
        ],
        "x-first-death-exchange": "payments.internal",
        "x-first-death-queue": "payments",
        "x-first-death-reason": "rejected",
    }
    await broker.publish("order.paid.forged", b"{}", headers=forged)
    forged_row = await stored_dead_letter(store, names.exchange)
    replayer = Replayer(store, settings)
    try:
        plan = await replayer.plan(forged_row["id"])
        assert plan is not None and not plan.ready
        assert plan.target == Target.queue("payments") and plan.add_entry == "queue:payments"
        with pytest.raises(ReplayRefused, match="queue:payments"):
            await replayer.replay(forged_row["id"], actor="ann", role="operator", reason=None)
        original = Target.exchange("payments.internal", "payment.captured")
        with pytest.raises(ReplayRefused, match=r"exchange:payments\.internal"):
            await replayer.replay(
                forged_row["id"], actor="ann", role="operator", reason=None, target=original
            )
        assert await store.replays.entries(10) == []  # nothing published, no ledger row
        audit = await store.audit.entries(10)
        assert {a["result"] for a in audit} == {"refused"}
    finally:
        await replayer.close()


async def test_an_unroutable_target_is_a_failure_not_a_silent_success(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus, names: Names
) -> None:
    store, settings = recorded
    await broker.publish("order.paid", b'{"id":"evt_4"}')  # no message id: matched by replay id
    await reject_one(bus)
    dead = await stored_dead_letter(store, bus.dlx)
    replayer = Replayer(store, settings)
    try:
        # A recorded exchange routes every key to eventscope's tap: an unrecorded one here.
        side = await bus.channel.declare_exchange(f"{names.exchange}.side", "topic")
        try:
            nowhere = Target.exchange(side.name, "nothing.bound.here")
            entry = await replayer.replay(
                dead["id"], actor="ann", role="operator", reason=None, target=nowhere
            )
        finally:
            await side.delete()
        assert entry["state"] == "failed" and "NO_ROUTE" in entry["result"], entry
        assert await store.replays.states([dead["id"]]) == {}  # unresolved again
        missing = Target.exchange(f"{names.exchange}.missing", "order.paid")
        entry = await replayer.replay(
            dead["id"], actor="ann", role="operator", reason=None, target=missing
        )
        assert entry["state"] == "failed" and "NOT_FOUND" in entry["result"], entry
        again = await replayer.replay(dead["id"], actor="ann", role="operator", reason=None)
        assert again["state"] == "delivered"  # the failure did not leave it in flight
        assert (await get(bus.work)).body == b'{"id":"evt_4"}'
    finally:
        await replayer.close()


async def test_a_replay_left_publishing_by_a_stopped_process_is_reconciled(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus
) -> None:
    store, settings = recorded
    await broker.publish("order.paid", b'{"id":"evt_5"}')
    await reject_one(bus)
    dead = await stored_dead_letter(store, bus.dlx)
    started = dt.datetime.now(dt.UTC) - STALE_AFTER - dt.timedelta(seconds=1)
    entry = left_publishing(
        "left-publishing", dead["id"], "evt_5", Target.queue(bus.work.name), started
    )
    await store.replays.begin(entry, dead_letter=True)
    replayer = Replayer(store, settings)
    try:
        with pytest.raises(ReplayRefused, match="in flight"):
            await replayer.replay(dead["id"], actor="bob", role="operator", reason=None)
        assert await replayer.reconcile_once() == 1
        ended = await store.replays.entry("left-publishing")
        assert ended is not None and ended["state"] == "unknown"
        assert "left-publishing" in ended["result"]
        assert await store.replays.states([dead["id"]]) == {}
        again = await replayer.replay(dead["id"], actor="bob", role="operator", reason=None)
        assert again["state"] == "delivered" and again["replay_count"] == 2
    finally:
        await replayer.close()


async def test_a_reconciled_replay_the_tap_recorded_counts_as_delivered(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus
) -> None:
    """The process stopped after the publish: the tap's copy of the replay proves delivery."""
    store, settings = recorded
    await broker.publish("order.paid", b'{"id":"evt_6"}')
    await reject_one(bus)
    dead = await stored_dead_letter(store, bus.dlx)
    headers = {REPLAY_ID_HEADER: "sent-before-the-crash"}
    await broker.publish("order.paid", b'{"id":"evt_6"}', headers=headers)
    await (await get(bus.work)).ack()

    async def tapped() -> bool:
        page = await store.events.page(20)
        rows = await store.events.contents([r["id"] for r in page.rows])
        return any("sent-before-the-crash" in (r["headers"] or "") for r in rows.values())

    await eventually(tapped, 20, "the tap to record the replayed message")
    entry = left_publishing(
        "sent-before-the-crash",
        dead["id"],
        "evt_6",
        Target.exchange(recorded[1].exchanges[0], "order.paid"),
        dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2),
    )
    await store.replays.begin(entry, dead_letter=True)
    replayer = Replayer(store, settings)
    try:
        later = dt.datetime.now(dt.UTC) + STALE_AFTER
        assert await replayer.reconcile_once(now=later) == 1
    finally:
        await replayer.close()
    ended = await store.replays.entry("sent-before-the-crash")
    assert ended is not None and ended["state"] == "delivered", ended
    assert (await store.replays.states([dead["id"]]))[dead["id"]]["state"] == "replayed"


async def test_discard_and_restore(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus
) -> None:
    store, settings = recorded
    await broker.publish("order.paid", b'{"id":"evt_7"}')
    await reject_one(bus)
    dead = await stored_dead_letter(store, bus.dlx)
    replayer = Replayer(store, settings)
    try:
        await replayer.discard(dead["id"], actor="ann", role="operator", reason="obsolete")
        assert (await store.replays.states([dead["id"]]))[dead["id"]]["state"] == "discarded"
        with pytest.raises(ReplayRefused):
            await replayer.discard(dead["id"], actor="ann", role="operator", reason=None)
        await replayer.restore(dead["id"], actor="ann", role="operator", reason=None)
        assert await store.replays.states([dead["id"]]) == {}
    finally:
        await replayer.close()


async def test_a_failed_replay_again_leaves_a_replayed_dead_letter_replayed(
    recorded: tuple[EventStore, Any], broker: Broker, bus: Bus, names: Names
) -> None:
    store, settings = recorded
    await broker.publish("order.paid", b'{"id":"evt_8"}')
    await reject_one(bus)
    dead = await stored_dead_letter(store, bus.dlx)
    replayer = Replayer(store, settings)
    try:
        first = await replayer.replay(dead["id"], actor="ann", role="operator", reason=None)
        assert first["state"] == "delivered"
        await (await get(bus.work)).ack()
        missing = Target.exchange(f"{names.exchange}.missing", "order.paid")
        again = await replayer.replay(
            dead["id"], actor="ann", role="operator", reason=None, target=missing
        )
        assert again["state"] == "failed"
    finally:
        await replayer.close()
    state = (await store.replays.states([dead["id"]]))[dead["id"]]
    assert state["state"] == "replayed"  # not unresolved: a bulk replay would send it again
