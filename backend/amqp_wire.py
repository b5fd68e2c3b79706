"""AMQP content-header properties as bytes: split them, rebuild them, byte for byte.

The recorder keeps every message's raw property bytes (see `amqp_lenient`). A replay must send
what was received — pamqp would re-encode a millisecond timestamp as seconds, a double as a
32-bit float, an int64 5 as an 8-bit int, sort header names, and cannot encode non-UTF-8 text —
so replays work on these bytes: `split_properties` cuts them into one raw chunk per property
(in wire order), `join_properties` puts chunks back together, and the field encoders below
build headers that are appended without touching the others.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

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
_FIXED = {"octet": 1, "timestamp": 8}


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


def split_properties(raw: bytes) -> dict[str, bytes]:
    """One raw chunk per present property, keyed by name, in wire order.

    Raises ValueError when the bytes are not a well-formed property list."""
    if len(raw) < 2:
        raise ValueError("property flags are truncated")
    (flags,) = struct.unpack(">H", raw[:2])
    if flags & 1:
        raise ValueError("more than one property flag word is not defined by AMQP 0-9-1")
    offset = 2
    chunks: dict[str, bytes] = {}
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
        chunks[name] = raw[offset : offset + size]
        offset += size
    if offset != len(raw):
        raise ValueError(f"{len(raw) - offset} bytes after the last property")
    return chunks


def join_properties(chunks: dict[str, bytes]) -> bytes:
    """The inverse of `split_properties`: flags, then the chunks in AMQP order."""
    known = {name for name, _, _ in PROPERTIES}
    unknown = set(chunks) - known
    if unknown:
        raise ValueError(f"not AMQP properties: {sorted(unknown)}")
    flags = 0
    parts = []
    for name, bit, _ in PROPERTIES:
        if name in chunks:
            flags |= bit
            parts.append(chunks[name])
    return struct.pack(">H", flags) + b"".join(parts)
