"""Byte-exact capture (hardening item 6): every AMQP field type and width goes through the real
broker into both databases and comes back as the bytes that were published; replay headers are
appended without touching any other byte, and the broker accepts and delivers the result."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator

import aiormq
import aiormq.exceptions
import pytest
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from eventscope.backend import amqp_lenient
from eventscope.backend.amqp_wire import (
    FIXED_WIDTH,
    RESERVED,
    TAGS,
    RawProperties,
    build_table,
    join_properties,
    parse_table,
    split_properties,
    with_headers,
)
from tests.conftest import AMQP_URL, Broker, Names, eventually, make_settings
from tests.integration.test_ingest import stored_rows
from tests.rawamqp import RawPublisher, long_string, properties, short_string, table, timestamp

amqp_lenient.install()  # a plain consumer of what the recorder stores must read it leniently


def _pack(fmt: str, *values: object) -> bytes:
    return struct.pack(">" + fmt, *values)


def _array(*tagged: bytes) -> bytes:
    body = b"".join(tagged)
    return _pack("I", len(body)) + body


# Several values per tag, edge widths first; names deliberately not in sorted order.
VALUES: dict[bytes, list[bytes]] = {
    b"t": [b"\x00", b"\x01", b"\x02", b"\xff"],
    b"b": [_pack("b", 5), _pack("b", -1), _pack("b", -128)],
    b"B": [b"\x00", b"\x05", b"\xff"],
    b"s": [_pack("h", 5), _pack("h", -(2**15))],
    b"u": [_pack("H", 5), _pack("H", 2**16 - 1)],
    b"I": [_pack("i", 5), _pack("i", -5), _pack("i", -(2**31))],
    b"i": [_pack("I", 5), _pack("I", 2**32 - 1)],
    b"l": [_pack("q", 5), _pack("q", -1), _pack("q", 2**63 - 1), _pack("q", -(2**63))],
    b"L": [_pack("Q", 5), _pack("Q", 2**64 - 1)],
    b"f": [_pack("f", 1.5), _pack("f", 0.1), _pack("f", -0.0), b"\x00\x00\x00\x01",
           b"\x7f\x7f\xff\xff"],
    b"d": [_pack("d", 0.1), _pack("d", -0.0), b"\x00" * 7 + b"\x01", _pack("d", 1e308)],
    b"D": [b"\x02" + _pack("I", 12345), b"\xff" + _pack("I", 2**32 - 1), b"\x00" * 5],
    b"T": [timestamp(0), timestamp(1_764_000_000), timestamp(1_764_000_000_123),
           timestamp(1_764_000_000_000_000_000), timestamp(2**63 - 1), timestamp(2**64 - 1)],
    b"V": [b""],
    b"S": [long_string(b""), long_string("plain ✓".encode()), long_string(b"\xff\xfe\xc0\xaf"),
           long_string(b"a\x00b"), long_string(b"<script>alert(1)</script>"),
           long_string(bytes(range(256)) * 40)],
    b"x": [long_string(b""), long_string(b"\x00\xff"), long_string(bytes(range(256)) * 4)],
    b"A": [_array(), _array(b"b\x05", b"l" + _pack("q", 5), b"S" + long_string(b"\xff")),
           _array(b"A" + _array(b"A" + _array(b"V")), b"F" + table([(b"k", b"t\x02")]))],
    b"F": [table([]), table([(b"z", b"b\x05"), (b"a", b"l" + _pack("q", 5)), (b"z", b"V")]),
           table([(b"outer", b"F" + table([(b"inner", b"A" + _array(b"d" + _pack("d", 0.1)))]))])],
}  # fmt: skip


def _deep(depth: int) -> bytes:
    value = b"S" + long_string(b"bottom")
    for level in range(depth):
        value = (b"F" + table([(b"n", value)])) if level % 2 else (b"A" + _array(value))
    return value


def _per_tag(tag: bytes) -> bytes:
    return properties(
        headers=table(
            (f"{chr(ord('z') - i)}-{tag.decode()}-{i}".encode(), tag + v)
            for i, v in enumerate(VALUES[tag])
        )
    )


CORPUS: list[tuple[str, bytes]] = [
    *((f"tag {tag.decode()}", _per_tag(tag)) for tag in sorted(VALUES)),
    (
        "every tag in one table, unsorted",
        properties(headers=table((b"%c" % tag, tag + VALUES[tag][-1]) for tag in VALUES)),
    ),
    (
        "names at their edges",
        properties(
            headers=table(
                [
                    (b"", b"V"),
                    (b"name\xff\xfe", b"b\x01"),
                    (b"n" * 255, b"b\x02"),
                    (b"dup", b"b\x03"),
                    (b"nul\x00name", b"b\x04"),
                    (b"dup", b"l" + _pack("q", 3)),
                ]
            )
        ),
    ),
    ("nested 60 deep", properties(headers=table([(b"deep", _deep(60))]))),
    (
        "x-death as RabbitMQ writes it",
        properties(
            headers=table(
                [
                    (
                        b"x-death",
                        b"A"
                        + _array(
                            b"F"
                            + table(
                                [
                                    (b"count", b"l" + _pack("q", 1)),
                                    (b"reason", b"S" + long_string(b"rejected")),
                                    (b"queue", b"S" + long_string(b"orders")),
                                    (b"time", b"T" + timestamp(1_764_000_000)),
                                    (b"exchange", b"S" + long_string(b"events")),
                                    (b"routing-keys", b"A" + _array(b"S" + long_string(b"o.c"))),
                                ]
                            )
                        ),
                    ),
                    (b"x-first-death-reason", b"S" + long_string(b"rejected")),
                ]
            )
        ),
    ),
    (
        "every property at its edge",
        join_properties(
            {
                "content_type": short_string(b"application/\xffjson"),
                "content_encoding": short_string(b"identity"),
                "headers": table([(b"h", b"T" + timestamp(1_764_000_000_123))]),
                "delivery_mode": b"\x02",
                "priority": b"\xff",
                "correlation_id": short_string(b"c" * 255),
                "reply_to": short_string(b"amq.rabbitmq.reply-to\xc3\x28"),
                "expiration": short_string(b"86400000"),
                "message_id": short_string(b"m\xff\x00"),
                "timestamp": timestamp(1_764_000_000_123),
                "message_type": short_string(b""),
                "user_id": short_string(b"guest"),
                "app_id": short_string("app ✓".encode()),
                "cluster_id": short_string(b"\xfe"),
                RESERVED: b"",
            }
        ),
    ),
    ("timestamp 2^64-1", properties(timestamp=timestamp(2**64 - 1))),
    ("no properties", properties()),
    ("reserved flag bit alone", _pack("H", 2)),
    ("empty headers table", properties(headers=table([]))),
]


def _body(i: int) -> bytes:
    return b"byte-exact %d" % i


async def test_every_field_type_and_width_is_stored_as_the_bytes_published(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    run = await start_recorder(make_settings(database_url, names))
    publisher = RawPublisher(AMQP_URL)
    try:
        for i, (what, raw) in enumerate(CORPUS):
            assert await publisher.publish(names.exchange, "byte.exact", _body(i), raw), what
    finally:
        await publisher.close()
    await eventually(lambda: run.recorder.status.stored >= len(CORPUS), 30, "the corpus stored")
    await run.halt()

    rows = {bytes(r["body"]): r for r in await stored_rows(database_url)}
    assert len(rows) == len(CORPUS)
    for i, (what, raw) in enumerate(CORPUS):
        row = rows[_body(i)]
        stored = bytes(row["raw_properties"])
        assert stored == raw, what
        assert row["problem"] is None, what
        assert join_properties(split_properties(stored)) == stored, what
        chunk = split_properties(stored).get("headers")
        if chunk is not None:
            assert build_table(parse_table(chunk)) == chunk, what


@pytest.fixture
async def queue() -> AsyncIterator[str]:
    name = f"test.replay.{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.queue_declare(name, durable=False, auto_delete=False)
    try:
        yield name
    finally:
        await channel.queue_delete(name)
        await connection.close()


async def _consume(queue: str, count: int) -> list[aiormq.abc.DeliveredMessage]:
    """`count` messages from `queue` through a plain aiormq consumer, in delivery order."""
    received: list[aiormq.abc.DeliveredMessage] = []
    done = asyncio.Event()

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        received.append(message)
        if len(received) >= count:
            done.set()

    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.basic_consume(queue, on_message, no_ack=True)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await connection.close()
    return received


def _decoded(raw: bytes) -> Basic.Properties:
    header = ContentHeader()
    header.unmarshal(_pack("HHQ", 60, 0, 0) + raw)
    assert getattr(header, "undecodable", None) is None
    return header.properties


REPLAY = {"x-eventscope-replay-id": "replay-3f2a", "x-eventscope-replay-count": 2}


async def test_replay_headers_leave_every_other_byte_and_the_broker_delivers_them(
    queue: str,
) -> None:
    sent = [with_headers(raw, REPLAY) for _, raw in CORPUS]
    for (what, raw), out in zip(CORPUS, sent, strict=True):
        before, after = split_properties(raw), split_properties(out)
        assert {k: v for k, v in after.items() if k != "headers"} == {
            k: v for k, v in before.items() if k != "headers"
        }, what
        old = before.get("headers", b"\0\0\0\0")[4:]
        assert after["headers"][4 : 4 + len(old)] == old, what

    publisher = RawPublisher(AMQP_URL)
    try:
        for i, (what, out) in enumerate(zip((w for w, _ in CORPUS), sent, strict=True)):
            assert await publisher.publish("", queue, _body(i), out), what
    finally:
        await publisher.close()
    messages = await _consume(queue, len(CORPUS))

    assert [m.body for m in messages] == [_body(i) for i in range(len(CORPUS))]
    for (what, raw), out, message in zip(CORPUS, sent, messages, strict=True):
        assert message.header.raw_properties == out, what
        got = message.header.properties
        original = _decoded(raw)
        assert got.headers == {**(original.headers or {}), **REPLAY}, what
        for name in ("message_id", "timestamp", "content_type", "priority", "cluster_id"):
            assert getattr(got, name) == getattr(original, name), (what, name)


async def test_a_second_replay_replaces_the_replay_id_instead_of_adding_another(queue: str) -> None:
    first = with_headers(CORPUS[0][1], REPLAY)
    second = with_headers(first, {"x-eventscope-replay-id": "replay-2"}, replace=True)
    publisher = RawPublisher(AMQP_URL)
    try:
        assert await publisher.publish("", queue, b"again", second)
    finally:
        await publisher.close()
    (message,) = await _consume(queue, 1)
    assert message.header.raw_properties == second
    names = [e.name for e in parse_table(split_properties(second)["headers"])]
    assert names.count(b"x-eventscope-replay-id") == 1
    assert message.header.properties.headers["x-eventscope-replay-id"] == "replay-2"


# -- what RabbitMQ 3.10 accepts ---------------------------------------------------------------

NOT_TAGS = [b"U", b"Z", b"c", b"e", b"\x00", b"\xff"]


async def test_rabbitmq_accepts_exactly_the_tags_and_widths_the_codec_knows() -> None:
    """If a broker upgrade accepts another tag (or refuses one), the codec's TAGS are wrong."""
    publisher = RawPublisher(AMQP_URL)

    async def accepted(tagged: bytes) -> bool:
        raw = properties(headers=table([(b"k", tagged)]))
        return await publisher.publish("", "eventscope.no-such-queue", b"", raw)

    try:
        for tag in sorted(TAGS):
            width = FIXED_WIDTH.get(tag, 4)  # S, x, F and A: an empty payload is a zero length
            assert await accepted(tag + b"\x00" * width), tag
            if width:
                assert not await accepted(tag + b"\x00" * (width - 1)), f"{tag!r} is shorter"
        for tag in NOT_TAGS:
            for width in (0, 1, 2, 4, 5, 8):
                assert not await accepted(tag + b"\x00" * width), (tag, width)
        for refused in (
            b"f" + _pack("f", float("nan")),
            b"f" + _pack("f", float("inf")),
            b"d" + _pack("d", float("nan")),
            b"d" + _pack("d", float("-inf")),
        ):
            assert not await accepted(refused), refused
    finally:
        await publisher.close()


async def test_a_return_is_matched_to_its_publish_only_by_a_message_id_in_the_bytes() -> None:
    """What replay must know: aiormq matches `basic.return` by message id. Raw properties
    without one publish 'successfully' even when nothing routed them."""
    connection = await aiormq.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(aiormq.exceptions.PublishError):
            await channel.basic_publish(
                b"x",
                routing_key="eventscope.no-such-queue",
                properties=RawProperties(properties(message_id=short_string(b"m\xff1"))),
                mandatory=True,
            )
        unmatched = await channel.basic_publish(
            b"x",
            routing_key="eventscope.no-such-queue",
            properties=RawProperties(properties()),
            mandatory=True,
        )
        assert isinstance(unmatched, Basic.Ack), "aiormq now detects it: simplify replay"
    finally:
        await connection.close()
