"""The extraction code as it was before extraction rules existed (backend/envelope.py at the
time), frozen here verbatim as the oracle: the default rules must give exactly what it gave."""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eventscope.backend.amqp_lenient import UndecodedText
from eventscope.backend.envelope import Original, aggregate_key, id_key, id_text, parse_time

_HEADER_EVENT_ID = ("x-event-id", "event-id", "event_id", "eventId")
_HEADER_EVENT_TYPE = ("x-event-type", "event-type", "event_type", "eventType")
_HEADER_CORRELATION = ("x-correlation-id", "correlation-id", "correlation_id", "correlationId")
_HEADER_CAUSATION = ("x-causation-id", "causation-id", "causation_id", "causationId")
_HEADER_TRACEPARENT = ("traceparent", "Traceparent", "TRACEPARENT")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id(traceparent: Any) -> str | None:
    """The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), else None."""
    if isinstance(traceparent, bytes | bytearray):
        traceparent = bytes(traceparent).decode("ascii", "replace")
    if not isinstance(traceparent, str):
        return None
    found = _TRACEPARENT.match(traceparent.strip().lower())
    if found is None or found.group(1) == "0" * 32:
        return None
    return found.group(1)


def _original(value: Any) -> Original | None:
    """An id candidate as its original value, or None when it cannot be an id."""
    if type(value) is str:  # the common case first: this runs for every candidate
        return value or None
    if value is None:
        return None
    if isinstance(value, UndecodedText):
        return value.raw
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, bytes | bytearray) and value:
        return bytes(value)
    return None


def _first(*candidates: Any) -> Original | None:
    for candidate in candidates:
        found = _original(candidate)
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


def _present(*candidates: Any) -> Any:
    """The first candidate that is there at all (0 and "" count: they are values)."""
    return next((c for c in candidates if c is not None), None)


def extract(
    body_json: Any, props: Mapping[str, Any], headers: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The indexed fields of one event, following the module's precedence rules: display
    text, keys, and `occurred_at_unparsed` (the value) when a time was there but unusable."""
    found = extract_originals(body_json, props, headers)
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


def extract_originals(
    body_json: Any, props: Mapping[str, Any], headers: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The extracted values as they came (ids whole, the time candidate unparsed)."""
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
        "source": _first(meta.get("source"), doc.get("source"), props.get("app_id")),
        "trace_id": trace_id(_from_headers(headers, _HEADER_TRACEPARENT)),
        "occurred_at": _present(
            doc.get("timestamp"),
            doc.get("occurredAt"),
            doc.get("occurred_at"),
            meta.get("timestamp"),
            props.get("timestamp"),
        ),
    }
