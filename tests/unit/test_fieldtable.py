"""Typed header tables: every AMQP field type is stored and goes back on the wire as it came."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pytest
from pamqp import decode as pamqp_decode
from pamqp import encode as pamqp_encode
from pamqp import frame as pamqp_frame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from eventscope.backend.envelope import Delivery, properties_from_header, to_row
from eventscope.backend.fieldtable import decode_table, encode_table

WHEN = dt.datetime(2025, 10, 22, 14, 30, 5, tzinfo=dt.UTC)

EVERY_TYPE: dict[str, Any] = {
    "string": "order.created ✓",
    "bytes_not_utf8": b"\xff\xfe\x00raw",
    "byte_array": bytearray(b"\x00\x01\x02\xff"),
    "small_int": 7,
    "negative_int": -40_000,
    "long_long": 2**62 + 1,
    "big_int": 2**100,
    "true": True,
    "false": False,
    "float": 1.25,
    "decimal": Decimal("3.1400"),
    "timestamp": WHEN,
    "table": {"inner": "v", "deeper": {"n": 1, "list": [1, "two"]}},
    "array": [1, "two", None, {"k": b"\x80"}, [True]],
    "void": None,
    "empty_table": {},
    "empty_array": [],
}


def _same(a: Any, b: Any) -> bool:
    """Equality that also checks types (True is not 1, bytes are not bytearray) and NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_every_field_type_round_trips_with_its_python_type() -> None:
    back = decode_table(encode_table(EVERY_TYPE))
    for key, value in EVERY_TYPE.items():
        assert _same(back[key], value), f"{key}: {value!r} came back as {back[key]!r}"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), -0.0, 1e-300, Decimal("NaN"), Decimal("-0.00")],
    ids=repr,
)
def test_special_numbers_round_trip(value: Any) -> None:
    back = decode_table(encode_table({"v": value}))["v"]
    assert _same(back, value)
    if isinstance(value, float) and value == 0:
        assert math.copysign(1, back) == -1


def test_key_order_is_preserved() -> None:
    table = {"z": 1, "a": 2, "m": 3}
    assert list(decode_table(encode_table(table))) == ["z", "a", "m"]


def test_naive_timestamp_is_read_as_utc() -> None:
    back = decode_table(encode_table({"t": dt.datetime(2025, 1, 2, 3, 4, 5)}))["t"]
    assert back == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_no_headers_encode_as_an_empty_table() -> None:
    assert encode_table(None) == "{}"
    assert encode_table({}) == "{}"
    assert decode_table("{}") == {}


def test_encoded_table_is_pure_ascii_even_with_nul_and_lone_surrogates() -> None:
    table = {
        "nul\x00key": "a\x00b",
        "surrogate": "x\ud800y",
        "emoji": "🐇",
        "rlo": "\u202eevil",
        "nested": {"s": "\udfff"},
    }
    text = encode_table(table)
    assert text.isascii()
    text.encode("ascii")
    assert "\x00" not in text
    back = decode_table(text)
    assert back == table


def _wire(headers: dict[str, Any], **properties: Any) -> bytes:
    header = ContentHeader(0, 11, Basic.Properties(headers=headers, **properties))
    return pamqp_frame.marshal(header, 1)


# Every type pamqp itself can encode (it cannot encode `bytes`: a non-UTF-8 long string only
# arrives from other clients; see test_non_utf8_long_string_from_the_wire_is_kept_as_bytes).
WIRE_HEADERS: dict[str, Any] = {k: v for k, v in EVERY_TYPE.items() if k != "big_int"}
WIRE_HEADERS["array"] = [1, "two", None, {"k": "v"}, [True]]
WIRE_HEADERS.pop("bytes_not_utf8")
WIRE_HEADERS.update(
    float_nan=float("nan"),
    float_inf=float("inf"),
    int_limits=[-128, 127, 32767, 65535, 2**31 - 1, 2**32 - 1, 2**63 - 1, -(2**63)],
    nul="a\x00b",
)


def test_headers_and_properties_replay_to_identical_wire_bytes() -> None:
    """Decode with pamqp, store with encode_table, decode, re-encode: byte-for-byte the same."""
    original = _wire(
        WIRE_HEADERS,
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="replies",
        expiration="60000",
        message_id="msg-1",
        timestamp=WHEN,
        message_type="order.created",
        user_id="guest",
        app_id="tests",
    )
    _, _, received = pamqp_frame.unmarshal(original)
    assert isinstance(received, ContentHeader)
    props, headers = properties_from_header(received.properties)
    row = to_row(
        Delivery("ex", "rk", False, props, headers, b"hello world", WHEN),
        max_body_bytes=1024,
    )

    restored = Basic.Properties(
        headers=decode_table(row["headers"]), **decode_table(row["properties"])
    )
    replayed = pamqp_frame.marshal(ContentHeader(0, 11, restored), 1)

    assert replayed == original


def test_field_table_replays_through_pamqp_table_codec() -> None:
    wire = pamqp_encode.field_table(WIRE_HEADERS)
    _, decoded = pamqp_decode.field_table(wire)
    assert pamqp_encode.field_table(decode_table(encode_table(decoded))) == wire


def test_non_utf8_long_string_from_the_wire_is_kept_as_bytes() -> None:
    raw = b"\xff\xfe\x00not utf-8"
    body = b"\x03key" + b"S" + len(raw).to_bytes(4, "big") + raw
    wire = len(body).to_bytes(4, "big") + body
    _, decoded = pamqp_decode.field_table(wire)
    assert decoded == {"key": raw}

    back = decode_table(encode_table(decoded))
    assert type(back["key"]) is bytes
    assert back["key"] == raw
