"""The width-exact wire codec: what was received is what a replay sends, byte for byte."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import decode, encode
from pamqp.header import ContentHeader

from eventscope.backend import amqp_lenient
from eventscope.backend.amqp_lenient import UndecodedText
from eventscope.backend.amqp_wire import (
    FIXED_WIDTH,
    MAX_DEPTH,
    PROPERTIES,
    RESERVED,
    TAGS,
    Entry,
    Item,
    RawProperties,
    WireText,
    build_array,
    build_table,
    build_value,
    field,
    join_properties,
    parse_array,
    parse_table,
    split_properties,
    table_spans,
    with_headers,
)
from tests.rawamqp import long_string, properties, short_string, table, timestamp

amqp_lenient.install()

# -- strategies: wire values of every tag, built independently of the codec ----------------------

names = st.binary(max_size=255)
long_payloads = st.binary(max_size=300) | st.sampled_from([b"\xff\xfe", b"\xc0\xaf", b"\x00"])


def scalar(tag: bytes) -> st.SearchStrategy[Item]:
    if tag in FIXED_WIDTH:
        size = FIXED_WIDTH[tag]
        return st.binary(min_size=size, max_size=size).map(lambda v: Item(tag, v))
    return long_payloads.map(lambda v: Item(tag, v))


SCALAR_TAGS = sorted(TAGS - {b"F", b"A"})
scalars = st.one_of([scalar(tag) for tag in SCALAR_TAGS])


def _containers(children: st.SearchStrategy[Item]) -> st.SearchStrategy[Item]:
    entries = st.lists(st.tuples(names, children), max_size=5).map(
        lambda pairs: Item(b"F", [Entry(name, item.tag, item.value) for name, item in pairs])
    )
    items = st.lists(children, max_size=5).map(lambda values: Item(b"A", list(values)))
    return entries | items


values = st.recursive(scalars, _containers, max_leaves=25)
tables = st.lists(st.tuples(names, values), max_size=8).map(
    lambda pairs: [Entry(name, item.tag, item.value) for name, item in pairs]
)


def wire(item: Item) -> bytes:
    """A tagged value as bytes, written with struct alone (not with the codec under test)."""
    tag, value = item
    if tag in FIXED_WIDTH:
        assert isinstance(value, bytes)
        return tag + value
    if tag in (b"S", b"x"):
        assert isinstance(value, bytes)
        return tag + struct.pack(">I", len(value)) + value
    if tag == b"F":
        body = b"".join(
            bytes([len(e.name)]) + e.name + wire(Item(e.tag, e.value))
            for e in value  # type: ignore[union-attr]
        )
    else:
        body = b"".join(wire(i) for i in value)  # type: ignore[arg-type]
    return tag + struct.pack(">I", len(body)) + body


def wire_table(entries: list[Entry]) -> bytes:
    return wire(Item(b"F", entries))[1:]


# -- the codec --------------------------------------------------------------------------------


@given(tables)
def test_a_table_of_every_tag_decodes_to_what_was_encoded(entries: list[Entry]) -> None:
    assert parse_table(build_table(entries)) == entries


@given(tables)
def test_table_bytes_are_encoded_back_identically(entries: list[Entry]) -> None:
    raw = wire_table(entries)
    assert parse_table(raw) == entries
    assert build_table(parse_table(raw)) == raw


@given(st.lists(values, max_size=8))
def test_array_bytes_are_encoded_back_identically(items: list[Item]) -> None:
    raw = wire(Item(b"A", items))[1:]
    assert parse_array(raw) == items
    assert build_array(parse_array(raw)) == raw


@given(st.binary(max_size=64))
def test_any_bytes_either_round_trip_exactly_or_are_refused_with_valueerror(raw: bytes) -> None:
    framed = struct.pack(">I", len(raw)) + raw
    try:
        entries = parse_table(framed)
    except ValueError:
        return
    assert build_table(entries) == framed


# Values pamqp cannot give back: decoded and encoded again, each comes out different.
WIDTHS = [
    ("int8 5", b"b\x05"),
    ("int64 5", b"l" + struct.pack(">q", 5)),
    ("uint16 max", b"u\xff\xff"),
    ("int32 -5", b"I" + struct.pack(">i", -5)),
    ("uint32 max", b"i\xff\xff\xff\xff"),
    ("uint64 max", b"L" + b"\xff" * 8),
    ("double 0.1", b"d" + struct.pack(">d", 0.1)),
    ("float 1.5", b"f" + struct.pack(">f", 1.5)),
    ("timestamp in ms", b"T" + timestamp(1_764_000_000_123)),
    ("boolean octet 2", b"t\x02"),
    ("long string not UTF-8", b"S" + long_string(b"\xff\xfe")),
    ("decimal scale 255", b"D\xff\x00\x00\x00\x01"),
]


@pytest.mark.parametrize(("what", "tagged"), WIDTHS, ids=[w[0] for w in WIDTHS])
def test_widths_pamqp_would_change_are_kept(what: str, tagged: bytes) -> None:
    raw = table([(b"z", tagged), (b"a", b"V")])  # not sorted
    assert build_table(parse_table(raw)) == raw
    (entry, void) = parse_table(raw)
    assert (entry.name, entry.tag, entry.value) == (b"z", tagged[:1], _payload(tagged))
    assert void == Entry(b"a", b"V", b"")
    try:
        again = encode.field_table(decode.field_table(raw)[1])
    except (TypeError, ValueError):
        return  # pamqp cannot even encode it
    assert again != raw, f"pamqp now keeps {what}: the note in fieldtable.py is out of date"


def _payload(tagged: bytes) -> bytes:
    return tagged[5:] if tagged[:1] in (b"S", b"x") else tagged[1:]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "truncated"),
        (struct.pack(">I", 4) + b"\x01kZ\x00", "unknown field tag"),
        (struct.pack(">I", 3) + b"\x05abc", "exceeds"),
        (struct.pack(">I", 3) + b"\x01kl", "truncated"),
        (struct.pack(">I", 7) + b"\x01kS\x00\x00\x00\x09", "exceeds"),
        (table([(b"k", b"V")]) + b"x", "after the table"),
        (struct.pack(">I", 4) + b"\x01kF\x00", "truncated"),
    ],
)
def test_malformed_tables_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_table(raw)


def _nested(depth: int) -> bytes:
    value = b"V"
    for _ in range(depth):
        value = b"F" + table([(b"n", value)])
    return table([(b"deep", value)])


def test_nesting_beyond_the_bound_is_refused_not_a_recursion_error() -> None:
    assert build_table(parse_table(_nested(MAX_DEPTH))) == _nested(MAX_DEPTH)
    with pytest.raises(ValueError, match="nested deeper"):
        parse_table(_nested(MAX_DEPTH + 2))
    with pytest.raises(ValueError, match="nested deeper"):
        parse_table(_nested(5000))


def test_values_of_the_wrong_width_or_tag_are_not_encoded() -> None:
    with pytest.raises(ValueError, match="takes 8 bytes"):
        build_value(b"l", b"\x05")
    with pytest.raises(ValueError, match="unknown field tag"):
        build_value(b"U", b"\x00\x05")
    with pytest.raises(ValueError, match="list of"):
        build_value(b"F", [Item(b"V", b"")])  # an array's items are not table entries


# -- properties -------------------------------------------------------------------------------

property_chunks = st.fixed_dictionaries(
    {},
    optional={
        "content_type": st.binary(max_size=255).map(short_string),
        "content_encoding": st.binary(max_size=20).map(short_string),
        "headers": tables.map(wire_table),
        "delivery_mode": st.sampled_from([b"\x01", b"\x02"]),
        "priority": st.binary(min_size=1, max_size=1),
        "correlation_id": st.binary(max_size=255).map(short_string),
        "reply_to": st.binary(max_size=30).map(short_string),
        "expiration": st.integers(0, 10**9).map(lambda n: short_string(str(n).encode())),
        "message_id": st.binary(max_size=255).map(short_string),
        "timestamp": st.integers(0, 2**64 - 1).map(timestamp),
        "message_type": st.binary(max_size=30).map(short_string),
        "user_id": st.just(short_string(b"guest")),
        "app_id": st.binary(max_size=30).map(short_string),
        "cluster_id": st.binary(max_size=30).map(short_string),
        RESERVED: st.just(b""),
    },
)
extra_values = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.binary(max_size=10).map(bytearray),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    values,
)
extras = st.dictionaries(st.text(min_size=1, max_size=30).map(lambda n: f"x-{n}"), extra_values)


@given(property_chunks)
def test_properties_split_and_join_byte_for_byte(chunks: dict[str, bytes]) -> None:
    raw = join_properties(chunks)
    assert split_properties(raw) == chunks
    assert join_properties(split_properties(raw)) == raw


@given(property_chunks, extras)
def test_added_headers_leave_every_other_byte_as_it_was(
    chunks: dict[str, bytes], extra: dict[str, Any]
) -> None:
    raw = join_properties(chunks)
    if "headers" in chunks:
        existing = {name for name, _ in table_spans(chunks["headers"])}
        extra = {k: v for k, v in extra.items() if k.encode() not in existing}
    out = with_headers(raw, extra)

    after = split_properties(out)
    assert {k: v for k, v in after.items() if k != "headers"} == {
        k: v for k, v in chunks.items() if k != "headers"
    }
    before_entries = parse_table(chunks["headers"]) if "headers" in chunks else []
    added = parse_table(after["headers"])[len(before_entries) :]
    assert parse_table(after["headers"])[: len(before_entries)] == before_entries
    assert after["headers"][4:].startswith(chunks.get("headers", b"\0\0\0\0")[4:])
    assert [(e.name, Item(e.tag, e.value)) for e in added] == [
        (k.encode(), field(v)) for k, v in extra.items()
    ]


def test_added_headers_read_back_through_pamqp() -> None:
    raw = properties(
        content_type=short_string(b"application/json"),
        message_id=short_string(b"m\xff"),
        timestamp=timestamp(2**63 - 1),
    )
    out = with_headers(
        raw, {"x-eventscope-replay-id": "r-1", "x-count": 3, b"x-raw": b"\xff", "x-ok": True}
    )
    header = ContentHeader()
    header.unmarshal(struct.pack(">HHQ", 60, 0, 0) + out)
    props = header.properties
    assert props.content_type == "application/json"
    assert isinstance(props.message_id, UndecodedText) and props.message_id.raw == b"m\xff"
    assert int(props.timestamp) == 2**63 - 1
    assert props.headers == {
        "x-eventscope-replay-id": "r-1",
        "x-count": 3,
        "x-raw": b"\xff",
        "x-ok": True,
    }
    # the headers table sits between content_type and message_id, as AMQP orders them
    assert out == (
        struct.pack(">H", struct.unpack(">H", raw[:2])[0] | 1 << 13)
        + short_string(b"application/json")
        + split_properties(out)["headers"]
        + raw[2 + 17 :]
    )


def test_a_header_already_present_is_replaced_only_when_asked() -> None:
    headers = table(
        [
            (b"a", b"b\x01"),
            (b"x-eventscope-replay-id", b"S" + long_string(b"old")),
            (b"z", b"l" + struct.pack(">q", 5)),
            (b"x-eventscope-replay-id", b"S" + long_string(b"older")),
        ]
    )
    raw = properties(headers=headers, app_id=short_string(b"app"))
    with pytest.raises(ValueError, match="replace=True"):
        with_headers(raw, {"x-eventscope-replay-id": "new"})
    out = with_headers(raw, {"x-eventscope-replay-id": "new"}, replace=True)
    assert parse_table(split_properties(out)["headers"]) == [
        Entry(b"a", b"b", b"\x01"),
        Entry(b"z", b"l", struct.pack(">q", 5)),
        Entry(b"x-eventscope-replay-id", b"S", b"new"),
    ]
    assert split_properties(out)["app_id"] == short_string(b"app")


def test_headers_are_added_to_deep_tables_and_after_the_reserved_flag_bit() -> None:
    deep = _nested(5000)  # deeper than parse_table follows: with_headers never reads inside
    raw = join_properties({"headers": deep, RESERVED: b""})
    out = with_headers(raw, {"x-eventscope-replay-id": "r"})
    assert out[:2] == raw[:2], "the flags (reserved bit 1 too) are unchanged"
    assert split_properties(out)["headers"][4 : len(deep)] == deep[4:]
    bare = with_headers(struct.pack(">H", 2), {"k": 1})
    assert bare[:2] == struct.pack(">H", 2 | 1 << 13)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"x" * 256: 1}, "at most 255"),
        ({"k": 2**63}, "int64"),
        ({"k": float("nan")}, "NaN"),
        ({"k": Item(b"Z", b"")}, "unknown field tag"),
        ({"k": 1, b"k": 2}, "twice"),
    ],
)
def test_added_headers_rabbitmq_would_refuse_are_refused(extra: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        with_headers(properties(), extra)


def test_each_python_value_gets_one_explicit_wire_type() -> None:
    assert field("é") == Item(b"S", "é".encode())
    assert field(b"\xff") == Item(b"S", b"\xff")
    assert field(bytearray(b"\x00")) == Item(b"x", b"\x00")
    assert field(True) == Item(b"t", b"\x01")
    assert field(5) == Item(b"l", struct.pack(">q", 5))
    assert field(0.5) == Item(b"d", struct.pack(">d", 0.5))
    assert field(None) == Item(b"V", b"")
    assert field(Item(b"b", b"\x05")) == Item(b"b", b"\x05")
    with pytest.raises(TypeError):
        field(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [b"\x00", struct.pack(">H", 1 << 15), struct.pack(">H", 0) + b"zz", struct.pack(">HH", 1, 0)],
)
def test_malformed_property_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        split_properties(raw)
    with pytest.raises(ValueError):
        with_headers(raw, {"k": 1})
    with pytest.raises(ValueError):
        RawProperties(raw)


# -- sending ----------------------------------------------------------------------------------


def test_raw_properties_marshal_to_their_bytes_and_carry_the_message_id() -> None:
    raw = properties(message_id=short_string(b"id\xff"), headers=_nested(3))
    props = RawProperties(raw)
    assert props.marshal() == raw
    assert ContentHeader(properties=props, body_size=0).marshal().endswith(raw)
    assert props.message_id == "id\\xff" and props.message_id.raw == b"id\xff"
    assert RawProperties(properties()).message_id is None


def test_a_routing_key_that_is_not_utf8_is_encoded_as_its_bytes() -> None:
    key = WireText(b"key.\xff" + b"k" * 250)
    assert len(key) == 255, "aiormq's length check counts bytes"
    assert encode.short_string(key) == b"\xff" + b"key.\xff" + b"k" * 250


def test_every_amqp_property_is_known() -> None:
    assert [name for name, _, _ in PROPERTIES][-1] == "cluster_id"
    assert sum(bit for _, bit, _ in PROPERTIES) == 0xFFFC
