"""Envelope: which well-known fields an event gets, and that no body or header can break ingest."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import pickle
from typing import Any

import pytest

from eventscope.backend.envelope import Delivery, db_text, extract, to_row
from eventscope.backend.fieldtable import decode_table

NOW = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)
MAX_BODY = 1024 * 1024

SEED_EVENT: dict[str, Any] = {
    "id": "evt_1",
    "type": "order.created",
    "eventType": "OrderCreated",
    "timestamp": "2025-10-22T14:30:00.123Z",
    "aggregateId": "ord_1",
    "aggregateType": "Order",
    "version": 3,
    "data": {"orderId": "ord_1"},
    "metadata": {
        "source": "order-service",
        "version": "1.0",
        "correlationId": "req_body",
        "causationId": "evt_0",
    },
}


def delivery(
    body: bytes | dict[str, Any] | list[Any] = b"",
    *,
    exchange: str = "events",
    routing_key: str = "order.created",
    redelivered: bool = False,
    properties: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    received_at: dt.datetime = NOW,
) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Delivery(exchange, routing_key, redelivered, properties or {}, headers, raw, received_at)


def row_of(body: bytes | dict[str, Any] | list[Any] = b"", **kwargs: Any) -> dict[str, Any]:
    return to_row(delivery(body, **kwargs), MAX_BODY)


# --- extraction precedence -------------------------------------------------------------------


def test_seed_event_fields_are_extracted() -> None:
    row = row_of(SEED_EVENT)
    assert row["event_id"] == "evt_1"
    assert row["aggregate_type"] == "Order"
    assert row["aggregate_id"] == "ord_1"
    assert row["aggregate_version"] == 3
    assert row["causation_id"] == "evt_0"
    assert row["body_kind"] == "json"
    assert row["dead_letter"] is None


def test_event_type_prefers_body_event_type_over_type() -> None:
    assert row_of(SEED_EVENT)["event_type"] == "OrderCreated"


def test_event_type_falls_back_to_body_type_then_amqp_type_then_header() -> None:
    assert row_of({"type": "order.created"}, properties={"message_type": "amqp"})["event_type"] == (
        "order.created"
    )
    assert (
        row_of({}, properties={"message_type": "amqp"}, headers={"x-event-type": "h"})["event_type"]
        == "amqp"
    )
    assert row_of({}, headers={"x-event-type": "h"})["event_type"] == "h"


def test_event_id_prefers_body_id_then_event_id_then_message_id_then_header() -> None:
    props = {"message_id": "amqp-id"}
    headers = {"x-event-id": "header-id"}
    assert row_of({"id": "a", "eventId": "b"}, properties=props, headers=headers)["event_id"] == "a"
    assert row_of({"eventId": "b"}, properties=props, headers=headers)["event_id"] == "b"
    assert row_of({}, properties=props, headers=headers)["event_id"] == "amqp-id"
    assert row_of({}, headers=headers)["event_id"] == "header-id"


def test_body_metadata_correlation_id_wins_over_amqp_correlation_id() -> None:
    row = row_of(
        SEED_EVENT, properties={"correlation_id": "amqp"}, headers={"x-correlation-id": "h"}
    )
    assert row["correlation_id"] == "req_body"


def test_header_correlation_id_is_used_when_the_body_has_none() -> None:
    row = row_of(
        {"id": "e"}, properties={"correlation_id": "amqp"}, headers={"x-correlation-id": "h"}
    )
    assert row["correlation_id"] == "h"


def test_amqp_correlation_id_is_the_last_resort() -> None:
    assert row_of({"id": "e"}, properties={"correlation_id": "amqp"})["correlation_id"] == "amqp"
    assert row_of(b"plain text", properties={"correlation_id": "amqp"})["correlation_id"] == "amqp"


def test_top_level_body_correlation_id_beats_headers() -> None:
    row = row_of({"correlationId": "body"}, headers={"x-correlation-id": "h"})
    assert row["correlation_id"] == "body"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"aggregateId": "a1", "version": 4}, 4),
        ({"aggregateId": "a1", "aggregateVersion": 9, "version": 4}, 9),
        ({"version": 4}, None),
        ({"aggregateId": "a1", "version": "4"}, None),
        ({"aggregateId": "a1", "version": 4.0}, None),
        ({"aggregateId": "a1", "version": True}, None),
        ({"aggregateId": "a1", "version": 2**70}, None),
        ({"aggregateId": "a1", "metadata": {"version": "1.0"}}, None),
        ({"aggregateId": "a1", "metadata": {"version": 1}}, None),
    ],
    ids=[
        "int-with-aggregate",
        "aggregateVersion-first",
        "no-aggregate",
        "string",
        "float",
        "bool",
        "beyond-bigint",
        "metadata-schema-version",
        "metadata-int-version",
    ],
)
def test_aggregate_version_only_from_an_integer_with_an_aggregate(body: Any, expected: Any) -> None:
    assert row_of(body)["aggregate_version"] == expected


def test_metadata_schema_version_never_becomes_aggregate_version() -> None:
    body = {**SEED_EVENT}
    del body["version"]
    assert row_of(body)["aggregate_version"] is None


@pytest.mark.parametrize(
    "value",
    ["2025-10-22T14:30:00.123Z", 1761143400.123, 1761143400123, "2025-10-22T16:30:00.123+02:00"],
    ids=["iso-z", "epoch-seconds", "epoch-millis", "iso-offset"],
)
def test_occurred_at_parses_iso_and_epoch_seconds_and_millis(value: Any) -> None:
    occurred = row_of({"timestamp": value})["occurred_at"]
    assert occurred == dt.datetime(2025, 10, 22, 14, 30, 0, 123000, tzinfo=dt.UTC)


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
def test_timestamp_at_the_edge_of_the_calendar_never_raises(value: str) -> None:
    """Valid ISO text whose UTC equivalent falls outside datetime's range (years 1..9999)."""
    row = row_of({"id": "edge", "timestamp": value})
    assert row["event_id"] == "edge"
    assert row["occurred_at"] is None


def test_occurred_at_falls_back_to_the_amqp_timestamp() -> None:
    row = row_of(b"not json", properties={"timestamp": NOW})
    assert row["occurred_at"] == NOW


@pytest.mark.parametrize("value", ["yesterday", "", True, None, [1], float("nan"), 10**400, 1e308])
def test_unparseable_occurred_at_is_none(value: Any) -> None:
    assert extract({"timestamp": value}, {}, None)["occurred_at"] is None


def test_seed_dead_letter_is_described_by_its_original_event() -> None:
    wrapper = {"originalEvent": SEED_EVENT, "error": "payment declined", "retries": 3}
    row = row_of(wrapper, routing_key="dlq.order.created")
    assert row["dead_letter"] == "dlq-key"
    assert row["event_id"] == "evt_1"
    assert row["event_type"] == "OrderCreated"
    assert row["correlation_id"] == "req_body"
    assert row["aggregate_id"] == "ord_1"
    assert row["aggregate_version"] == 3
    assert row["occurred_at"] == dt.datetime(2025, 10, 22, 14, 30, 0, 123000, tzinfo=dt.UTC)


def test_x_death_header_marks_a_broker_dead_letter() -> None:
    x_death = [{"queue": "orders", "reason": "rejected", "count": 1, "exchange": "events"}]
    row = row_of(SEED_EVENT, routing_key="order.created", headers={"x-death": x_death})
    assert row["dead_letter"] == "x-death"
    assert row["event_id"] == "evt_1"


@pytest.mark.parametrize("x_death", ["forged", None, [{"queue": 5}], {"count": "many"}])
def test_malformed_x_death_is_still_a_dead_letter_and_never_raises(x_death: Any) -> None:
    assert row_of(b"{}", headers={"x-death": x_death})["dead_letter"] == "x-death"


def test_ordinary_event_is_not_a_dead_letter() -> None:
    assert row_of(SEED_EVENT, routing_key="order.dlq.created")["dead_letter"] is None


# --- hostile bodies never raise ----------------------------------------------------------------

HOSTILE_BODIES: dict[str, bytes] = {
    "plain-text": b"hello, not json",
    "xml": b"<?xml version='1.0'?><order id='1'/>",
    "binary-with-nul": b"\x00\x01\x02binary\x00",
    "invalid-utf8": b"\xff\xfe\xfd{\x80",
    "invalid-utf8-json-start": b'{"id": "\xff"}',
    "deep-array": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "nan-infinity": b'{"id": "n", "value": NaN, "other": Infinity, "neg": -Infinity}',
    "lone-surrogate": b'{"id": "\\ud800", "type": "x\\udfffy"}',
    "nul-escape": b'{"id": "a\\u0000b", "type": "\\u0000"}',
    "huge-int": b'{"id": ' + b"9" * 5000 + b"}",
    "huge-int-version": b'{"aggregateId": "a", "version": ' + b"1" * 4000 + b"}",
    "truncated-json": b'{"id": "x", ',
    "json-scalar": b'"just a string"',
    "json-array": b'[{"id": "inside-array"}]',
    "bom": b'\xef\xbb\xbf{"id": "bom"}',
    "whitespace": b"   \n\t ",
    "script": b"<script>alert(1)</script>",
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_body_is_stored_raw_without_raising(body: bytes) -> None:
    row = row_of(body)
    assert row["body"] == body
    assert row["body_size"] == len(body)
    assert row["body_kind"] in {"json", "text", "binary", "empty"}
    for key in ("event_id", "event_type", "correlation_id", "causation_id", "aggregate_id"):
        value = row[key]
        assert value is None or isinstance(value, str)
        if value is not None:
            value.encode("utf-8")
            assert "\x00" not in value


@pytest.mark.parametrize("name", ["deep-array", "deep-object"])
def test_json_nested_100000_deep_is_not_treated_as_json(name: str) -> None:
    assert row_of(HOSTILE_BODIES[name])["body_kind"] != "json"


def test_invalid_utf8_body_is_binary() -> None:
    assert row_of(HOSTILE_BODIES["invalid-utf8"])["body_kind"] == "binary"


def test_lone_surrogate_in_json_id_becomes_storable_text() -> None:
    row = row_of(HOSTILE_BODIES["lone-surrogate"])
    assert row["body_kind"] == "json"
    assert row["event_id"] == "\\ud800"
    row["event_type"].encode("utf-8")


def test_nul_in_json_id_is_shown_as_a_visible_symbol() -> None:
    row = row_of(HOSTILE_BODIES["nul-escape"])
    assert row["event_id"] == "a␀b"


def test_nan_and_infinity_body_is_json_and_keeps_its_id() -> None:
    row = row_of(HOSTILE_BODIES["nan-infinity"])
    assert row["body_kind"] == "json"
    assert row["event_id"] == "n"


def test_empty_body_is_empty_kind() -> None:
    row = row_of(b"")
    assert row["body_kind"] == "empty"
    assert row["body_size"] == 0


def test_text_with_nul_is_binary() -> None:
    assert row_of(b"text\x00more")["body_kind"] == "binary"


def test_gzip_encoded_body_is_binary_and_never_interpreted() -> None:
    payload = gzip.compress(json.dumps({"id": "inside-gzip"}).encode())
    row = row_of(payload, properties={"content_encoding": "gzip"})
    assert row["body_kind"] == "binary"
    assert row["event_id"] is None
    assert row["body"] == payload


def test_json_declared_as_gzip_is_still_not_parsed() -> None:
    row = row_of({"id": "looks-like-json"}, properties={"content_encoding": "gzip"})
    assert row["body_kind"] == "binary"
    assert row["event_id"] is None


_UNPICKLED: list[str] = []


def _record_unpickle() -> str:
    _UNPICKLED.append("ran")
    return "pwned"


class _Exploit:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_record_unpickle, ())


def test_python_pickle_body_is_stored_but_never_unpickled() -> None:
    payload = pickle.dumps(_Exploit())
    row = row_of(payload, properties={"content_type": "application/x-python-serialize"})
    assert _UNPICKLED == []
    assert row["body"] == payload
    assert row["body_kind"] == "binary"
    assert row["content_type"] == "application/x-python-serialize"


# --- to_row: identity, truncation, text safety --------------------------------------------------


def _publish(**changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "exchange": "events",
        "routing_key": "order.created",
        "properties": {"message_id": "m1", "content_type": "application/json"},
        "headers": {"x-tenant": "acme"},
    }
    body = changes.pop("body", SEED_EVENT)
    kwargs.update(changes)
    return row_of(body, **kwargs)


def test_fingerprint_is_equal_for_identical_publishes_whatever_the_redelivered_flag() -> None:
    first = _publish(redelivered=False)
    again = _publish(redelivered=True, received_at=NOW + dt.timedelta(seconds=5))
    assert first["fingerprint"] == again["fingerprint"]
    assert first["redelivered"] is False
    assert again["redelivered"] is True


@pytest.mark.parametrize(
    "change",
    [
        {"exchange": "other"},
        {"routing_key": "order.updated"},
        {"properties": {"message_id": "m2", "content_type": "application/json"}},
        {"properties": {"message_id": "m1"}},
        {"headers": {"x-tenant": "other"}},
        {"headers": {"x-tenant": b"acme"}},
        {"headers": None},
        {"body": {**SEED_EVENT, "id": "evt_2"}},
        {"body": json.dumps(SEED_EVENT).encode() + b" "},
    ],
    ids=[
        "exchange",
        "routing-key",
        "property-value",
        "property-missing",
        "header-value",
        "header-type",
        "no-headers",
        "body",
        "body-whitespace",
    ],
)
def test_fingerprint_differs_when_any_part_of_the_publish_differs(change: dict[str, Any]) -> None:
    assert _publish(**change)["fingerprint"] != _publish()["fingerprint"]


def test_body_over_the_cap_is_truncated_with_its_original_size() -> None:
    body = b"x" * 5000
    row = to_row(delivery(body), max_body_bytes=1000)
    assert row["body_truncated"] is True
    assert row["body"] == body[:1000]
    assert row["body_size"] == 5000


def test_body_at_the_cap_is_kept_whole() -> None:
    body = b"y" * 1000
    row = to_row(delivery(body), max_body_bytes=1000)
    assert row["body_truncated"] is False
    assert row["body"] == body


def test_truncated_bodies_keep_distinct_fingerprints() -> None:
    a = to_row(delivery(b"x" * 2000 + b"a"), max_body_bytes=100)
    b = to_row(delivery(b"x" * 2000 + b"b"), max_body_bytes=100)
    assert a["fingerprint"] != b["fingerprint"]


def test_nul_in_routing_key_is_stored_visibly_and_the_original_kept() -> None:
    row = row_of(b"{}", routing_key="order\x00created", exchange="ev\x00ents")
    assert row["routing_key"] == "order␀created"
    assert row["exchange"] == "ev␀ents"
    originals = decode_table(row["originals"])
    assert originals["routing_key"] == "order\x00created"
    assert originals["exchange"] == "ev\x00ents"
    assert row["originals"].isascii()


def test_clean_routing_key_keeps_no_originals() -> None:
    assert row_of(b"{}")["originals"] is None


def test_stored_properties_and_headers_decode_back_to_what_arrived() -> None:
    headers = {"nul": "a\x00b", "bin": b"\xff", "when": NOW}
    props = {"message_id": "m\x00id", "timestamp": NOW, "priority": 3}
    row = row_of(b"{}", headers=headers, properties=props)
    assert decode_table(row["headers"]) == headers
    assert decode_table(row["properties"]) == props
    assert row["message_id"] == "m␀id"


@pytest.mark.parametrize(
    "value", ["plain", "a\x00b", "x\ud800y", "\udfff", "🐇\u202e", "é" * 600, ""]
)
def test_db_text_output_always_encodes_to_utf8_without_nul(value: str) -> None:
    text = db_text(value, 512)
    assert text is not None
    text.encode("utf-8")
    assert "\x00" not in text
    assert len(text) <= 512


def test_db_text_keeps_none() -> None:
    assert db_text(None) is None


def test_hostile_header_values_never_raise() -> None:
    headers = {
        "x-event-id": b"\xff\xfe",
        "x-correlation-id": ["not", "a", "string"],
        "x-causation-id": {"nested": "table"},
        "x-event-type": 10**30,
        "\x00": "\ud800",
    }
    row = row_of(b"binary\x00", headers=headers)
    assert row["event_id"] == "\\xff\\xfe"
    assert row["correlation_id"] is None
    assert row["causation_id"] is None
    assert row["event_type"] == str(10**30)


def test_fast_and_standard_json_parsers_agree_on_edge_numbers() -> None:
    from eventscope.backend.envelope import parse_json_object

    body = b'{"id": 123456789012345678901234567890, "n": 18446744073709551615, "f": 1.5}'
    assert parse_json_object(body) == (
        "json",
        {"id": 123456789012345678901234567890, "n": 18446744073709551615, "f": 1.5},
    )
    assert parse_json_object(b" " * 100 + b'{"a": 1}') == ("json", {"a": 1})
