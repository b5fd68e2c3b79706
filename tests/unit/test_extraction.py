"""Extraction rules: the defaults are exactly the extraction that came before them, custom
rules read what they name in the order they name it, and a rules file that cannot work is
refused at start with the file, the key and the reason."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventscope.backend.amqp_lenient import UndecodedText
from eventscope.backend.envelope import PROPERTY_NAMES, extract, parse_json_object
from eventscope.backend.extraction import (
    DEFAULT_EXTRACTOR,
    DEFAULT_RULES,
    FIELDS,
    PROPERTIES,
    Extractor,
    RulesError,
    load_rules,
    rules_from_toml,
)
from eventscope.backend.settings import load_settings
from tests.unit import legacy_extraction as legacy
from tests.unit.test_envelope import HOSTILE_BODIES, SEED_EVENT

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
NOW = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def rules(text: str) -> Extractor:
    return Extractor(rules_from_toml(text, "rules.toml"))


def same_as_before(body: Any, props: dict[str, Any], headers: dict[str, Any] | None) -> None:
    assert DEFAULT_EXTRACTOR(body, props, headers) == legacy.extract_originals(body, props, headers)
    assert extract(body, props, headers) == legacy.extract(body, props, headers)


# --- the defaults are the extraction that came before ------------------------------------------

ENVELOPE_CORPUS: list[tuple[Any, dict[str, Any], dict[str, Any] | None]] = [
    (SEED_EVENT, {}, None),
    ({**SEED_EVENT, "eventType": None}, {"message_type": "amqp.type"}, None),
    ({"eventId": "e2"}, {"message_id": "m"}, {"x-event-id": "h"}),
    ({}, {"message_id": "m"}, {"event-id": "h"}),
    ({}, {}, {"x-event-id": "", "event-id": "second"}),  # the first spelling present decides
    ({}, {}, {"x-event-id": None, "eventId": "later"}),
    ({"correlationId": "top"}, {"correlation_id": "amqp"}, {"x-correlation-id": "hdr"}),
    ({"metadata": {"correlationId": ""}}, {"correlation_id": "amqp"}, None),
    ({"metadata": "not a table", "correlation_id": 7}, {}, None),
    ({"aggregateId": "a", "version": 3}, {}, None),
    ({"version": 3}, {}, None),
    ({"aggregateVersion": 4}, {}, None),
    ({"aggregateId": "a", "aggregateVersion": "4", "version": 5}, {}, None),
    ({"aggregateId": "a", "version": True}, {}, None),
    ({"aggregateId": "a", "version": 2**63}, {}, None),
    ({"metadata": {"aggregateId": "m", "aggregateType": "T", "source": "svc"}}, {}, None),
    ({"timestamp": "yesterday", "occurredAt": "2025-01-01T00:00:00Z"}, {}, None),
    ({"timestamp": None, "occurred_at": 1_700_000_000_000}, {"timestamp": NOW}, None),
    ({}, {"timestamp": NOW, "app_id": "billing"}, None),
    ({"originalEvent": SEED_EVENT, "error": "boom", "retries": 3}, {}, None),
    ({"originalEvent": SEED_EVENT, "type": "dlq"}, {}, None),
    ({"originalEvent": "not a table"}, {}, None),
    ([{"id": "inside-array"}], {"message_id": "m"}, None),
    ("just a string", {}, {"traceparent": TRACEPARENT}),
    ({}, {}, {"Traceparent": TRACEPARENT.upper()}),
    ({}, {}, {"traceparent": None, "TRACEPARENT": TRACEPARENT}),
    ({}, {}, {"traceparent": b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01"}),
    (
        {},
        {"message_id": UndecodedText(b"\xff\xfe")},
        {
            "x-event-id": b"\xff\xfe",
            "x-correlation-id": ["not", "a", "string"],
            "x-causation-id": {"nested": "table"},
            "x-event-type": 10**30,
            "\x00": "\ud800",
        },
    ),
    ({"id": 123, "type": False, "eventType": 1.5, "source": Decimal("1")}, {}, None),
]


@pytest.mark.parametrize("body, props, headers", ENVELOPE_CORPUS)
def test_default_rules_extract_exactly_what_the_hand_written_extraction_did(
    body: Any, props: dict[str, Any], headers: dict[str, Any] | None
) -> None:
    same_as_before(body, props, headers)


@pytest.mark.parametrize("raw", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_default_rules_agree_on_every_hostile_body(raw: bytes) -> None:
    _, parsed = parse_json_object(raw)
    same_as_before(parsed, {"message_id": "m", "app_id": "a"}, {"traceparent": TRACEPARENT})


KNOWN_KEYS = [
    "id",
    "eventId",
    "type",
    "eventType",
    "correlationId",
    "correlation_id",
    "causationId",
    "causation_id",
    "aggregateId",
    "aggregateType",
    "aggregateVersion",
    "version",
    "source",
    "timestamp",
    "occurredAt",
    "occurred_at",
    "metadata",
    "originalEvent",
    "data",
]
HEADER_NAMES = [
    "x-event-id",
    "event-id",
    "event_id",
    "eventId",
    "x-event-type",
    "event-type",
    "x-correlation-id",
    "correlation-id",
    "correlation_id",
    "correlationId",
    "x-causation-id",
    "causationId",
    "traceparent",
    "Traceparent",
    "TRACEPARENT",
    "other",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["", "evt_1", "2025-10-22T14:30:00Z", "order.created", TRACEPARENT]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KNOWN_KEYS), inner, max_size=6),
    ),
    max_leaves=20,
)
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=12),
)
amqp_values = st.one_of(
    scalars,
    st.binary(max_size=8),
    st.binary(min_size=1, max_size=4).map(lambda b: UndecodedText(b + b"\xff")),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
    st.lists(scalars, max_size=2),
    st.decimals(allow_nan=False, allow_infinity=False),
)
headers_tables = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(HEADER_NAMES), amqp_values, max_size=6)
)
property_tables = st.dictionaries(
    st.sampled_from(["message_id", "message_type", "correlation_id", "app_id", "timestamp"]),
    amqp_values.filter(lambda v: v is not None),
    max_size=5,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, props=property_tables, headers=headers_tables)
def test_default_rules_agree_with_the_old_extraction_on_generated_messages(
    body: Any, props: dict[str, Any], headers: dict[str, Any] | None
) -> None:
    same_as_before(body, props, headers)


def test_the_documented_default_file_is_exactly_the_default_rules() -> None:
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"### The defaults, as a file.*?```toml\n(.*?)```", text, re.S)
    assert block, "docs/configuration.md lost its default rules file"
    loaded = rules_from_toml(block.group(1), "docs")
    assert dict(loaded.fields) == dict(DEFAULT_RULES.fields)
    assert loaded.unwrap_dead_letters is DEFAULT_RULES.unwrap_dead_letters


def test_every_amqp_property_can_be_a_candidate() -> None:
    assert set(PROPERTIES.values()) == set(PROPERTY_NAMES)


# --- custom rules ------------------------------------------------------------------------------


def test_a_header_can_carry_the_correlation_id() -> None:
    extractor = rules('[fields]\ncorrelation_id = ["header:X-Request-Id", "body:meta.corr"]')
    body = {"meta": {"corr": "from-body"}, "metadata": {"correlationId": "default-place"}}
    assert extractor(body, {}, {"X-Request-Id": "req-9"})["correlation_id"] == "req-9"
    assert extractor(body, {}, {"x-request-id": "wrong case"})["correlation_id"] == "from-body"
    assert extractor(body, {}, None)["correlation_id"] == "from-body"


def test_fields_not_listed_keep_their_defaults() -> None:
    extractor = rules('[fields]\nevent_type = ["body:data.kind"]')
    found = extractor(
        {"data": {"kind": "Shipped"}, "type": "order.shipped", **{"id": "e1"}}, {}, None
    )
    assert found["event_type"] == "Shipped"
    assert found["event_id"] == "e1"


def test_nested_paths_and_array_steps_reach_deep_values() -> None:
    extractor = rules(
        '[fields]\naggregate_id = ["body:data.items.1.sku"]\naggregate_type = ["body:0.kind"]'
    )
    body = {"data": {"items": [{"sku": "first"}, {"sku": "second"}]}}
    assert extractor(body, {}, None)["aggregate_id"] == "second"
    assert extractor({"data": {"items": [{"sku": "only"}]}}, {}, None)["aggregate_id"] is None
    assert extractor([{"kind": "Cart"}], {}, None)["aggregate_type"] == "Cart"
    assert extractor({"0": {"kind": "Key"}}, {}, None)["aggregate_type"] == "Key"


def test_properties_are_read_by_their_amqp_names() -> None:
    extractor = rules(
        '[fields]\nevent_type = ["property:type"]\nsource = ["property:user_id"]\n'
        'occurred_at = ["property:timestamp"]\nevent_id = ["property:message_type"]'
    )
    found = extractor(
        {"type": "ignored"},
        {"message_type": "OrderPaid", "user_id": "svc", "timestamp": NOW},
        None,
    )
    assert found["event_type"] == "OrderPaid"
    assert found["event_id"] == "OrderPaid"  # message_type is accepted for `type`
    assert found["source"] == "svc"
    assert found["occurred_at"] == NOW


def test_the_first_usable_candidate_wins_and_unusable_ones_are_passed_over() -> None:
    extractor = rules(
        '[fields]\nevent_id = ["body:a", "body:b", "header:h", "property:message_id"]'
    )
    assert extractor({"a": "", "b": {"x": 1}}, {"message_id": "m"}, {"h": True})["event_id"] == "m"
    assert extractor({"a": 0, "b": "b"}, {}, None)["event_id"] == "0"
    assert extractor({"b": "b"}, {}, {"h": "h"})["event_id"] == "b"


def test_spellings_take_the_first_present_even_when_unusable() -> None:
    extractor = rules('[fields]\nevent_id = [["header:x-id", "body:id"], "property:message_id"]')
    assert extractor({"id": "body"}, {"message_id": "m"}, {"x-id": ""})["event_id"] == "m"
    assert extractor({"id": "body"}, {"message_id": "m"}, {})["event_id"] == "body"


def test_only_with_makes_a_candidate_depend_on_an_earlier_field() -> None:
    extractor = rules(
        "[fields]\n"
        'aggregate_id = ["body:orderId"]\n'
        'aggregate_version = [{ from = "body:rev", only_with = "aggregate_id" }]\n'
    )
    assert extractor({"orderId": "o1", "rev": 4}, {}, None)["aggregate_version"] == 4
    assert extractor({"rev": 4}, {}, None)["aggregate_version"] is None


def test_an_empty_list_turns_a_field_off() -> None:
    found = rules("[fields]\ncausation_id = []")(SEED_EVENT, {}, None)
    assert found["causation_id"] is None
    assert found["correlation_id"] == "req_body"


def test_dead_letters_can_be_read_as_they_are() -> None:
    dead = {"originalEvent": SEED_EVENT, "error": "boom", "id": "dlq-1"}
    assert DEFAULT_EXTRACTOR(dead, {}, None)["event_id"] == "evt_1"
    assert rules("unwrap_dead_letters = false")(dead, {}, None)["event_id"] == "dlq-1"


def test_trace_and_time_candidates_are_decided_by_the_first_present_value() -> None:
    extractor = rules(
        '[fields]\ntrace_id = ["body:trace", "header:traceparent"]\n'
        'occurred_at = ["body:when", "property:timestamp"]'
    )
    found = extractor(
        {"trace": "not a traceparent", "when": "never"},
        {"timestamp": NOW},
        {"traceparent": TRACEPARENT},
    )
    assert found["trace_id"] is None
    assert found["occurred_at"] == "never"  # kept as sent; the row shows it in `originals`
    found = extractor({}, {"timestamp": NOW}, {"traceparent": TRACEPARENT})
    assert found["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert found["occurred_at"] == NOW


HOSTILE_VALUES = [
    "<script>alert(1)</script>",
    "\u202eevil\u202c",
    "a\x00b",
    "x" * 100_000,
    "\ud800",
    {"nested": {"deep": ["x"]}},
    [1, 2, 3],
    float("nan"),
    10**400,
    b"\xff" * 300,
    UndecodedText(b"\xc3\x28"),
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_hostile_values_under_custom_rules_become_safe_columns(value: Any) -> None:
    extractor = rules(
        '[fields]\ncorrelation_id = ["header:c"]\nevent_id = ["body:a.b"]\n'
        'occurred_at = ["header:c"]\naggregate_version = ["header:c"]'
    )
    row = extract({"a": {"b": value}}, {}, {"c": value}, extractor)
    for name in ("correlation_id", "event_id"):
        shown = row[name]
        if shown is not None:
            assert "\x00" not in shown
            shown.encode("utf-8")
            assert len(shown) <= 1024
    assert row["aggregate_version"] is None or isinstance(row["aggregate_version"], int)


candidate_texts = st.one_of(
    st.builds(
        lambda p: f"body:{p}", st.from_regex(r"[a-z0-9]{1,4}(\.[a-z0-9]{1,4}){0,3}", fullmatch=True)
    ),
    st.sampled_from(["header:h", "header:traceparent", "header:x-correlation-id"]),
    st.sampled_from([f"property:{name}" for name in PROPERTIES]),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    chosen=st.dictionaries(st.sampled_from(list(FIELDS)), st.lists(candidate_texts, max_size=4)),
    body=bodies,
    headers=headers_tables,
    props=property_tables,
)
def test_any_valid_rules_read_any_message_without_raising(
    chosen: dict[str, list[str]], body: Any, headers: Any, props: dict[str, Any]
) -> None:
    text = "[fields]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in chosen.items())
    row = extract(body, props, headers, rules(text))
    assert set(row) >= set(FIELDS) - {"occurred_at"}


# --- refused rules files -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, key, reason",
    [
        (
            '[fields]\ncorelation_id = ["body:x"]',
            "fields.'corelation_id'",
            "did you mean correlation_id",
        ),
        ('colour = "blue"', "'colour'", "unknown key"),
        ("fields = 3", "fields", "must be a table"),
        ('[fields]\ncorrelation_id = "body:x"', "fields.correlation_id", "must be a list"),
        ("[fields]\ncorrelation_id = [3]", "fields.correlation_id[0]", "a candidate is a string"),
        ('[fields]\nevent_id = ["bdy:x"]', "fields.event_id[0]", "does not start with body:"),
        ('[fields]\nevent_id = ["metadata.x"]', "fields.event_id[0]", "does not start with body:"),
        ('[fields]\nevent_id = ["body:a..b"]', "fields.event_id[0]", "bad path"),
        ('[fields]\nevent_id = ["body:"]', "fields.event_id[0]", "bad path"),
        ('[fields]\nevent_id = ["body:.a"]', "fields.event_id[0]", "empty segment"),
        ('[fields]\nevent_id = ["header:"]', "fields.event_id[0]", "a header name has 1 to 255"),
        (f'[fields]\nevent_id = ["header:{"h" * 256}"]', "fields.event_id[0]", "not 256"),
        ('[fields]\nevent_id = ["property:app"]', "fields.event_id[0]", "did you mean app_id"),
        ("[fields]\nevent_id = [[]]", "fields.event_id[0]", "a candidate is a string"),
        ('[fields]\nevent_id = [["header:a", 3]]', "fields.event_id[0][1]", "must be a string"),
        ('[fields]\nevent_id = [{ only_with = "source" }]', "fields.event_id[0]", "needs `from`"),
        (
            '[fields]\nevent_id = [{ from = "body:a", if = 1 }]',
            "fields.event_id[0].'if'",
            "unknown key",
        ),
        (
            '[fields]\naggregate_id = [{ from = "body:a", only_with = "source" }]',
            "fields.aggregate_id[0].only_with",
            "must name a field listed before aggregate_id",
        ),
        (
            '[fields]\nsource = [{ from = "body:a", only_with = "source" }]',
            "fields.source[0].only_with",
            "listed before source",
        ),
        (
            '[fields]\nsource = [{ from = "body:a", only_with = "nope" }]',
            "fields.source[0].only_with",
            "is not a field",
        ),
        ('unwrap_dead_letters = "yes"', "unwrap_dead_letters", "must be true or false"),
        ("[fields]\nevent_id = [" + '"body:a",' * 65 + "]", "fields.event_id", "at most 64"),
    ],
)
def test_a_rules_file_that_cannot_work_is_refused_naming_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert reason in message


def test_a_file_that_is_no_toml_or_no_text_or_missing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[fields\n", encoding="utf-8")
    with pytest.raises(RulesError, match=rf"^{re.escape(str(path))}: not valid TOML"):
        load_rules(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(RulesError, match="not UTF-8"):
        load_rules(path)
    path.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(RulesError, match="at most"):
        load_rules(path)
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.toml")


@pytest.mark.parametrize("hostile", ["\u202efield", "a\x00b", "<b>x</b>" * 40])
def test_errors_quote_hostile_names_escaped_and_short(tmp_path: Path, hostile: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f"[fields]\n{json.dumps(hostile)} = []\n", encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert "\u202e" not in message and "\x00" not in message
    assert len(message) < 400


def test_settings_refuse_bad_rules_at_start_naming_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[fields]\nevent_id = ["body:a..b"]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"^EVENTSCOPE_EXTRACTION_RULES: .*rules\.toml: fields"):
        load_settings({"EVENTSCOPE_EXTRACTION_RULES": str(path)})
    path.write_text('[fields]\nevent_id = ["body:a.b"]', encoding="utf-8")
    assert load_settings({"EVENTSCOPE_EXTRACTION_RULES": str(path)}).extraction_rules == str(path)


@pytest.mark.parametrize(
    "patterns, message",
    [
        ("heartbeat.#," + "a" * 300, "at most 255 bytes"),
        ("#", "would exclude every event"),
        ("#.#", "would exclude"),
    ],
)
def test_settings_refuse_exclusion_patterns_that_cannot_work(patterns: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"EVENTSCOPE_EXCLUDE_ROUTING_KEYS: .*{message}"):
        load_settings({"EVENTSCOPE_EXCLUDE_ROUTING_KEYS": patterns})


def test_exclusion_patterns_are_read_as_a_list() -> None:
    loaded = load_settings({"EVENTSCOPE_EXCLUDE_ROUTING_KEYS": "heartbeat.#, *.ping"})
    assert loaded.exclude_routing_keys == ("heartbeat.#", "*.ping")
