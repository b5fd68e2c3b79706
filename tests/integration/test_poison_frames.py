"""Messages pamqp cannot decode, sent as raw frames through the real broker: every one is
stored once, the events after them too, and nothing loops (hardening item 1)."""

from __future__ import annotations

import struct

import pytest

from eventscope.backend.fieldtable import decode_table
from tests.conftest import AMQP_URL, Broker, Names, eventually, make_settings
from tests.integration.test_ingest import seed_event, stored_rows
from tests.rawamqp import long_string, properties, publish_raw, short_string, table, timestamp

POISON: list[tuple[str, str | bytes, bytes]] = [
    ("timestamp 2^63-1", "poison.ts.max", properties(timestamp=timestamp(2**63 - 1))),
    (
        "timestamp in nanoseconds",
        "poison.ts.ns",
        properties(timestamp=timestamp(1_764_000_000_000_000_000)),
    ),
    ("message_id not UTF-8", "poison.message-id", properties(message_id=short_string(b"m\xff"))),
    (
        "correlation_id not UTF-8",
        "poison.correlation",
        properties(correlation_id=short_string(b"c\xc3\x28")),
    ),
    (
        "header name not UTF-8",
        "poison.header-name",
        properties(headers=table([(b"h\xfe", b"S" + long_string(b"v"))])),
    ),
    (
        "header timestamp out of range",
        "poison.header-ts",
        properties(headers=table([(b"when", b"T" + timestamp(2**64 - 1))])),
    ),
    ("routing key not UTF-8", b"poison.key\xff", properties(app_id=short_string(b"tests"))),
    (
        "header long string not UTF-8",
        "poison.header-value",
        properties(headers=table([(b"x-correlation-id", b"S" + long_string(b"\xc0\xaf"))])),
    ),
]
# A header table with a type tag nobody knows is refused by RabbitMQ itself (541 INTERNAL_ERROR
# to the publisher): such a frame cannot reach a tap queue. The recorder's answer to one that
# does (flagged, raw bytes kept) is tested on the decoder in tests/unit/test_amqp_lenient.py.


@pytest.mark.parametrize(("what", "routing_key", "raw"), POISON, ids=[p[0] for p in POISON])
async def test_undecodable_message_is_stored_and_recording_goes_on(
    what: str,
    routing_key: str | bytes,
    raw: bytes,
    database_url: str,
    names: Names,
    broker: Broker,
    start_recorder,
) -> None:
    run = await start_recorder(make_settings(database_url, names))
    await publish_raw(AMQP_URL, names.exchange, routing_key, b'{"poison": true}', raw)
    await broker.publish("after.poison", seed_event(1))
    await eventually(lambda: run.recorder.status.stored >= 2, 20, "both messages stored")
    await eventually(lambda: _drained(broker, names.tap_queue), 10, "tap queue drained")
    await run.halt()

    rows = await stored_rows(database_url)
    assert [bytes(r["body"]) for r in rows] == [b'{"poison": true}', seed_event(1)]
    poison = rows[0]
    assert bytes(poison["raw_properties"]) == raw, "the property bytes are kept as received"
    assert poison["redelivered"] is False or poison["redelivered"] == 0, "stored on first sight"


async def test_undecodable_values_are_typed_losslessly(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    run = await start_recorder(make_settings(database_url, names))
    raw = properties(
        message_id=short_string(b"m\xff"),
        timestamp=timestamp(2**63 - 1),
        headers=table(
            [(b"when", b"T" + timestamp(2**64 - 1)), (b"s", b"S" + long_string(b"\xfe"))]
        ),
    )
    await publish_raw(AMQP_URL, names.exchange, b"key.\xff", b"{}", raw)
    await eventually(lambda: run.recorder.status.stored >= 1, 20, "the message stored")
    await run.halt()

    (row,) = await stored_rows(database_url)
    props = decode_table(row["properties"])
    assert props["message_id"] == b"m\xff"
    assert int(props["timestamp"]) == 2**63 - 1
    headers = decode_table(row["headers"])
    assert int(headers["when"]) == 2**64 - 1
    assert headers["s"] == b"\xfe"
    assert row["routing_key"] == "key.\\xff"
    originals = decode_table(row["originals"])
    assert originals["routing_key"] == b"key.\xff"
    assert row["message_id"] == "m\\xff"


async def _drained(broker: Broker, queue: str) -> bool:
    return await broker.queue_depth(queue) == 0


def test_raw_property_helper_lays_out_flags_as_amqp_does() -> None:
    raw = properties(message_id=short_string(b"id"), timestamp=timestamp(1))
    assert raw[:2] == struct.pack(">H", (1 << 7) | (1 << 6))
