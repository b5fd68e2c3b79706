"""Lenient decoding, pinned to pamqp: what pamqp refuses is read, what it reads is unchanged."""

from __future__ import annotations

import datetime as dt
import struct
from importlib.metadata import version

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import decode
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from eventscope.backend import amqp_lenient
from eventscope.backend.amqp_lenient import (
    AmqpTimestamp,
    OutOfRangeTimestamp,
    UndecodedText,
    original,
    wire_bytes,
)
from eventscope.backend.amqp_wire import long_string, short_string, table
from tests.rawamqp import properties, timestamp

amqp_lenient.install()


def _content_header(raw_properties: bytes, body_size: int = 3) -> ContentHeader:
    header = ContentHeader()
    header.unmarshal(struct.pack(">HHQ", 60, 0, body_size) + raw_properties)
    return header


def test_pamqp_is_the_version_the_hooks_were_written_for() -> None:
    """Upgrading pamqp is a deliberate act: re-read amqp_lenient.py against the new decoders."""
    assert version("pamqp") == amqp_lenient.PAMQP_VERSION


@pytest.mark.parametrize(
    ("decoder", "data"),
    [
        ("shortstr", short_string(b"\xff\xfe")),
        ("timestamp", timestamp(2**63 - 1)),
        ("timestamp", timestamp(1_764_000_000_000_000_000)),
        ("table", table([(b"k\xff", b"S" + long_string(b"v"))])),
    ],
)
def test_pamqp_itself_still_refuses_what_we_read(decoder: str, data: bytes) -> None:
    """If this starts passing, pamqp decodes these itself now: the hook may be dropped."""
    with pytest.raises((ValueError, OverflowError, OSError)):
        original(decoder)(data)


def test_hooks_are_installed_process_wide_and_idempotently() -> None:
    amqp_lenient.install()
    assert amqp_lenient.installed()
    assert decode.METHODS["shortstr"] is amqp_lenient.short_str
    assert decode.TABLE_MAPPING[b"T"] is amqp_lenient.timestamp
    assert decode.TABLE_MAPPING[b"F"] is amqp_lenient.nested_table
    assert decode.TABLE_MAPPING[b"A"] is amqp_lenient.nested_array


def test_text_that_is_not_utf8_keeps_its_bytes() -> None:
    consumed, value = decode.by_type(short_string(b"m\xff") + b"rest", "shortstr")
    assert consumed == 3
    assert isinstance(value, UndecodedText)
    assert value == "m\\xff"
    assert value.raw == b"m\xff"
    assert wire_bytes(value) == b"m\xff"
    assert wire_bytes("plain ✓") == "plain ✓".encode()


def test_valid_text_is_a_plain_str() -> None:
    _, value = decode.by_type(short_string("ok ✓".encode()), "shortstr")
    assert type(value) is str
    assert value == "ok ✓"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
        (1_764_000_000, dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC)),
        (1_764_000_000_123, dt.datetime(2025, 11, 24, 16, 0, 0, 123000, tzinfo=dt.UTC)),
    ],
)
def test_timestamps_decode_as_pamqp_does_and_remember_the_wire_value(
    raw: int, expected: dt.datetime
) -> None:
    _, value = decode.by_type(timestamp(raw), "timestamp")
    assert isinstance(value, AmqpTimestamp)
    assert value == expected
    assert value == original("timestamp")(timestamp(raw))[1]
    assert value.raw == raw


@pytest.mark.parametrize("raw", [2**63 - 1, 2**64 - 1, 1_764_000_000_000_000_000])
def test_out_of_range_timestamps_keep_their_integer(raw: int) -> None:
    _, value = decode.by_type(timestamp(raw), "timestamp")
    assert isinstance(value, OutOfRangeTimestamp)
    assert int(value) == raw


def test_header_names_that_are_not_utf8_are_kept() -> None:
    _, value = decode.by_type(
        table([(b"k\xff", b"S" + long_string(b"v")), (b"t", b"T" + timestamp(2**63 - 1))]),
        "table",
    )
    assert isinstance(value, dict)
    (name, ts) = list(value)
    assert isinstance(name, UndecodedText) and name.raw == b"k\xff"
    assert isinstance(value[ts], OutOfRangeTimestamp)


def test_valid_properties_decode_exactly_as_before() -> None:
    props = Basic.Properties(
        content_type="application/json",
        headers={"a": 1, "b": {"c": [1, "two"]}, "when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)},
        delivery_mode=2,
        message_id="m-1",
        timestamp=dt.datetime(2025, 1, 2, tzinfo=dt.UTC),
        app_id="tests",
    )
    header = _content_header(props.marshal())
    assert header.properties == props
    assert header.raw_properties == props.marshal()  # type: ignore[attr-defined]
    assert header.undecodable is None  # type: ignore[attr-defined]


def test_properties_nothing_can_read_are_flagged_not_raised() -> None:
    raw = properties(headers=table([(b"odd", b"Z" + b"\x00\x00\x00\x01")]))
    header = _content_header(raw, body_size=7)
    assert header.body_size == 7
    assert header.raw_properties == raw  # type: ignore[attr-defined]
    assert "Unknown type" in header.undecodable  # type: ignore[attr-defined]
    assert header.properties == Basic.Properties()


@given(st.binary(max_size=300))
def test_no_property_bytes_make_the_content_header_raise(raw: bytes) -> None:
    header = _content_header(raw)
    assert header.raw_properties == raw  # type: ignore[attr-defined]


@given(st.binary(min_size=1, max_size=300))
def test_no_short_string_bytes_raise_anything_but_value_error(raw: bytes) -> None:
    try:
        decode.by_type(raw, "shortstr")
        decode.by_type(raw, "timestamp")
        decode.by_type(raw, "table")
    except ValueError:
        pass


def _deep(depth: int) -> bytes:
    value = b"S" + long_string(b"leaf")
    for level in range(depth):
        if level % 2:
            value = b"F" + table([(b"n", value)])
        else:
            value = b"A" + len(value).to_bytes(4, "big") + value
    return value


@pytest.mark.parametrize("depth", [10, 64, 65, 600, 5000])
def test_any_nesting_depth_decodes_without_recursion_error(depth: int) -> None:
    raw = properties(message_id=short_string(b"m-1"), headers=table([(b"deep", _deep(depth))]))
    header = _content_header(raw)
    assert header.undecodable is None  # type: ignore[attr-defined]
    assert header.properties.message_id == "m-1"
    value: object = header.properties.headers["deep"]
    levels = 0
    while isinstance(value, dict | list):
        value = value["n"] if isinstance(value, dict) else value[0]
        levels += 1
    if depth <= amqp_lenient.MAX_DEPTH:
        assert value == "leaf" and levels == depth
    else:
        assert isinstance(value, amqp_lenient.TooDeep), "kept raw below the bound"
        assert levels == amqp_lenient.MAX_DEPTH
        assert value[:1] in (b"F", b"A")
