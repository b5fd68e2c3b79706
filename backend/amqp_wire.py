"""AMQP content-header properties as bytes: read, rebuild and extend them, byte for byte.

The recorder keeps every message's raw property bytes (`raw_properties`, see `amqp_lenient`).
A replay must send what was received, and pamqp cannot: it re-encodes a millisecond timestamp
as seconds, a double as a 32-bit float and an int64 5 as an 8-bit int, sorts header names, and
cannot encode text that is not UTF-8. So replays work on the bytes:

- `split_properties` / `join_properties` cut the bytes into one raw chunk per property and put
  them back (the reserved flag bit 1, which RabbitMQ passes through, is kept as `RESERVED`);
- `parse_table` / `build_table` are a width-exact field-table codec: every entry is
  (name bytes, type tag, value) with the value's wire bytes, nested tables and arrays parsed
  the same way, and `build_table(parse_table(b)) == b` for every table RabbitMQ accepts;
- `with_headers` appends headers (e.g. `x-eventscope-replay-id`) and leaves every other byte
  as it was;
- `RawProperties` makes aiormq send given property bytes; `WireText` is a routing key whose
  wire bytes are not UTF-8.

Pure: no I/O. RabbitMQ 3.10 accepts the table tags in `TAGS` (tests/integration/
test_byte_exact.py proves each against the broker); it refuses any other tag, a float or double
that is NaN or infinite, and any table whose lengths do not add up (541, connection closed).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from pamqp.commands import Basic

from eventscope.backend.amqp_lenient import short_str

# Property flag bits and wire types in the order AMQP 0-9-1 lays them out.
PROPERTIES: tuple[tuple[str, int, str], ...] = (
    ("content_type", 1 << 15, "shortstr"),
    ("content_encoding", 1 << 14, "shortstr"),
    ("headers", 1 << 13, "table"),
    ("delivery_mode", 1 << 12, "octet"),
    ("priority", 1 << 11, "octet"),
    ("correlation_id", 1 << 10, "shortstr"),
    ("reply_to", 1 << 9, "shortstr"),
    ("expiration", 1 << 8, "shortstr"),
    ("message_id", 1 << 7, "shortstr"),
    ("timestamp", 1 << 6, "timestamp"),
    ("message_type", 1 << 5, "shortstr"),
    ("user_id", 1 << 4, "shortstr"),
    ("app_id", 1 << 3, "shortstr"),
    ("cluster_id", 1 << 2, "shortstr"),
)
RESERVED = "reserved"  # split_properties' key for flag bit 1: no property, passed through
_RESERVED_BIT = 1 << 1
_HEADERS_BIT = 1 << 13
_FIXED = {"octet": 1, "timestamp": 8}

# Field-table value tags (RabbitMQ's errata) and the width of their fixed-size values.
FIXED_WIDTH: dict[bytes, int] = {
    b"t": 1,  # boolean (any octet; RabbitMQ passes 2 or 255 through)
    b"b": 1,  # int8
    b"B": 1,  # uint8
    b"s": 2,  # int16
    b"u": 2,  # uint16
    b"I": 4,  # int32
    b"i": 4,  # uint32
    b"l": 8,  # int64
    b"L": 8,  # uint64 (RabbitMQ 3.10 accepts it)
    b"f": 4,  # float32 (finite)
    b"d": 8,  # float64 (finite)
    b"D": 5,  # decimal: scale octet + uint32
    b"T": 8,  # timestamp: uint64, any unit the producer chose
    b"V": 0,  # void
}
LONG_TAGS = frozenset({b"S", b"x"})  # uint32 length + bytes: long string, byte array
TAGS = frozenset({*FIXED_WIDTH, *LONG_TAGS, b"F", b"A"})
MAX_DEPTH = 100  # nesting parse_table follows before refusing (RabbitMQ allows more)


class Entry(NamedTuple):
    """One field-table entry as on the wire: name bytes, tag byte, value.

    The value is the wire bytes for a fixed-width tag, the payload without its length for
    `S` and `x`, a list of `Entry` for a table (`F`) and a list of `Item` for an array (`A`)."""

    name: bytes
    tag: bytes
    value: WireValue


class Item(NamedTuple):
    """One field-array element (or a header value to add): tag byte and value, as in `Entry`."""

    tag: bytes
    value: WireValue


WireValue = bytes | list[Entry] | list[Item]


def short_string(raw: bytes) -> bytes:
    if len(raw) > 255:
        raise ValueError(f"a short string holds at most 255 bytes, not {len(raw)}")
    return bytes([len(raw)]) + raw


def long_string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def table(entries: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A field table from (name, tagged value) pairs, in the given order."""
    body = b"".join(short_string(name) + value for name, value in entries)
    return struct.pack(">I", len(body)) + body


# -- the width-exact field-table codec ----------------------------------------------------------


def parse_table(raw: bytes) -> list[Entry]:
    """A whole field table (its uint32 length first) as entries, in wire order.

    Raises ValueError for an unknown tag, lengths that do not add up, trailing bytes, or
    nesting deeper than `MAX_DEPTH`."""
    entries, end = _table(memoryview(raw), 0, 0)
    if end != len(raw):
        raise ValueError(f"{len(raw) - end} bytes after the table")
    return entries


def build_table(entries: Iterable[Entry]) -> bytes:
    """The inverse of `parse_table`: the same bytes for what it parsed."""
    body = b"".join(short_string(name) + build_value(tag, value) for name, tag, value in entries)
    return struct.pack(">I", len(body)) + body


def parse_array(raw: bytes) -> list[Item]:
    """A whole field array (its uint32 length first) as items, in wire order."""
    items, end = _array(memoryview(raw), 0, 0)
    if end != len(raw):
        raise ValueError(f"{len(raw) - end} bytes after the array")
    return items


def build_array(items: Iterable[Item]) -> bytes:
    body = b"".join(build_value(tag, value) for tag, value in items)
    return struct.pack(">I", len(body)) + body


def build_value(tag: bytes, value: WireValue) -> bytes:
    """One tagged field value (tag byte first), as `parse_table` reads it back.

    Raises ValueError for a tag RabbitMQ does not accept or a value of the wrong width."""
    if tag in FIXED_WIDTH:
        if not isinstance(value, bytes) or len(value) != FIXED_WIDTH[tag]:
            raise ValueError(f"tag {tag!r} takes {FIXED_WIDTH[tag]} bytes, not {value!r:.60}")
        return tag + value
    if tag in LONG_TAGS:
        if not isinstance(value, bytes):
            raise ValueError(f"tag {tag!r} takes bytes")
        return tag + long_string(value)
    if tag == b"F":
        return tag + build_table(_entries(value))
    if tag == b"A":
        return tag + build_array(_items(value))
    raise ValueError(f"unknown field tag {tag!r}")


def _entries(value: WireValue) -> list[Entry]:
    if isinstance(value, bytes) or not all(len(e) == 3 for e in value):
        raise ValueError("a table value is a list of (name, tag, value)")
    return [Entry(*e) for e in value]


def _items(value: WireValue) -> list[Item]:
    if isinstance(value, bytes) or not all(len(i) == 2 for i in value):
        raise ValueError("an array value is a list of (tag, value)")
    return [Item(*i) for i in value]


def _length(data: memoryview, offset: int, what: str) -> tuple[int, int]:
    """A uint32 length at `offset`: (start of the payload, end of the payload)."""
    if offset + 4 > len(data):
        raise ValueError(f"{what} length is truncated")
    (size,) = struct.unpack_from(">I", data, offset)
    end = offset + 4 + size
    if end > len(data):
        raise ValueError(f"{what} of {size} bytes exceeds the data")
    return offset + 4, end


def _table(data: memoryview, offset: int, depth: int) -> tuple[list[Entry], int]:
    if depth > MAX_DEPTH:
        raise ValueError(f"tables nested deeper than {MAX_DEPTH}")
    start, end = _length(data, offset, "table")
    scoped = data[:end]
    entries = []
    at = start
    while at < end:
        size = scoped[at]
        if at + 1 + size > end:
            raise ValueError("field name exceeds the table")
        name = bytes(scoped[at + 1 : at + 1 + size])
        tag, value, at = _value(scoped, at + 1 + size, depth)
        entries.append(Entry(name, tag, value))
    return entries, end


def _array(data: memoryview, offset: int, depth: int) -> tuple[list[Item], int]:
    if depth > MAX_DEPTH:
        raise ValueError(f"arrays nested deeper than {MAX_DEPTH}")
    start, end = _length(data, offset, "array")
    scoped = data[:end]
    items = []
    at = start
    while at < end:
        tag, value, at = _value(scoped, at, depth)
        items.append(Item(tag, value))
    return items, end


def _value(data: memoryview, at: int, depth: int) -> tuple[bytes, WireValue, int]:
    """(tag, value, end) of the tagged value at `at`; `data` ends where its container ends."""
    if at >= len(data):
        raise ValueError("field value is truncated")
    tag = bytes(data[at : at + 1])
    at += 1
    if tag in FIXED_WIDTH:
        end = at + FIXED_WIDTH[tag]
        if end > len(data):
            raise ValueError(f"{tag!r} value is truncated")
        return tag, bytes(data[at:end]), end
    if tag in LONG_TAGS:
        start, end = _length(data, at, f"{tag!r} value")
        return tag, bytes(data[start:end]), end
    if tag == b"F":
        entries, end = _table(data, at, depth + 1)
        return tag, entries, end
    if tag == b"A":
        items, end = _array(data, at, depth + 1)
        return tag, items, end
    raise ValueError(f"unknown field tag {tag!r}")


def _skip_value(data: bytes, at: int) -> int:
    """The end of the tagged value at `at`, without reading inside tables or arrays."""
    if at >= len(data):
        raise ValueError("field value is truncated")
    tag = data[at : at + 1]
    if tag in FIXED_WIDTH:
        end = at + 1 + FIXED_WIDTH[tag]
    elif tag in LONG_TAGS or tag in (b"F", b"A"):
        if at + 5 > len(data):
            raise ValueError(f"{tag!r} length is truncated")
        end = at + 5 + struct.unpack_from(">I", data, at + 1)[0]
    else:
        raise ValueError(f"unknown field tag {tag!r}")
    if end > len(data):
        raise ValueError(f"{tag!r} value exceeds the table")
    return end


def table_spans(raw: bytes) -> list[tuple[bytes, bytes]]:
    """A whole field table's top-level entries as (name, raw entry bytes), in wire order.

    Nested tables are not read (only skipped by their length), so any depth is fine: what
    `with_headers` needs to keep entries byte for byte."""
    if len(raw) < 4 or 4 + struct.unpack(">I", raw[:4])[0] != len(raw):
        raise ValueError("table length does not match its bytes")
    end = len(raw)
    spans = []
    at = 4
    while at < end:
        size = raw[at]
        name_end = at + 1 + size
        if name_end > end:
            raise ValueError("field name exceeds the table")
        value_end = _skip_value(raw, name_end)
        spans.append((raw[at + 1 : name_end], raw[at:value_end]))
        at = value_end
    return spans


# -- properties ---------------------------------------------------------------------------------


def _property_spans(raw: bytes) -> tuple[int, dict[str, tuple[int, int]]]:
    """(flags, name → (start, end)) of every present property, in wire order."""
    if len(raw) < 2:
        raise ValueError("property flags are truncated")
    (flags,) = struct.unpack(">H", raw[:2])
    if flags & 1:
        raise ValueError("more than one property flag word is not defined by AMQP 0-9-1")
    offset = 2
    spans: dict[str, tuple[int, int]] = {}
    for name, bit, kind in PROPERTIES:
        if not flags & bit:
            continue
        if kind == "shortstr":
            if offset >= len(raw):
                raise ValueError(f"{name} is truncated")
            size = 1 + raw[offset]
        elif kind == "table":
            if offset + 4 > len(raw):
                raise ValueError(f"{name} is truncated")
            size = 4 + struct.unpack(">I", raw[offset : offset + 4])[0]
        else:
            size = _FIXED[kind]
        if offset + size > len(raw):
            raise ValueError(f"{name} is truncated")
        spans[name] = (offset, offset + size)
        offset += size
    if offset != len(raw):
        raise ValueError(f"{len(raw) - offset} bytes after the last property")
    return flags, spans


def split_properties(raw: bytes) -> dict[str, bytes]:
    """One raw chunk per present property, keyed by name, in wire order; flag bit 1 (no
    property, but RabbitMQ passes it through) as `RESERVED: b""`.

    Raises ValueError when the bytes are not a well-formed property list."""
    flags, spans = _property_spans(raw)
    chunks = {name: raw[start:end] for name, (start, end) in spans.items()}
    if flags & _RESERVED_BIT:
        chunks[RESERVED] = b""
    return chunks


def join_properties(chunks: Mapping[str, bytes]) -> bytes:
    """The inverse of `split_properties`: flags, then the chunks in AMQP order."""
    known = {name for name, _, _ in PROPERTIES} | {RESERVED}
    unknown = set(chunks) - known
    if unknown:
        raise ValueError(f"not AMQP properties: {sorted(unknown)}")
    flags = _RESERVED_BIT if RESERVED in chunks else 0
    parts = []
    for name, bit, _ in PROPERTIES:
        if name in chunks:
            flags |= bit
            parts.append(chunks[name])
    return struct.pack(">H", flags) + b"".join(parts)


HeaderValue = str | bytes | bytearray | bool | int | float | None | Item


def field(value: HeaderValue) -> Item:
    """A header value with an explicit wire type.

    str → `S` (UTF-8), bytes → `S` (as given, UTF-8 or not), bytearray → `x`, bool → `t`,
    int → `l` (int64), float → `d` (finite), None → `V`; an `Item` is used as it is."""
    if isinstance(value, Item):
        build_value(value.tag, value.value)  # refuses what RabbitMQ would refuse
        return value
    if isinstance(value, str):
        return Item(b"S", value.encode("utf-8"))
    if isinstance(value, bytearray):
        return Item(b"x", bytes(value))
    if isinstance(value, bytes):
        return Item(b"S", value)
    if isinstance(value, bool):
        return Item(b"t", b"\x01" if value else b"\x00")
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{value} does not fit an int64 header")
        return Item(b"l", struct.pack(">q", value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("RabbitMQ refuses a NaN or infinite double")
        return Item(b"d", struct.pack(">d", value))
    if value is None:
        return Item(b"V", b"")
    raise TypeError(f"no AMQP field type for {type(value).__name__}")


def with_headers(
    raw_properties: bytes,
    extra: Mapping[str | bytes, HeaderValue],
    *,
    replace: bool = False,
) -> bytes:
    """`raw_properties` with `extra` headers appended; every other byte as it was.

    The flag word, every property and every existing header entry are copied byte for byte
    (nested tables are never re-encoded); a headers table is added (flag set, in its AMQP
    position) when there was none. The extra headers come last, in the given order.

    A name already present is refused (ValueError) unless `replace=True`; then every existing
    entry of that name is removed and the new value appended with the others (a table may hold
    a name more than once; after this it holds it once). Raises ValueError when the bytes
    cannot be read, a name is longer than 255 bytes, or a value is one RabbitMQ refuses."""
    flags, spans = _property_spans(raw_properties)
    added = [(_name(name), field(value)) for name, value in extra.items()]
    names = {name for name, _ in added}
    if len(names) != len(added):
        raise ValueError("the extra headers name one header twice")
    if "headers" in spans:
        start, end = spans["headers"]
        kept = []
        for name, entry in table_spans(raw_properties[start:end]):
            if name in names:
                if not replace:
                    raise ValueError(f"header {name!r} is present (replace=True replaces it)")
                continue
            kept.append(entry)
    else:
        start = end = _headers_offset(spans)
        kept = []
    body = b"".join(kept) + b"".join(
        short_string(name) + build_value(item.tag, item.value) for name, item in added
    )
    headers = struct.pack(">I", len(body)) + body
    flag_word = struct.pack(">H", flags | _HEADERS_BIT)
    return flag_word + raw_properties[2:start] + headers + raw_properties[end:]


def _name(name: str | bytes) -> bytes:
    raw = name.encode("utf-8") if isinstance(name, str) else name
    if len(raw) > 255:
        raise ValueError(f"a header name holds at most 255 bytes, not {len(raw)}")
    return raw


def _headers_offset(spans: Mapping[str, tuple[int, int]]) -> int:
    """Where a headers table goes: after content_type and content_encoding, if present."""
    offset = 2
    for name in ("content_type", "content_encoding"):
        if name in spans:
            offset = spans[name][1]
    return offset


# -- sending -------------------------------------------------------------------------------------


class RawProperties(Basic.Properties):
    """Basic.Properties that marshal to exactly `raw` (aiormq sends what `marshal` returns).

    `message_id` is read from the bytes: aiormq matches a returned (`mandatory`) message to
    its publish by it, and assigns a random one to the object when it is missing — that one is
    never sent, so a message without a message id cannot be matched to its return."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        _, spans = _property_spans(raw)  # refuses bytes the broker would refuse
        self.raw = raw
        if "message_id" in spans:
            start, end = spans["message_id"]
            self.message_id = short_str(raw[start:end])[1]

    def marshal(self) -> bytes:
        return self.raw


class WireText(str):
    """A str that pamqp encodes as the given bytes (a routing key that is not UTF-8)."""

    raw: bytes

    def __new__(cls, raw: bytes) -> WireText:
        text = super().__new__(cls, raw.decode("latin-1"))  # one character per byte: len fits
        text.raw = raw
        return text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw
