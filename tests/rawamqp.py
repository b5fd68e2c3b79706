"""Publishing what client libraries refuse to send: raw property bytes, non-UTF-8 routing keys.

aiormq marshals properties and short strings through pamqp, which encodes only valid values.
`RawProperties` sends the given property bytes as they are; `WireText` is a routing key whose
wire bytes are the given bytes (both live in backend.amqp_wire: replay sends with them). Both
go through a real aiormq channel to the real broker.
"""

from __future__ import annotations

import struct
from typing import Any

import aiormq
import aiormq.exceptions

from eventscope.backend.amqp_wire import (
    RawProperties,
    WireText,
    join_properties,
    long_string,
    short_string,
    table,
)


def timestamp(raw: int) -> bytes:
    return struct.pack(">Q", raw)


def properties(**chunks: bytes) -> bytes:
    """Property bytes from already-encoded chunks, e.g. message_id=short_string(b"\\xff")."""
    return join_properties(chunks)


def _key(routing_key: str | bytes) -> str:
    return WireText(routing_key) if isinstance(routing_key, bytes) else routing_key


async def publish_raw(
    url: str,
    exchange: str,
    routing_key: str | bytes,
    body: bytes,
    raw_properties: bytes,
) -> Any:
    """One publish with confirms on its own connection; returns the broker's confirmation."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        return await channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=_key(routing_key),
            properties=RawProperties(raw_properties),
        )
    finally:
        await connection.close()


# What the broker answers to a publish it refuses: 406 PRECONDITION_FAILED closes the channel
# (a delivery mode other than 1 or 2, an expiration that is not a non-negative integer, a
# user_id other than the connection's user), 541 INTERNAL_ERROR closes the connection (a header
# table it cannot parse: an unknown tag, a NaN or infinite float or double, bad lengths).
REFUSALS = (aiormq.exceptions.ChannelClosed, aiormq.exceptions.ConnectionClosed)


class RawPublisher:
    """Many raw publishes with confirms over one connection; a refused publish is reported
    (False) and the connection or channel reopened, so one refusal costs one message."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: aiormq.abc.AbstractConnection | None = None
        self.channel: aiormq.abc.AbstractChannel | None = None

    async def _channel(self) -> aiormq.abc.AbstractChannel:
        if self.connection is None or self.connection.is_closed:
            self.connection = await aiormq.connect(self.url)
            self.channel = None
        if self.channel is None or self.channel.is_closed:
            self.channel = await self.connection.channel(publisher_confirms=True)
        return self.channel

    async def publish(
        self, exchange: str, routing_key: str | bytes, body: bytes, raw_properties: bytes
    ) -> bool:
        """True when the broker confirmed the publish, False when it refused it."""
        channel = await self._channel()
        try:
            confirmation = await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=_key(routing_key),
                properties=RawProperties(raw_properties),
            )
        except REFUSALS:
            self.channel = None
            return False
        return isinstance(confirmation, aiormq.spec.Basic.Ack)

    async def close(self) -> None:
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()


__all__ = [
    "REFUSALS",
    "RawProperties",
    "RawPublisher",
    "WireText",
    "long_string",
    "properties",
    "publish_raw",
    "short_string",
    "table",
    "timestamp",
]
