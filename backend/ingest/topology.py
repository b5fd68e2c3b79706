"""Declares the tap queue and binds it so that it receives everything each exchange routes.

The broker does not report an exchange's type to a client, so it is checked against the broker:
a declaration that does not match an existing exchange is refused (406), one that matches is a
no-op. A missing exchange is declared durable/topic, as the seed's producers do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq

from eventscope.backend.amqp_session import declare_queue

log = logging.getLogger(__name__)

BUILTIN_TYPES = {
    "amq.topic": "topic",
    "amq.fanout": "fanout",
    "amq.headers": "headers",
    "amq.match": "headers",
    "amq.direct": "direct",
}
CATCH_ALL: dict[str, tuple[str, dict[str, Any] | None]] = {
    "topic": ("#", None),
    "fanout": ("", None),
    "headers": ("", {"x-match": "all"}),
}


@dataclass(frozen=True)
class TapSpec:
    queue: str
    max_length: int
    queue_type: str

    def arguments(self) -> dict[str, Any]:
        return {
            "x-max-length": self.max_length,
            "x-overflow": "drop-head",
            "x-queue-type": self.queue_type,
        }


async def _try(connection: aio_pika.abc.AbstractConnection, **declare: Any) -> bool:
    """Declare an exchange on a throwaway channel; False when the broker refuses it."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_exchange(**declare)
        return True
    except aiormq.exceptions.ChannelClosed:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()


async def exchange_type(connection: aio_pika.abc.AbstractConnection, name: str) -> str:
    """The type of exchange `name`, declaring it durable/topic when it does not exist."""
    if name in BUILTIN_TYPES:
        return BUILTIN_TYPES[name]
    if not await _try(connection, name=name, passive=True):
        await _try(connection, name=name, type="topic", durable=True)
        log.info("exchange %r did not exist: declared durable topic", name)
        return "topic"
    for kind in ("topic", "fanout", "headers", "direct"):
        for durable in (True, False):
            if await _try(connection, name=name, type=kind, durable=durable):
                return kind
    return "unknown"


async def declare_tap_queue(
    channel: aio_pika.abc.AbstractChannel, spec: TapSpec
) -> tuple[aio_pika.abc.AbstractQueue, str | None]:
    """Declare the bounded tap queue; an existing queue with other arguments is used as is."""
    return await declare_queue(channel, spec.queue, spec.arguments())


async def bind_everything(
    connection: aio_pika.abc.AbstractConnection,
    channel: aio_pika.abc.AbstractChannel,
    queue: aio_pika.abc.AbstractQueue,
    exchanges: tuple[str, ...],
) -> dict[str, str]:
    """Bind the tap queue to every exchange with the binding that receives all it routes."""
    found: dict[str, str] = {}
    for name in exchanges:
        kind = await exchange_type(connection, name)
        if kind not in CATCH_ALL:
            found[name] = f"{kind}: cannot receive every message (not bound)"
            log.error(
                "exchange %r is %s: only topic, fanout and headers can be recorded", name, kind
            )
            continue
        routing_key, arguments = CATCH_ALL[kind]
        await queue.bind(name, routing_key=routing_key, arguments=arguments)
        found[name] = kind
    return found
