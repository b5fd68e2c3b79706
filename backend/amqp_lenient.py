"""Lenient AMQP decoding: every message the broker accepted can be read, whatever it carries.

pamqp decodes frames inside aiormq's frame reader. A value it cannot unmarshal there — a short
string that is not UTF-8 (a routing key, `message_id`, a header name), an AMQP timestamp past
year 9999 (2^63-1, or a producer sending nanoseconds), a header table with an unknown type tag
— raises, aiormq closes the connection, and the broker redelivers the same message first: a
recorder that never advances. RabbitMQ itself passes all of these through unchecked.

`install()` replaces pamqp's decoders for short strings, timestamps and field tables (and wraps
the content header) so that:

- text that is not UTF-8 becomes `UndecodedText`: a str with backslash escapes (safe to show and
  store anywhere) that keeps the wire bytes in `.raw`;
- a timestamp becomes `AmqpTimestamp` (a datetime, as pamqp gives, with the wire integer in
  `.raw`), or `OutOfRangeTimestamp` (the wire integer) when no datetime can hold it;
- a table or array nested deeper than `MAX_DEPTH` (RabbitMQ accepts any depth; pamqp would
  recurse until Python's stack ends) is kept undecoded as `TooDeep` (its wire bytes);
- a content header whose properties still cannot be decoded gets empty properties and
  `undecodable` set to the reason; the raw property bytes of every content header are kept in
  `raw_properties`, so nothing is lost and a replay can send them back unchanged.

Valid input decodes exactly as pamqp decodes it. The hook is process-wide (pamqp keeps its
decoders in module-level tables) and written against the pamqp version in `PAMQP_VERSION`;
tests/unit/test_amqp_lenient.py fails when an upgrade changes what is replaced.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
import threading
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from pamqp import commands, common, decode, header

log = logging.getLogger(__name__)

PAMQP_VERSION = "4.0.1"
_MILLISECONDS_FROM = 0xFFFFFFFF  # pamqp reads larger timestamps as milliseconds


class UndecodedText(str):
    """A short string that is not valid UTF-8: escaped text, wire bytes in `raw`."""

    raw: bytes

    def __new__(cls, raw: bytes) -> UndecodedText:
        text = super().__new__(cls, raw.decode("utf-8", "backslashreplace"))
        text.raw = raw
        return text


class AmqpTimestamp(dt.datetime):
    """A decoded AMQP timestamp that remembers its wire integer (`raw`, as sent)."""

    raw: int


class OutOfRangeTimestamp(int):
    """An AMQP timestamp no datetime can hold (e.g. 2^63-1, or nanoseconds): the wire integer."""


class TooDeep(bytes):
    """A table or array nested deeper than `MAX_DEPTH`: its type tag and wire bytes, undecoded."""


MAX_DEPTH = 64
_depth = threading.local()


def _nested(tag: bytes, value: bytes, decode_one: Callable[[bytes], tuple[int, Any]]) -> Any:
    """Decode one nested table or array, or keep it raw once `MAX_DEPTH` is reached."""
    level = getattr(_depth, "level", 0)
    if level >= MAX_DEPTH:
        try:
            length = common.Struct.integer.unpack(value[0:4])[0]
        except struct.error as err:
            raise ValueError("Could not unpack data") from err
        if 4 + length > len(value):
            raise ValueError("Nested value length exceeds available data")
        return 4 + length, TooDeep(tag + bytes(value[: 4 + length]))
    _depth.level = level + 1
    try:
        return decode_one(value)
    finally:
        _depth.level = level


def wire_bytes(text: str) -> bytes:
    """The bytes a decoded short string had on the wire."""
    if type(text) is str:
        return text.encode("utf-8", "surrogatepass")
    if isinstance(text, UndecodedText):
        return text.raw
    return text.encode("utf-8", "surrogatepass")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return UndecodedText(raw)


def short_str(value: bytes) -> tuple[int, str]:
    """pamqp's short string, with `UndecodedText` where pamqp raises."""
    try:
        length = value[0]
    except IndexError as err:
        raise ValueError("Could not unpack short string value") from err
    return length + 1, _text(bytes(value[1 : length + 1]))


def timestamp(value: bytes) -> tuple[int, dt.datetime | int]:
    """pamqp's timestamp (larger than 2^32-1 read as milliseconds), never raising on range."""
    try:
        raw = common.Struct.timestamp.unpack(value[0:8])[0]
    except struct.error as err:
        raise ValueError("Could not unpack timestamp value") from err
    seconds = raw / 1000.0 if raw > _MILLISECONDS_FROM else raw
    try:
        stamp = AmqpTimestamp.fromtimestamp(seconds, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        return 8, OutOfRangeTimestamp(raw)
    stamp.raw = raw
    return 8, stamp


def nested_table(value: bytes) -> tuple[int, Any]:
    """A table inside a table or array: depth-bounded."""
    return _nested(b"F", value, field_table)  # type: ignore[no-any-return]


def nested_array(value: bytes) -> tuple[int, Any]:
    """An array inside a table or array: depth-bounded (pamqp's own reader recurses)."""
    return _nested(b"A", value, _field_array)  # type: ignore[no-any-return]


def _field_array(value: bytes) -> tuple[int, list[Any]]:
    try:
        length = common.Struct.integer.unpack(value[0:4])[0]
    except struct.error as err:
        raise ValueError("Could not unpack data") from err
    offset, end = 4, 4 + length
    if end > len(value):
        raise ValueError("Field array length exceeds available data")
    data = []
    while offset < end:
        consumed, result = decode.embedded_value(value[offset:])
        offset += consumed
        data.append(result)
    return offset, data


def field_table(value: bytes) -> tuple[int, dict[str, Any]]:
    """pamqp's field table, with `UndecodedText` for names that are not UTF-8."""
    try:
        length = common.Struct.integer.unpack(value[0:4])[0]
    except struct.error as err:
        raise ValueError("Could not unpack data") from err
    offset = 4
    end = offset + length
    if end > len(value):
        raise ValueError("Field table length exceeds available data")
    data: dict[str, Any] = {}
    while offset < end:
        key_length = value[offset]
        offset += 1
        if offset + key_length > end:
            raise ValueError("Field table key length exceeds data")
        key = _text(bytes(value[offset : offset + key_length]))
        offset += key_length
        consumed, result = decode.embedded_value(value[offset:])
        offset += consumed
        data[key] = result
    return end, data


def _content_header_unmarshal(self: header.ContentHeader, data: bytes) -> None:
    """Frame fields as pamqp reads them; properties leniently, raw bytes always kept."""
    self.class_id, self.weight, self.body_size = struct.unpack(">HHQ", data[0:12])
    raw = bytes(data[12:])
    self.raw_properties = raw  # type: ignore[attr-defined]
    self.undecodable = None  # type: ignore[attr-defined]
    try:
        offset, flags = self._get_flags(raw)
        self.properties.unmarshal(flags, raw[offset:])
    except Exception as exc:  # a frame nothing can read: keep its bytes, never a loop
        self.properties = commands.Basic.Properties()
        self.undecodable = f"{type(exc).__name__}: {exc}"[:300]  # type: ignore[attr-defined]


_REPLACED: dict[str, Callable[..., Any]] = {}


def installed() -> bool:
    return decode.METHODS.get("shortstr") is short_str


def install() -> None:
    """Replace pamqp's decoders (idempotent). Call before any connection reads frames."""
    if installed():
        return
    found = version("pamqp")
    if found != PAMQP_VERSION:
        log.warning(
            "pamqp %s is installed; lenient decoding was written for %s", found, PAMQP_VERSION
        )
    _REPLACED.update(
        shortstr=decode.METHODS["shortstr"],
        timestamp=decode.METHODS["timestamp"],
        table=decode.METHODS["table"],
        content_header=header.ContentHeader.unmarshal,
    )
    decode.METHODS["shortstr"] = short_str
    decode.METHODS["timestamp"] = timestamp
    decode.METHODS["table"] = field_table
    decode.TABLE_MAPPING[b"T"] = timestamp
    decode.TABLE_MAPPING[b"F"] = nested_table
    decode.TABLE_MAPPING[b"A"] = nested_array
    header.ContentHeader.unmarshal = _content_header_unmarshal  # type: ignore[method-assign]


def original(name: str) -> Callable[..., Any]:
    """pamqp's own decoder that `install` replaced (tests pin what pamqp still refuses)."""
    if name in _REPLACED:
        return _REPLACED[name]
    pamqp_own: dict[str, Callable[..., Any]] = {
        "shortstr": decode.short_str,
        "timestamp": decode.timestamp,
        "table": decode.field_table,
        "content_header": header.ContentHeader.unmarshal,
    }
    return pamqp_own[name]
