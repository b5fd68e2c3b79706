"""Rows of recorded events for the aggregate tests, read by the recorder's own extraction."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from eventscope.backend.aggregates.history import RecordedEvent
from eventscope.backend.envelope import extract, parse_json_object

T0 = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)


def seed_event(
    version: int | None,
    event_type: str,
    data: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    timestamp: str | None = None,
    aggregate_id: str = "order_123",
    aggregate_type: str = "Order",
) -> dict[str, Any]:
    """A body shaped like the seed's event-sourced events."""
    body: dict[str, Any] = {
        "id": event_id or f"evt_{event_type}_{version}",
        "type": "order.event",
        "timestamp": timestamp or f"2025-10-22T14:30:{(version or 0) % 60:02d}.000Z",
        "aggregateId": aggregate_id,
        "aggregateType": aggregate_type,
        "eventType": event_type,
        "data": data if data is not None else {},
        "metadata": {"source": "order-service", "version": "1.0", "correlationId": "req_abc"},
    }
    if version is not None:
        body["version"] = version
    return body


def recorded(
    row_id: int,
    body: dict[str, Any] | bytes,
    *,
    received_at: dt.datetime | None = None,
    dead_letter: str | None = None,
    routing_key: str = "order.event",
    truncated_to: int | None = None,
) -> RecordedEvent:
    """One stored row, as the recorder would have stored `body`; received `row_id` seconds
    after T0 unless told."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    _, parsed = parse_json_object(raw)
    found = extract(parsed, {}, None)
    stored = raw if truncated_to is None else raw[:truncated_to]
    return RecordedEvent(
        row_id=row_id,
        received_at=received_at or T0 + dt.timedelta(seconds=row_id),
        body=stored,
        event_id=found["event_id"],
        event_type=found["event_type"],
        aggregate_type=found["aggregate_type"],
        aggregate_id=found["aggregate_id"],
        version=found["aggregate_version"],
        occurred_at=found["occurred_at"],
        commit_seq=row_id,
        dead_letter=dead_letter,
        routing_key=routing_key,
        body_size=len(raw),
        body_truncated=truncated_to is not None,
    )


def dlq_wrapper(original: dict[str, Any], routing_key: str = "order.event") -> dict[str, Any]:
    """The seed's dead letter: `{originalEvent, error, retries}` under `dlq.<key>`."""
    return {"originalEvent": original, "error": f"consumer of {routing_key} failed", "retries": 3}
