"""The demo's order flow follows the seed's conventions, without a broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import logging
import random
from collections import defaultdict
from collections.abc import Iterator

import aio_pika
import pytest

from eventscope.backend.demo import DemoEvent, interleave, order_flow, publisher, run_demo
from eventscope.backend.demo.publisher import to_message
from eventscope.backend.demo.scenario import DECLINE_RATE, FAIL_HEADER, NATIVE_FAILURE_KEY
from eventscope.backend.demo.topology import DemoTopology
from eventscope.backend.envelope import extract

NOW = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)
SOURCES = {"order-service", "payment-service", "inventory-service", "shipping-service"}


def flows(
    failure_rate: float, n: int = 300, decline_rate: float = DECLINE_RATE
) -> list[list[DemoEvent]]:
    rng = random.Random(42)
    return [order_flow(rng, NOW, failure_rate, decline_rate=decline_rate) for _ in range(n)]


def events_of(flow: list[DemoEvent]) -> list[DemoEvent]:
    """The order's own events, without the seed dead letters that follow failed ones."""
    return [e for e in flow if not e.is_dead_letter]


def test_bodies_look_like_the_seeds_good_event() -> None:
    for flow in flows(0.3):
        for event in events_of(flow):
            body = event.body
            assert body["id"].startswith("evt_") and len(body["id"]) == 36
            assert body["type"] == event.routing_key
            assert body["timestamp"].endswith("Z")
            assert dt.datetime.fromisoformat(body["timestamp"]).tzinfo is not None
            assert body["metadata"]["source"] in SOURCES
            assert body["metadata"]["source"] == event.app_id
            assert body["metadata"]["correlationId"].startswith("req_")
            assert body["data"]["orderId"].startswith("order_")
            assert event.message_id == body["id"]


def test_bodies_are_json_serialisable() -> None:
    for flow in flows(0.5):
        for event in flow:
            assert json.loads(json.dumps(event.body)) == event.body
            json.dumps(event.headers)


def test_order_events_are_event_sourced_with_versions_1_2_3() -> None:
    for flow in flows(0.2):
        order_events = [e for e in events_of(flow) if "aggregateId" in e.body]
        assert [e.body["version"] for e in order_events] == list(range(1, len(order_events) + 1))
        assert {e.body["aggregateId"] for e in order_events} == {flow[0].body["data"]["orderId"]}
        assert all(e.body["aggregateType"] == "Order" for e in order_events)
        assert order_events[0].body["eventType"] == "OrderCreated"
        inventory = [e for e in flow if e.routing_key == "inventory.reserved"]
        assert all("aggregateId" not in e.body for e in inventory)


def test_one_flow_shares_a_correlation_id_and_chains_causation() -> None:
    for flow in flows(0.3):
        own = events_of(flow)
        assert len({e.body["metadata"]["correlationId"] for e in own}) == 1
        assert "causationId" not in own[0].body["metadata"]
        for cause, effect in itertools.pairwise(own):
            assert effect.body["metadata"]["causationId"] == cause.body["id"]
        stamps = [e.body["timestamp"] for e in own]
        assert stamps == sorted(stamps) and stamps[0] == "2025-10-22T14:30:00.000Z"


def test_flows_take_the_happy_path_or_get_cancelled() -> None:
    happy = ["order.created", "inventory.reserved", "payment.succeeded", "order.paid"]
    cancelled = ["order.created", "inventory.reserved", "payment.failed", "order.cancelled"]
    outcomes: defaultdict[str, int] = defaultdict(int)
    for flow in flows(0.0, n=1000):
        keys = [e.routing_key for e in flow]
        if keys == [*happy, "order.shipped"]:
            outcomes["shipped"] += 1
        else:
            assert keys == cancelled, "a cancelled order never ships"
            outcomes["cancelled"] += 1
    assert 100 <= outcomes["cancelled"] <= 200  # about 15%


def test_decline_rate_decides_cancellation() -> None:
    assert all(flow[-1].routing_key == "order.cancelled" for flow in flows(0.0, decline_rate=1))
    assert all(flow[-1].routing_key == "order.shipped" for flow in flows(0.0, decline_rate=0))


def test_no_failure_rate_means_nothing_fails() -> None:
    for flow in flows(0.0):
        assert not any(e.fail or e.is_dead_letter or FAIL_HEADER in e.headers for e in flow)


def test_full_failure_rate_fails_every_event_one_way_or_the_other() -> None:
    for flow in flows(1.0, decline_rate=0):
        own = events_of(flow)
        assert all(e.fail for e in own)
        assert own[-1].routing_key == NATIVE_FAILURE_KEY, "a rejected order.paid never ships"
        assert own[-1].headers[FAIL_HEADER] is True
        for index, event in enumerate(flow):
            if event.fail and event.routing_key != NATIVE_FAILURE_KEY:
                letter = flow[index + 1]
                assert letter.routing_key == f"dlq.{event.routing_key}"
                assert letter.body == {
                    "originalEvent": event.body,
                    "error": letter.body["error"],
                    "retries": 3,
                }
                assert letter.message_id == event.message_id
                assert FAIL_HEADER not in event.headers


def test_some_events_carry_the_correlation_header() -> None:
    carried = [
        e.headers.get("x-correlation-id") == e.body["metadata"]["correlationId"]
        for flow in flows(0.0, n=20)
        for e in flow
    ]
    assert any(carried) and not all(carried)


def test_recorder_extracts_the_fields_the_demo_sets() -> None:
    flow = flows(1.0, n=1, decline_rate=0)[0]
    created, letter = flow[0], flow[1]
    fields = extract(created.body, {}, created.headers)
    assert fields["event_type"] == "OrderCreated"
    assert fields["aggregate_version"] == 1
    assert fields["correlation_id"] == created.body["metadata"]["correlationId"]
    assert fields["occurred_at"] == NOW
    assert extract(letter.body, {}, None)["event_id"] == created.body["id"]


def ticking_clock() -> Iterator[dt.datetime]:
    return (NOW + dt.timedelta(seconds=n) for n in itertools.count())


def test_interleave_mixes_orders_but_keeps_each_in_order() -> None:
    clock = ticking_clock()
    stream = interleave(random.Random(7), failure_rate=0.3, clock=lambda: next(clock))
    events = list(itertools.islice(stream, 300))
    orders = [e.body.get("data", {}).get("orderId") for e in events]
    switches = sum(1 for a, b in itertools.pairwise(orders) if a and b and a != b)
    assert switches > 50, "orders are interleaved"
    by_order: dict[str, list[DemoEvent]] = defaultdict(list)
    for event in events_of(events):
        by_order[event.body["data"]["orderId"]].append(event)
    for own in by_order.values():
        for cause, effect in itertools.pairwise(own):
            assert effect.body["metadata"]["causationId"] == cause.body["id"]
            assert effect.body["timestamp"] > cause.body["timestamp"]


def test_interleave_stamps_when_taken_and_dead_letters_carry_the_stamped_original() -> None:
    clock = ticking_clock()
    stream = interleave(random.Random(3), failure_rate=0.5, clock=lambda: next(clock))
    sent: dict[str, DemoEvent] = {}
    letters = 0
    for event in itertools.islice(stream, 200):
        if event.is_dead_letter:
            letters += 1
            assert event.body["originalEvent"] == sent[event.message_id].body
        else:
            sent[event.message_id] = event
    assert letters > 10
    stamps = [e.body["timestamp"] for e in sent.values()]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_every_demo_queue_is_bounded() -> None:
    topology = DemoTopology("ex", "ex.dlx", "pfx")
    specs = topology.queues()
    assert {s.name for s in specs} == {
        "pfx.inventory",
        "pfx.payments",
        "pfx.shipping",
        "pfx.dead-letters",
    }
    for spec in specs:
        assert spec.arguments["x-overflow"] == "drop-head"
        assert spec.arguments["x-max-length"] > 0 and spec.arguments["x-message-ttl"] > 0
    shipping = next(s for s in specs if s.name == topology.shipping)
    assert shipping.keys == ("order.paid",)
    assert shipping.arguments["x-dead-letter-exchange"] == "ex.dlx"


@pytest.mark.parametrize("rate", [-0.1, 1.5])
async def test_run_demo_refuses_a_failure_rate_outside_0_1(rate: float) -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        await run_demo("amqp://guest:guest@127.0.0.1:1/", failure_rate=rate, max_events=1)


async def test_run_demo_waits_out_an_unreachable_broker_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="eventscope.backend.demo")
    task = asyncio.create_task(run_demo("amqp://guest:guest@127.0.0.1:1/", stop=stop, seed=1))
    async with asyncio.timeout(10):
        while not any(
            r.levelno == logging.WARNING
            for r in caplog.records
            if r.name == "eventscope.backend.demo"
        ):
            assert not task.done()
            await asyncio.sleep(0.01)
    stop.set()
    async with asyncio.timeout(5):
        assert await task == 0
    ours = [r.getMessage() for r in caplog.records if r.name == "eventscope.backend.demo"]
    assert "publishing the order flow to exchange 'events'" in ours[0]
    assert "retrying in" in ours[1]


async def test_stop_does_not_wait_for_a_hanging_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    connecting = asyncio.Event()

    async def hang(*args: object, **kwargs: object) -> None:
        connecting.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(aio_pika, "connect", hang)
    monkeypatch.setattr(publisher, "STOP_GRACE", 0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_demo("amqp://guest:guest@192.0.2.1/", stop=stop))
    async with asyncio.timeout(5):
        await connecting.wait()
    stop.set()
    async with asyncio.timeout(2):
        assert await task == 0


def test_messages_are_persistent_json_with_ids_and_producer() -> None:
    event = flows(0.0, n=1)[0][0]
    message = to_message(event)
    assert json.loads(message.body) == event.body
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == event.body["id"]
    assert message.app_id == "order-service"
    assert message.timestamp is not None
    assert message.headers == event.headers
