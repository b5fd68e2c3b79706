"""The demo against the real broker: the scenario's keys, seed dead letters and real x-death."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast
from uuid import uuid4

import aio_pika
import pytest

from eventscope.backend.demo import run_demo
from eventscope.backend.demo.topology import DemoTopology
from eventscope.backend.runtime import Runtime
from tests.conftest import Names, make_settings

AMQP_URL = os.environ.get("EVENTSCOPE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
SOURCES = {"order-service", "payment-service", "inventory-service", "shipping-service"}


@dataclass(frozen=True)
class DemoNames:
    suffix: str
    exchange: str
    dlx: str
    prefix: str
    tap: str

    @property
    def demo_kwargs(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "dlx_exchange": self.dlx,
            "queue_prefix": self.prefix,
            "connection_name": f"test-demo-run-{self.suffix}",
        }


@pytest.fixture
async def demo_names() -> AsyncIterator[DemoNames]:
    suffix = uuid4().hex[:8]
    base = f"test.demo.{suffix}"
    yield DemoNames(suffix, base, f"{base}.dlx", base, f"{base}.tap")
    connection = await aio_pika.connect(
        AMQP_URL, client_properties={"connection_name": f"test-demo-cleanup-{suffix}"}
    )
    async with connection:
        channel = await connection.channel()
        for spec in DemoTopology(base, f"{base}.dlx", base).queues():
            await channel.queue_delete(spec.name)
        await channel.queue_delete(f"{base}.tap")
        await channel.exchange_delete(base)
        await channel.exchange_delete(f"{base}.dlx")


@pytest.fixture
async def channel(demo_names: DemoNames) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(
        AMQP_URL, client_properties={"connection_name": f"test-demo-{demo_names.suffix}"}
    )
    async with connection:
        yield await connection.channel()


async def tap_everything(
    channel: aio_pika.abc.AbstractChannel, demo_names: DemoNames
) -> aio_pika.abc.AbstractQueue:
    """Our own queue bound `#` to the demo's exchange, declared before the demo publishes."""
    exchange = await channel.declare_exchange(
        demo_names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    tap = await channel.declare_queue(demo_names.tap, arguments={"x-max-length": 100_000})
    await tap.bind(exchange, routing_key="#")
    return tap


async def take(
    queue: aio_pika.abc.AbstractQueue, count: int, deadline: float = 10.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Get `count` messages, polling until they are there or the deadline passes."""
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with asyncio.timeout(deadline):
        while len(got) < count:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
            else:
                got.append(message)
    return got


async def test_demo_publishes_the_scenario_and_both_kinds_of_dead_letter(
    demo_names: DemoNames, channel: aio_pika.abc.AbstractChannel
) -> None:
    tap = await tap_everything(channel, demo_names)

    published = await run_demo(
        AMQP_URL, rate=0, max_events=60, failure_rate=0.5, seed=1, **demo_names.demo_kwargs
    )

    assert published == 60
    messages = await take(tap, 60)
    keys = [m.routing_key for m in messages]
    assert {"order.created", "inventory.reserved", "payment.succeeded", "order.paid"} <= set(keys)
    assert any(key and key.startswith("dlq.") for key in keys)
    for message in messages:
        body = json.loads(message.body)
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.timestamp is not None
        if "originalEvent" in body:
            assert set(body) == {"originalEvent", "error", "retries"}
            assert message.routing_key == f"dlq.{body['originalEvent']['type']}"
            assert message.message_id == body["originalEvent"]["id"]
        else:
            assert message.routing_key == body["type"]
            assert message.message_id == body["id"]
            assert message.app_id == body["metadata"]["source"] in SOURCES

    dead_letters = await channel.declare_queue(f"{demo_names.prefix}.dead-letters", passive=True)
    [letter] = await take(dead_letters, 1)
    assert letter.headers is not None
    death = cast(list[dict[str, Any]], letter.headers["x-death"])[0]
    assert death["reason"] == "rejected"
    assert death["queue"] == f"{demo_names.prefix}.shipping"
    assert letter.routing_key == "order.paid"
    assert json.loads(letter.body)["eventType"] == "OrderPaid"


async def test_demo_paces_to_rate(
    demo_names: DemoNames, channel: aio_pika.abc.AbstractChannel
) -> None:
    await tap_everything(channel, demo_names)
    started = time.monotonic()
    assert await run_demo(AMQP_URL, rate=40, max_events=20, seed=3, **demo_names.demo_kwargs) == 20
    assert 0.45 <= time.monotonic() - started < 5  # 19 intervals of 25 ms
    assert len(await take(await channel.declare_queue(demo_names.tap, passive=True), 20)) == 20


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {args} failed"
    return out.decode()


async def close_connection_named(name: str) -> None:
    """Close one connection by its client-provided name, as the broker would on a failure."""
    for line in (
        await rabbitmqctl("-q", "list_connections", "pid", "client_properties")
    ).splitlines():
        if f'{{"connection_name","{name}"}}' in line:
            await rabbitmqctl("close_connection", line.split("\t")[0], "test: demo connection cut")
            return
    raise AssertionError(f"no connection named {name}")


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def wait_for_depth(channel: aio_pika.abc.AbstractChannel, queue: str, at_least: int) -> int:
    async with asyncio.timeout(15):
        while (found := await depth(channel, queue)) < at_least:
            await asyncio.sleep(0.02)
    return found


async def test_demo_reconnects_when_its_connection_is_closed(
    demo_names: DemoNames, channel: aio_pika.abc.AbstractChannel, caplog: pytest.LogCaptureFixture
) -> None:
    await tap_everything(channel, demo_names)
    caplog.set_level(logging.INFO, logger="eventscope.backend.demo")
    stop = asyncio.Event()
    demo = asyncio.create_task(
        run_demo(AMQP_URL, rate=50, seed=2, stop=stop, **demo_names.demo_kwargs)
    )
    try:
        await wait_for_depth(channel, demo_names.tap, 10)
        await close_connection_named(demo_names.demo_kwargs["connection_name"])
        before = await depth(channel, demo_names.tap)
        await wait_for_depth(
            channel, demo_names.tap, before + 10
        )  # published again after reconnect
        assert not demo.done()
        ours = [r.getMessage() for r in caplog.records if r.name == "eventscope.backend.demo"]
        assert any("retrying in" in message for message in ours)
    finally:
        stop.set()
        async with asyncio.timeout(10):
            published = await demo
    # at least once: an event whose confirm was lost with the connection is sent again
    assert published <= await depth(channel, demo_names.tap) <= published + 1


async def test_serve_demo_publishes_only_once_the_recorders_tap_is_bound(
    database_url: str, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events published before the tap queue is bound route nowhere: the demo's first order
    would lack its OrderCreated (seen as a flaky aggregate browser test)."""
    import eventscope.backend.demo as demo

    seen: list[bool] = []
    started = asyncio.Event()

    async def publishing(settings: Any, stop: asyncio.Event) -> int:
        seen.append(runtime.recorder.status.broker_connected)  # type: ignore[union-attr]
        started.set()
        await stop.wait()
        return 0

    monkeypatch.setattr(demo, "run_demo_for", publishing)
    runtime = Runtime(make_settings(database_url, names), migrate=False, demo=True)
    async with runtime.running():
        await asyncio.wait_for(started.wait(), 30)
    assert seen == [True]
