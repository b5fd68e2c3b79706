"""The topic matcher against RabbitMQ itself: bind real queues with each pattern, publish each
key, and assert the matcher selects exactly what the broker routed."""

from __future__ import annotations

import asyncio

import aio_pika
from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope.backend.topic import TopicPattern
from tests.conftest import AMQP_URL, Names

PATTERNS = [
    "#",
    "*",
    "order.*",
    "*.created",
    "order.#",
    "#.created",
    "#.#",
    "order.#.created",
    "*.*",
    "order.*.created",
    "#.*",
    "*.#",
    "order.#.#.created",
    "#.order.#",
    "order..created",
    "",
    ".",
    "order",
    "é.*",
    "*.*.*",
]
KEYS = [
    "",
    "order",
    "order.created",
    "order.paid.created",
    "order.x.y.created",
    "order..created",
    "order.",
    ".created",
    ".",
    "..",
    "created",
    "payment.order.created",
    "é.ü",
    "a.b.c",
]


async def routed(names: Names, patterns: list[str], keys: list[str]) -> dict[str, set[str]]:
    """Which keys the broker delivers to a queue bound with each pattern."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            f"{names.exchange}.topic", aio_pika.ExchangeType.TOPIC, auto_delete=True
        )
        queues = {}
        for i, pattern in enumerate(patterns):
            queue = await channel.declare_queue(f"{names.tap_queue}.{i}", exclusive=True)
            await queue.bind(exchange, routing_key=pattern)
            queues[pattern] = queue
        for key in keys:
            await exchange.publish(aio_pika.Message(key.encode()), routing_key=key)
        got: dict[str, set[str]] = {}
        for pattern, queue in queues.items():
            got[pattern] = set()
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                got[pattern].add(message.body.decode())
        return got
    finally:
        await connection.close()


async def test_every_pattern_selects_what_the_broker_routes(names: Names) -> None:
    broker = await routed(names, PATTERNS, KEYS)
    for pattern in PATTERNS:
        mine = {key for key in KEYS if TopicPattern.parse(pattern).matches(key)}
        assert mine == broker[pattern], f"pattern {pattern!r}"


WORD = st.sampled_from(["a", "b", "", "*", "#"])
KEY_WORD = st.sampled_from(["a", "b", ""])


@settings(max_examples=15, deadline=None)
@given(
    patterns=st.lists(st.lists(WORD, max_size=5).map(".".join), min_size=1, max_size=6),
    keys=st.lists(st.lists(KEY_WORD, max_size=5).map(".".join), min_size=1, max_size=12),
)
def test_generated_patterns_agree_with_the_broker(patterns: list[str], keys: list[str]) -> None:
    names = Names("gen", f"test.gen.{id(patterns)}", f"test.gen.q.{id(patterns)}", "gen")
    patterns, keys = sorted(set(patterns)), sorted(set(keys))
    broker = asyncio.run(routed(names, patterns, keys))
    for pattern in patterns:
        mine = {key for key in keys if TopicPattern.parse(pattern).matches(key)}
        assert mine == broker[pattern], f"pattern {pattern!r} over {keys!r}"
