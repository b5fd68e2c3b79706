"""Lossless, typed encoding of AMQP field values (headers, properties) as JSON-safe data.

pamqp decodes a header table into Python values; each value is tagged with its type here so
that decoding gives back exactly what pamqp produced, and a replay can republish it unchanged.
The result is ASCII JSON (`ensure_ascii`), so NUL bytes and lone surrogates survive Postgres.

Tags: s str, b bytes (text that was not UTF-8), x bytearray (AMQP byte array), i int,
f float, d decimal, t bool, T timestamp (ISO, UTC), Ti timestamp no datetime can hold (the wire
integer), F table, A array, V void.

The values are lossless; their wire widths are not (an int64 5 and an int8 5 are both `i`):
the recorder keeps each message's raw property bytes for that (backend.amqp_wire).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

from eventscope.backend.amqp_lenient import OutOfRangeTimestamp, UndecodedText

Tagged = list[Any]  # [tag, value]


def encode_value(value: Any) -> Tagged:
    """Tag one decoded AMQP value; unknown types are kept as their repr, never an error."""
    kind = type(value)
    if kind is str:  # the common cases first: this runs for every property of every message
        return ["s", value]
    if kind is int:
        return ["i", value]
    if isinstance(value, UndecodedText):
        return ["b", base64.b64encode(value.raw).decode("ascii")]
    if isinstance(value, OutOfRangeTimestamp):
        return ["Ti", int(value)]
    if isinstance(value, bool):
        return ["t", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, float):
        return ["f", value if math.isfinite(value) else repr(value)]
    if isinstance(value, Decimal):
        return ["d", str(value)]
    if isinstance(value, bytearray):
        return ["x", base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, bytes):
        return ["b", base64.b64encode(value).decode("ascii")]
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return ["T", value.isoformat()]
    if isinstance(value, dict):
        return ["F", {str(k): encode_value(v) for k, v in value.items()}]
    if isinstance(value, list | tuple):
        return ["A", [encode_value(v) for v in value]]
    if value is None:
        return ["V", None]
    return ["?", repr(value)]


def decode_value(tagged: Tagged) -> Any:
    """Inverse of `encode_value`."""
    tag, value = tagged
    if tag in {"t", "i", "s"}:
        return value
    if tag == "f":
        return float(value)
    if tag == "d":
        return Decimal(value)
    if tag == "x":
        return bytearray(base64.b64decode(value))
    if tag == "b":
        return base64.b64decode(value)
    if tag == "T":
        return dt.datetime.fromisoformat(value)
    if tag == "Ti":
        return OutOfRangeTimestamp(value)
    if tag == "F":
        return {k: decode_value(v) for k, v in value.items()}
    if tag == "A":
        return [decode_value(v) for v in value]
    if tag == "V":
        return None
    return value


def encode_table(table: dict[str, Any] | None) -> str:
    """A header table as compact, key-order-preserving ASCII JSON."""
    if not table:
        return "{}"
    return dumps({str(k): encode_value(v) for k, v in table.items()})


def decode_table(text: str) -> dict[str, Any]:
    return {k: decode_value(v) for k, v in json.loads(text).items()}


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def dumps(data: Any) -> str:
    """Compact ASCII JSON (one shared encoder: this runs twice per recorded message)."""
    return _ENCODER.encode(data)


def plain(tagged: Tagged) -> Any:
    """A tagged value as plain JSON data for display and the API (bytes as base64 text)."""
    tag, value = tagged
    if tag == "F":
        return {k: plain(v) for k, v in value.items()}
    if tag == "A":
        return [plain(v) for v in value]
    return value


TYPE_NAMES = {
    "t": "boolean",
    "i": "integer",
    "s": "string",
    "f": "float",
    "d": "decimal",
    "x": "byte array",
    "b": "bytes (not UTF-8)",
    "T": "timestamp",
    "Ti": "timestamp (out of range)",
    "F": "table",
    "A": "array",
    "V": "void",
    "?": "unknown",
}
