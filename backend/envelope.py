"""AMQP delivery → one storable row: raw bytes kept, well-known fields extracted.

Pure functions only. Extraction never raises: a field that is missing, of the wrong type or
unparseable becomes None. Where sources disagree the precedence below applies (first wins); it
is documented in docs/architecture.md.

- event_id:       body `id`, body `eventId`, AMQP `message_id`, header `x-event-id`/`event-id`
- event_type:     body `eventType`, body `type`, AMQP `type`, header `x-event-type`/`event-type`
- correlation_id: body `metadata.correlationId`, body `correlationId`/`correlation_id`,
                  header `x-correlation-id`/`correlation-id`/`correlation_id`/`correlationId`,
                  AMQP `correlation_id`
- causation_id:   body `metadata.causationId`, body `causationId`/`causation_id`,
                  header `x-causation-id`/`causation-id`/`causation_id`/`causationId`
- aggregate:      body `aggregateType`/`aggregateId` (or the same in `metadata`);
                  version: body `version` or `aggregateVersion` when it is an integer
- occurred_at:    body `timestamp`/`occurredAt`/`occurred_at`, `metadata.timestamp`,
                  AMQP `timestamp`

A seed-style dead letter (`{originalEvent, error, retries}`) is described by its original event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from backend.fieldtable import dumps, encode_table, encode_value

MAX_INDEXED_CHARS = 512
PROPERTY_NAMES = (
    "content_type",
    "content_encoding",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "message_type",
    "user_id",
    "app_id",
    "cluster_id",
)
_HEADER_EVENT_ID = ("x-event-id", "event-id", "event_id", "eventId")
_HEADER_EVENT_TYPE = ("x-event-type", "event-type", "event_type", "eventType")
_HEADER_CORRELATION = ("x-correlation-id", "correlation-id", "correlation_id", "correlationId")
_HEADER_CAUSATION = ("x-causation-id", "causation-id", "causation_id", "causationId")


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the broker handed us, decoded by pamqp but otherwise untouched."""

    exchange: str
    routing_key: str
    redelivered: bool
    properties: Mapping[str, Any]  # PROPERTY_NAMES → value, without headers
    headers: Mapping[str, Any] | None
    body: bytes
    received_at: dt.datetime


def properties_from_header(props: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Split a pamqp Basic.Properties into (non-empty properties, headers)."""
    out = {}
    for name in PROPERTY_NAMES:
        value = getattr(props, name, None)
        if value is not None:
            out[name] = value
    return out, getattr(props, "headers", None)


def db_text(value: str | None, limit: int | None = None) -> str | None:
    """Text any database accepts: NUL shown as ␀, lone surrogates escaped, length capped."""
    if value is None:
        return None
    if value.isascii() and "\x00" not in value:  # the common case: nothing to fix
        return value if limit is None or len(value) <= limit else value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "\u2400")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return value


def fingerprint(
    exchange: str, routing_key: str, props_json: str, headers_json: str, body: bytes
) -> bytes:
    """Identity of one publish: what a redelivery repeats exactly (redelivered flag excluded)."""
    h = hashlib.blake2b(digest_size=16)
    for part in (exchange, routing_key, props_json, headers_json):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00\x01")
    h.update(body)
    return h.digest()


_LONG_NUMBER = re.compile(rb"\d{20}")


def _loads(body: bytes) -> Any:
    """orjson is four times faster on the hot path. Where it differs from Python's json, the
    latter decides: orjson refuses NaN and lone surrogates, and reads integers past 64 bits
    (20 digits and more) as floats, so bodies with such numbers go straight to json."""
    if _LONG_NUMBER.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def parse_json_object(body: bytes) -> tuple[str, Any]:
    """Classify a body as json/text/binary/empty and return the parsed JSON when it is JSON."""
    if not body:
        return "empty", None
    first = body[:64].lstrip()[:1]  # never copy a large body just to look at its start
    if not first:
        first = body.lstrip()[:1]  # 64 bytes of whitespace first: rare, pay the copy
    if first in (b"{", b"["):
        try:
            return "json", _loads(body)
        except (ValueError, RecursionError):
            pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "binary", None
    if "\x00" in text:
        return "binary", None
    return "text", None


def _str_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return db_text(value, MAX_INDEXED_CHARS)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, bytes | bytearray) and value:
        return db_text(bytes(value).decode("utf-8", "backslashreplace"), MAX_INDEXED_CHARS)
    return None


def _first(*candidates: Any) -> str | None:
    for candidate in candidates:
        found = _str_id(candidate)
        if found is not None:
            return found
    return None


def _from_headers(headers: Mapping[str, Any] | None, names: tuple[str, ...]) -> Any:
    if not headers:
        return None
    for name in names:
        if name in headers:
            return headers[name]
    return None


def _version(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def parse_time(value: Any) -> dt.datetime | None:
    """ISO 8601 text, epoch seconds or epoch milliseconds → aware UTC datetime, else None."""
    try:
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, str) and 10 <= len(value) <= 40:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if value > 1e11 else value
            parsed = dt.datetime.fromtimestamp(seconds, dt.UTC)
        else:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None


def extract(
    body_json: Any, props: Mapping[str, Any], headers: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The indexed fields of one event, following the module's precedence rules."""
    doc: dict[str, Any] = body_json if isinstance(body_json, dict) else {}
    original = doc.get("originalEvent")
    if isinstance(original, dict) and "type" not in doc and "eventType" not in doc:
        doc = original
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    aggregate_id = _first(doc.get("aggregateId"), meta.get("aggregateId"))
    version = _version(doc.get("aggregateVersion"))
    if version is None and aggregate_id is not None:
        version = _version(doc.get("version"))
    return {
        "event_id": _first(
            doc.get("id"),
            doc.get("eventId"),
            props.get("message_id"),
            _from_headers(headers, _HEADER_EVENT_ID),
        ),
        "event_type": _first(
            doc.get("eventType"),
            doc.get("type"),
            props.get("message_type"),
            _from_headers(headers, _HEADER_EVENT_TYPE),
        ),
        "correlation_id": _first(
            meta.get("correlationId"),
            doc.get("correlationId"),
            doc.get("correlation_id"),
            _from_headers(headers, _HEADER_CORRELATION),
            props.get("correlation_id"),
        ),
        "causation_id": _first(
            meta.get("causationId"),
            doc.get("causationId"),
            doc.get("causation_id"),
            _from_headers(headers, _HEADER_CAUSATION),
        ),
        "aggregate_type": _first(doc.get("aggregateType"), meta.get("aggregateType")),
        "aggregate_id": aggregate_id,
        "aggregate_version": version,
        "occurred_at": parse_time(
            doc.get("timestamp")
            or doc.get("occurredAt")
            or doc.get("occurred_at")
            or meta.get("timestamp")
            or props.get("timestamp")
        ),
    }


EMPTY_FIELDS = dict.fromkeys(
    (
        "event_id",
        "event_type",
        "correlation_id",
        "causation_id",
        "aggregate_type",
        "aggregate_id",
        "aggregate_version",
        "occurred_at",
    )
)


def to_row(delivery: Delivery, max_body_bytes: int, *, interpret: bool = True) -> dict[str, Any]:
    """Everything stored for one delivery, except the observation bookkeeping.

    `interpret=False` stores the bytes and delivery fields only: the recorder's last resort
    when interpreting a message failed in a way nobody foresaw."""
    props = delivery.properties
    props_json = dumps({k: encode_value(v) for k, v in props.items()}) if props else "{}"
    headers_json = encode_table(dict(delivery.headers) if delivery.headers else None)
    body = delivery.body
    kind, parsed = parse_json_object(body) if interpret else ("binary", None)
    if props.get("content_encoding") not in (None, "", "identity", "utf-8", "utf8"):
        kind, parsed = "binary", None  # compressed or otherwise encoded: never interpreted
    row = extract(parsed, props, delivery.headers) if interpret else dict(EMPTY_FIELDS)
    exchange = db_text(delivery.exchange) or ""
    routing_key = db_text(delivery.routing_key) or ""
    altered = {}
    if exchange != delivery.exchange:
        altered["exchange"] = delivery.exchange
    if routing_key != delivery.routing_key:
        altered["routing_key"] = delivery.routing_key
    row.update(
        fingerprint=fingerprint(
            delivery.exchange, delivery.routing_key, props_json, headers_json, body
        ),
        received_at=delivery.received_at,
        exchange=exchange,
        routing_key=routing_key,
        redelivered=delivery.redelivered,
        message_id=_str_id(props.get("message_id")),
        content_type=db_text(props.get("content_type"), MAX_INDEXED_CHARS),
        body_kind=kind,
        body_size=len(body),
        body_truncated=len(body) > max_body_bytes,
        body=body[:max_body_bytes] if len(body) > max_body_bytes else body,
        properties=props_json,
        headers=headers_json,
        originals=dumps(altered) if altered else None,
        dead_letter=dead_letter_kind(delivery.routing_key, delivery.headers) if interpret else None,
    )
    return row


def dead_letter_kind(routing_key: str, headers: Mapping[str, Any] | None) -> str | None:
    """How a message was dead-lettered: RabbitMQ's `x-death`, the seed's `dlq.<key>`, or not."""
    if headers and "x-death" in headers:
        return "x-death"
    if routing_key.startswith("dlq."):
        return "dlq-key"
    return None


def json_preview(body: bytes, kind: str) -> str | None:
    """Pretty-printed JSON for display, or None when the body is not (parseable) JSON."""
    if kind != "json":
        return None
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
