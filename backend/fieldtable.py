"""Typed encoding of decoded AMQP field values (headers, properties) as JSON-safe data.

pamqp (with `amqp_lenient`) decodes a header table into Python values; each value is tagged
with its type here, so `decode_table(encode_table(t)) == t`: the decoded values are kept
exactly. The result is ASCII JSON (`ensure_ascii`), so NUL bytes and lone surrogates survive
Postgres. This is what pages, the API, search and the fingerprint read.

Tags: s str, b bytes (text that was not UTF-8), x bytearray (AMQP byte array), i int,
f float, d decimal, t bool, T timestamp (ISO, UTC), Ti timestamp no datetime can hold (the wire
integer), F table, A array, V void, R a table or array nested too deep to decode (its tag and
wire bytes, base64).

Not lossless for the wire: an int8 5 and an int64 5 are both `i`, a 32-bit float and a double
both `f`; `T` is the instant (pamqp reads a value above 2^32-1 as milliseconds; which unit was
sent is gone); `t` is true or false whatever octet was sent; pamqp reads `L` (uint64) as signed
(2^64-1 becomes -1); a name that occurs twice keeps its last value; a name that is not UTF-8
becomes escaped text; and pamqp, encoding values, picks its own widths and sorts the names.
So this JSON is never what a replay sends: the wire bytes are in each row's `raw_properties`
(the content header's property bytes as received), and `backend.amqp_wire` reads, re-encodes
and extends those byte for byte.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

from eventscope.backend.amqp_lenient import OutOfRangeTimestamp, TooDeep, UndecodedText

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
    if isinstance(value, TooDeep):
        return ["R", base64.b64encode(value).decode("ascii")]
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
    if tag == "R":
        return TooDeep(base64.b64decode(value))
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
    "R": "nested too deep (raw)",
    "F": "table",
    "A": "array",
    "V": "void",
    "?": "unknown",
}
