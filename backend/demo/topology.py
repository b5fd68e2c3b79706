"""The demo's exchanges and queues, declared idempotently on every (re)connect.

Every demo queue is bounded (length and age, oldest dropped first): a demo left running must
never fill the broker. Names derive from parameters so that tests can run side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika

from eventscope.backend.amqp_session import declare_queue

DEMO_EXCHANGE = "events"
DEMO_DLX_EXCHANGE = "events.dlx"  # where the demo's rejected messages are dead-lettered
MAX_LENGTH = 10_000
MESSAGE_TTL_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    exchange: str
    keys: tuple[str, ...]
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DemoTopology:
    """Names of everything the demo declares."""

    exchange: str = DEMO_EXCHANGE
    dlx_exchange: str = DEMO_DLX_EXCHANGE
    prefix: str = "demo"

    @property
    def shipping(self) -> str:
        return f"{self.prefix}.shipping"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dead-letters"

    def queues(self) -> list[QueueSpec]:
        """Sinks for order.created, the consumed shipping queue and the dead-letter queue."""
        bound: dict[str, Any] = {
            "x-max-length": MAX_LENGTH,
            "x-message-ttl": MESSAGE_TTL_MS,
            "x-overflow": "drop-head",
        }
        shipping = {**bound, "x-dead-letter-exchange": self.dlx_exchange}
        return [
            QueueSpec(f"{self.prefix}.inventory", self.exchange, ("order.created",), bound),
            QueueSpec(f"{self.prefix}.payments", self.exchange, ("order.created",), bound),
            QueueSpec(self.shipping, self.exchange, ("order.paid",), shipping),
            QueueSpec(self.dead_letters, self.dlx_exchange, ("#",), bound),
        ]


async def declare(
    channel: aio_pika.abc.AbstractChannel, topology: DemoTopology
) -> tuple[aio_pika.abc.AbstractExchange, aio_pika.abc.AbstractQueue]:
    """Declare and bind everything; return the events exchange and the shipping queue."""
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await channel.declare_exchange(topology.dlx_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queues: dict[str, aio_pika.abc.AbstractQueue] = {}
    for spec in topology.queues():
        queues[spec.name] = queue = (await declare_queue(channel, spec.name, spec.arguments))[0]
        for key in spec.keys:
            await queue.bind(spec.exchange, routing_key=key)
    return exchange, queues[topology.shipping]
