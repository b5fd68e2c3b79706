"""The demo's exchanges and queues, declared idempotently on every (re)connect.

Every demo queue is bounded (length and age, oldest dropped first): a demo left running must
never fill the broker. Names derive from parameters so that tests can run side by side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq

log = logging.getLogger("eventscope.backend.demo")

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

    exchange: str = "events"
    dlx_exchange: str = "events.dlx"
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


async def _declare_queue(
    channel: aio_pika.abc.AbstractChannel, spec: QueueSpec
) -> aio_pika.abc.AbstractQueue:
    """Declare a bounded queue; one that exists with other arguments is used as it is."""
    try:
        return await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        log.warning(
            "demo queue %r exists with other arguments (%s); using it as it is", spec.name, exc
        )
        await channel.reopen()
        return await channel.declare_queue(spec.name, passive=True)


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
        queues[spec.name] = queue = await _declare_queue(channel, spec)
        for key in spec.keys:
            await queue.bind(spec.exchange, routing_key=key)
    return exchange, queues[topology.shipping]
