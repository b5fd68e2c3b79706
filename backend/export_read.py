"""Reading an export back (backend/export.py): what to publish to send each event again.

`read_export` turns NDJSON (read line by line, constant memory) or a JSON array into
`ExportedMessage`s: exchange and routing key as they were on the wire (`str`, or `bytes` when
they were not UTF-8), the properties and headers decoded from their typed form, the body bytes,
and the property bytes as received. `exact` says whether these are the bytes that were
published; when it is false, `why_not` says what is missing (a viewer's masked export, a body
cut at the store's cap, a row stored reduced, a row recorded before raw property bytes were
kept). Publishing `raw_properties` with `backend.amqp_wire.RawProperties` (and a non-UTF-8
routing key with `WireText`) sends the message byte for byte. Pure: no I/O beyond the stream.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from eventscope.backend.export import render_compact
from eventscope.backend.fieldtable import decode_value

Wire = str | bytes


@dataclass(frozen=True)
class ExportedMessage:
    exchange: Wire
    routing_key: Wire
    properties: dict[str, Any]  # AMQP properties (no headers), decoded values
    headers: dict[str, Any]  # the header table, decoded values
    body: bytes
    raw_properties: bytes | None  # the content header's property bytes, as received
    exact: bool  # these are the bytes that were published
    why_not: str | None
    record: dict[str, Any]


def body_bytes(record: dict[str, Any]) -> bytes:
    """The body a record carries, as bytes (empty when a viewer's export withheld it)."""
    encoding = record.get("body_encoding")
    if encoding == "json":
        return render_compact(record["body"])
    if encoding == "text":
        return str(record["body_text"]).encode("utf-8")
    if encoding == "base64":
        return base64.b64decode(record["body_base64"], validate=True)
    if encoding == "withheld":
        return b""
    raise ValueError(f"unknown body_encoding {encoding!r}")


def _decoded(table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        return {}
    return {str(name): decode_value(value) for name, value in table.items()}


def _wire(record: dict[str, Any], originals: dict[str, Any], name: str) -> Wire:
    """The exchange or routing key as sent: its original when storing had to alter it."""
    if name in originals:
        value = originals[name]
        if isinstance(value, str | bytes):
            return value
    return str(record.get(name) or "")


def _not_exact(record: dict[str, Any]) -> str | None:
    if record.get("masked"):
        return "masked for a viewer"
    if str(record.get("problem") or "").startswith("stored reduced"):
        return "stored reduced: the exchange and routing key may be escaped"
    if record.get("raw_properties") is None:
        return "no raw property bytes were kept for this event"
    if record.get("body_truncated"):
        return "the body was stored truncated"
    if record.get("body_cut") or record.get("body_encoding") == "withheld":
        return "the body was cut or withheld"
    return None


def message(record: dict[str, Any]) -> ExportedMessage:
    """One export record as what to publish again."""
    originals = _decoded(record.get("originals"))
    raw = record.get("raw_properties")
    why_not = _not_exact(record)
    return ExportedMessage(
        exchange=_wire(record, originals, "exchange"),
        routing_key=_wire(record, originals, "routing_key"),
        properties=_decoded(record.get("properties")),
        headers=_decoded(record.get("headers")),
        body=body_bytes(record),
        raw_properties=base64.b64decode(raw, validate=True) if isinstance(raw, str) else None,
        exact=why_not is None,
        why_not=why_not,
        record=record,
    )


def read_records(stream: bytes | IO[bytes] | Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The records of an export (the whole bytes, a binary file, or its lines): NDJSON line by
    line, or a JSON array (read whole)."""
    lines = iter(stream.splitlines(keepends=True) if isinstance(stream, bytes) else stream)
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith(b"["):
            rest = b"".join([line, *lines])
            document = json.loads(rest)
            if not isinstance(document, list):
                raise ValueError("a JSON export is an array of records")
            yield from document
            return
        yield json.loads(text)


def read_export(stream: bytes | IO[bytes] | Iterable[bytes]) -> Iterator[ExportedMessage]:
    """Every event of an export, in the export's order (commit order)."""
    for item in read_records(stream):
        if not isinstance(item, dict):
            raise ValueError("an export record is a JSON object")
        yield message(item)
