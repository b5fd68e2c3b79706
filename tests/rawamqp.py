"""Publishing what client libraries refuse to send: raw property bytes, non-UTF-8 routing keys.

aiormq marshals properties and short strings through pamqp, which encodes only valid values.
`RawProperties` sends the given property bytes as they are; `WireText` is a routing key whose
UTF-8 encoding is the given bytes. Both go through a real aiormq channel to the real broker.
"""

from __future__ import annotations

import struct
from typing import Any

import aiormq
from pamqp.commands import Basic

from eventscope.backend.amqp_wire import join_properties, long_string, short_string, table


class RawProperties(Basic.Properties):
    """Basic.Properties that marshal to exactly `raw`."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.raw = raw

    def marshal(self) -> bytes:
        return self.raw


class WireText(str):
    """A str that pamqp encodes as the given bytes (for a routing key that is not UTF-8)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> WireText:
        text = super().__new__(cls, raw.decode("latin-1"))
        text.raw = raw
        return text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def timestamp(raw: int) -> bytes:
    return struct.pack(">Q", raw)


def properties(**chunks: bytes) -> bytes:
    """Property bytes from already-encoded chunks, e.g. message_id=short_string(b"\\xff")."""
    return join_properties(chunks)


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
        key = WireText(routing_key) if isinstance(routing_key, bytes) else routing_key
        return await channel.basic_publish(
            body, exchange=exchange, routing_key=key, properties=RawProperties(raw_properties)
        )
    finally:
        await connection.close()


__all__ = [
    "RawProperties",
    "WireText",
    "long_string",
    "properties",
    "publish_raw",
    "short_string",
    "table",
    "timestamp",
]
