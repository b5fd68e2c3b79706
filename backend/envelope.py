"""AMQP delivery → one storable row: raw bytes kept, well-known fields extracted.

Pure functions only. Extraction never raises: a field that is missing, of the wrong type or
unparseable becomes None. Where sources disagree the precedence below applies (first wins); it
is documented in docs/architecture.md. These are the default rules (`extraction.DEFAULT_RULES`);
a rules file (`EVENTSCOPE_EXTRACTION_RULES`, backend/extraction.py) can change them.

- event_id:       body `id`, body `eventId`, AMQP `message_id`, header `x-event-id`/`event-id`
- event_type:     body `eventType`, body `type`, AMQP `type`, header `x-event-type`/`event-type`
- correlation_id: body `metadata.correlationId`, body `correlationId`/`correlation_id`,
                  header `x-correlation-id`/`correlation-id`/`correlation_id`/`correlationId`,
                  AMQP `correlation_id`
- causation_id:   body `metadata.causationId`, body `causationId`/`causation_id`,
                  header `x-causation-id`/`causation-id`/`causation_id`/`causationId`
- aggregate:      body `aggregateType`/`aggregateId` (or the same in `metadata`);
                  version: body `version` or `aggregateVersion` when it is an integer
- source:         body `metadata.source`, body `source`, AMQP `app_id`
- trace_id:       the trace id of a W3C `traceparent` header
- occurred_at:    body `timestamp`/`occurredAt`/`occurred_at`, `metadata.timestamp`,
                  AMQP `timestamp`

A seed-style dead letter (`{originalEvent, error, retries}`) is described by its original event.
Ids are kept whole: the text column holds a display form (`id_text`), the `*_key` column a hash
of the full original (`id_key`), which is what indexes and exact lookups use.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from eventscope.backend.amqp_lenient import UndecodedText, wire_bytes
from eventscope.backend.extraction import DEFAULT_EXTRACTOR, Extractor
from eventscope.backend.extraction import Original as Original  # re-exported: it lived here
from eventscope.backend.extraction import id_original as _original
from eventscope.backend.extraction import trace_id as trace_id  # re-exported: it lived here
from eventscope.backend.fieldtable import dumps, encode_table, encode_value

MAX_ID_CHARS = 1024  # display form of an id; the key covers the whole value
MAX_TEXT_CHARS = 512  # content type and other short descriptive text
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
    raw_properties: bytes | None = None  # the content header's property bytes, as received
    problem: str | None = None  # set when the properties could not be decoded


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


# Headers the broker adds on the way from the exchange to the tap queue, different on each
# delivery of the same message: a quorum queue's `x-delivery-count` (on a redelivery, every
# version) and `x-acquired-count` (4.3 and later). They are stored, but are not part of the
# message's identity. Headers added before the exchange routes (`x-death` and the
# `x-first-death-*` / `x-last-death-*` of a dead letter, a federation's `x-received-from`, a
# shovel's `x-shovelled`) are the same in every queue the message reaches: they stay.
BROKER_ADDED_HEADERS = frozenset({"x-delivery-count", "x-acquired-count"})


def identity_headers_json(headers: Mapping[str, Any] | None, headers_json: str) -> str:
    """The headers that identify a message, as typed JSON: `headers_json` without the
    broker-added headers (encoded again only when one is there)."""
    if not headers or ("x-delivery-count" not in headers and "x-acquired-count" not in headers):
        return headers_json
    return encode_table({k: v for k, v in headers.items() if k not in BROKER_ADDED_HEADERS})


def fingerprint(
    exchange: str, routing_key: str, props_json: str, headers_json: str, body: bytes
) -> bytes:
    """Identity of one publish: what a redelivery repeats exactly (redelivered flag excluded;
    `headers_json` without the broker-added headers, `identity_headers_json`)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(wire_bytes(exchange))
    h.update(b"\x00\x01")
    h.update(wire_bytes(routing_key))
    h.update(b"\x00\x01")
    h.update(props_json.encode("ascii"))  # typed JSON is ASCII
    h.update(b"\x00\x01")
    h.update(headers_json.encode("ascii"))
    h.update(b"\x00\x01")
    h.update(body)
    return h.digest()


_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


@functools.lru_cache(maxsize=8192)  # types and correlation ids repeat: a hit costs ~0.1 µs
def id_key(value: Original | None) -> int | None:
    """A 64-bit key of an id's full original value: what indexes hold and lookups match."""
    if value is None:
        return None
    raw = value.encode("utf-8", "surrogatepass") if type(value) is str else value
    return _from_bytes(_blake2b(raw, digest_size=8).digest(), "big", signed=True)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=8192)
def aggregate_key(aggregate_type: Original | None, aggregate_id: Original | None) -> int | None:
    """The key of an aggregate: its type and id together (no id, no aggregate)."""
    if aggregate_id is None:
        return None
    kind = b"" if aggregate_type is None else aggregate_type
    kind = kind.encode("utf-8", "surrogatepass") if type(kind) is str else kind
    ident = (
        aggregate_id.encode("utf-8", "surrogatepass") if type(aggregate_id) is str else aggregate_id
    )
    prefix = b"\xff\xff\xff\xff" if aggregate_type is None else len(kind).to_bytes(4, "big")
    digest = _blake2b(prefix + kind + ident, digest_size=8).digest()  # type: ignore[operator]
    return _from_bytes(digest, "big", signed=True)


def id_text(value: Original | None) -> str | None:
    """The display form stored in an id's text column: NUL made visible, capped."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return db_text(value, MAX_ID_CHARS)


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


# Epoch numbers: the unit is guessed from the magnitude, as log pipelines do. Up to 1e11 is
# seconds (to year 5138), then milliseconds, microseconds, nanoseconds.
_EPOCH_DIVISORS = ((1e11, 1), (1e14, 1e3), (1e17, 1e6), (float("inf"), 1e9))


def parse_time(value: Any) -> dt.datetime | None:
    """ISO 8601 text or epoch s/ms/µs/ns → aware UTC datetime; None when it is not a time or
    the UTC instant falls outside years 1–9999 (e.g. year 1 at +14:00)."""
    try:
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, str) and 10 <= len(value) <= 40:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return None
            divisor = next(d for limit, d in _EPOCH_DIVISORS if abs(value) < limit)
            if isinstance(value, int):
                whole, rest = divmod(value, int(divisor))
                parsed = dt.datetime.fromtimestamp(whole, dt.UTC) + dt.timedelta(
                    microseconds=rest * 1_000_000 // int(divisor)
                )
            else:
                parsed = dt.datetime.fromtimestamp(value / divisor, dt.UTC)
        else:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None


def extract(
    body_json: Any,
    props: Mapping[str, Any],
    headers: Mapping[str, Any] | None,
    extractor: Extractor = DEFAULT_EXTRACTOR,
) -> dict[str, Any]:
    """The indexed fields of one event, following the extraction rules (the module's
    precedence unless a rules file changed them): display text, keys, and
    `occurred_at_unparsed` (the value) when a time was there but unusable."""
    found = extractor(body_json, props, headers)
    event_type, correlation = found["event_type"], found["correlation_id"]
    causation, source, trace = found["causation_id"], found["source"], found["trace_id"]
    kind, ident = found["aggregate_type"], found["aggregate_id"]
    when = found["occurred_at"]
    occurred = parse_time(when)
    return {
        "event_id": id_text(found["event_id"]),
        "event_type": id_text(event_type),
        "correlation_id": id_text(correlation),
        "causation_id": id_text(causation),
        "aggregate_type": id_text(kind),
        "aggregate_id": id_text(ident),
        "event_type_key": id_key(event_type),
        "correlation_key": id_key(correlation),
        "aggregate_key": aggregate_key(kind, ident),
        "source": id_text(source),
        "source_key": id_key(source),
        "trace_id": trace,
        "trace_key": id_key(trace),
        "aggregate_version": found["aggregate_version"],
        "occurred_at": occurred,
        "occurred_at_unparsed": when if when is not None and occurred is None else None,
    }


ID_FIELDS = (
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "aggregate_type",
    "aggregate_id",
)


def extract_originals(
    body_json: Any,
    props: Mapping[str, Any],
    headers: Mapping[str, Any] | None,
    extractor: Extractor = DEFAULT_EXTRACTOR,
) -> dict[str, Any]:
    """The extracted values as they came (ids whole, the time candidate unparsed)."""
    return extractor(body_json, props, headers)


EMPTY_FIELDS = dict.fromkeys(
    (
        *ID_FIELDS,
        "aggregate_version",
        "occurred_at",
        "occurred_at_unparsed",
        "event_type_key",
        "correlation_key",
        "aggregate_key",
        "source",
        "source_key",
        "trace_id",
        "trace_key",
    )
)


def body_document(body: bytes, props: Mapping[str, Any]) -> tuple[str, Any]:
    """The body's kind and parsed JSON, as extraction sees it (also when re-extracting)."""
    if props.get("content_encoding") not in (None, "", "identity", "utf-8", "utf8"):
        return "binary", None  # compressed or otherwise encoded: never interpreted
    return parse_json_object(body)


def to_row(
    delivery: Delivery,
    max_body_bytes: int,
    *,
    interpret: bool = True,
    extractor: Extractor = DEFAULT_EXTRACTOR,
) -> dict[str, Any]:
    """Everything stored for one delivery, except the observation bookkeeping.

    `interpret=False` stores the bytes and delivery fields only: the recorder's last resort
    when interpreting a message failed in a way nobody foresaw. `extractor`: the compiled
    extraction rules (backend/extraction.py)."""
    props = delivery.properties
    props_json = dumps({k: encode_value(v) for k, v in props.items()}) if props else "{}"
    headers_json = encode_table(dict(delivery.headers) if delivery.headers else None)
    body = delivery.body
    kind, parsed = body_document(body, props) if interpret else ("binary", None)
    row = extract(parsed, props, delivery.headers, extractor) if interpret else dict(EMPTY_FIELDS)
    exchange = db_text(delivery.exchange) or ""
    routing_key = db_text(delivery.routing_key) or ""
    altered: dict[str, Any] = {}
    if exchange != delivery.exchange or isinstance(delivery.exchange, UndecodedText):
        altered["exchange"] = delivery.exchange
    if routing_key != delivery.routing_key or isinstance(delivery.routing_key, UndecodedText):
        altered["routing_key"] = delivery.routing_key
    unparsed = row.pop("occurred_at_unparsed")
    if unparsed is not None:
        altered["occurred_at"] = unparsed
    message_id = _original(props.get("message_id"))
    row.update(
        fingerprint=fingerprint(
            delivery.exchange,
            delivery.routing_key,
            props_json,
            identity_headers_json(delivery.headers, headers_json),
            body,
        ),
        received_at=delivery.received_at,
        exchange=exchange,
        routing_key=routing_key,
        redelivered=delivery.redelivered,
        message_id=id_text(message_id),
        message_id_key=id_key(message_id),
        content_type=db_text(props.get("content_type"), MAX_TEXT_CHARS),
        body_kind=kind,
        body_size=len(body),
        body_truncated=len(body) > max_body_bytes,
        body=body[:max_body_bytes] if len(body) > max_body_bytes else body,
        properties=props_json,
        headers=headers_json,
        originals=encode_table(altered) if altered else None,
        dead_letter=dead_letter_kind(delivery.routing_key, delivery.headers) if interpret else None,
        raw_properties=delivery.raw_properties,
        problem=delivery.problem,
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
