"""Comparing a run with a recorded fixture (eventscope.testing.fixtures): ids and timestamps
never make a difference, a changed value or a missing event always does, effects of one cause
may arrive in any order, and the failure says where, in words."""

from __future__ import annotations

import copy
import json
import random
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope.testing.fixtures import (
    CORRELATION,
    ID,
    IGNORED,
    TIME,
    Fixture,
    causal_order,
    differences,
    event_of,
    normalise,
    parse_fixture,
)
from eventscope.testing.report import safe, sequence_table


def record(
    routing_key: str,
    body: Any,
    *,
    event_id: str | None = None,
    causation_id: str | None = None,
    event_type: str | None = None,
) -> dict[str, Any]:
    return {
        "exchange": "events",
        "routing_key": routing_key,
        "event_type": event_type,
        "event_id": event_id,
        "message_id": event_id,
        "causation_id": causation_id,
        "body_encoding": "json",
        "body": body,
    }


def checkout(
    run: str, total: float = 62.49, *, effects_swapped: bool = False, stamp: str = "10:00"
) -> Fixture:
    """The seed's order flow as one run records it: ids and times differ from run to run."""
    correlation = f"req_{run}"
    order_id, created = f"evt_{run}_1", f"evt_{run}_2"

    def body(kind: str, **data: Any) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "type": kind,
            "timestamp": f"2026-11-26T{stamp}:00.000Z",
            "data": {"orderId": f"ord_{run}", **data},
            "metadata": {"correlationId": correlation, "source": "checkout"},
        }

    effects = [
        record(
            "payment.succeeded",
            body("payment.succeeded", total=total, currency="EUR"),
            event_id=f"evt_{run}_3",
            causation_id=created,
        ),
        record(
            "inventory.reserved",
            body("inventory.reserved", sku="A-1", quantity=2),
            event_id=f"evt_{run}_4",
            causation_id=created,
        ),
    ]
    if effects_swapped:
        effects.reverse()
    records = [
        record("order.placed", body("order.placed", total=total), event_id=order_id),
        record(
            "order.created",
            body("order.created", total=total),
            event_id=created,
            causation_id=order_id,
            event_type="OrderCreated",
        ),
        *effects,
    ]
    return Fixture(correlation, tuple(event_of(r) for r in records))


def test_two_runs_of_the_same_flow_match_whatever_their_ids_and_times() -> None:
    assert differences(checkout("a"), checkout("b", stamp="23:59")) == []


def test_the_effects_of_one_cause_may_arrive_in_either_order() -> None:
    assert differences(checkout("a"), checkout("b", effects_swapped=True)) == []


def test_a_changed_value_is_named_by_its_path() -> None:
    found = differences(checkout("a"), checkout("b", total=60.0))
    assert "event 1 order.placed: body.data.total: expected 62.49, got 60.0" in found
    assert (
        "event 2 order.created (OrderCreated): body.data.total: expected 62.49, got 60.0" in found
    )
    assert differences(checkout("a"), checkout("b", total=60.0), ignore=["data.total"]) == []


def test_a_missing_event_shows_both_causal_orders() -> None:
    run = checkout("b")
    shorter = Fixture(run.correlation_id, run.events[:3])
    found = differences(checkout("a"), shorter)
    text = "\n".join(found)
    assert "the events differ" in found[0]
    assert "- " in text and "inventory.reserved" in text and "(expected, missing)" in text
    assert "    order.placed" in text, "what matched is listed too"


def test_an_effect_recorded_before_its_cause_is_a_difference() -> None:
    run = checkout("b")
    placed, created, *rest = run.events
    assert differences(checkout("a"), Fixture(run.correlation_id, (created, placed, *rest)))


def test_a_type_or_number_that_changed_kind_is_a_difference() -> None:
    a = Fixture("c", (event_of(record("x", {"n": 1})),))
    assert differences(a, Fixture("c", (event_of(record("x", {"n": True})),)))
    assert differences(a, Fixture("c", (event_of(record("x", {"n": "1"})),)))
    assert differences(a, Fixture("c", (event_of(record("x", {"n": 1, "extra": 0})),)))


def test_normalise_replaces_ids_times_and_the_correlation_but_keeps_the_keys() -> None:
    body = {
        "id": "evt_1",
        "orderId": "ord_1",
        "order_id": "ord_1",
        "aggregateId": "ord_1",
        "timestamp": 1764151200,
        "createdAt": "yesterday",
        "ref": "3f2b6c1e-6f1a-4c0b-9e55-0a1b2c3d4e5f",
        "when": "2026-11-26T10:00:00+01:00",
        "note": "req_9",
        "paid": True,
        "valid": "yes",
        "total": 62.49,
        "items": [{"sku": "A", "price": 1}, {"sku": "B", "price": 2}],
    }
    assert normalise(body, "req_9", ignore=["items.*.price"]) == {
        "id": ID,
        "orderId": ID,
        "order_id": ID,
        "aggregateId": ID,
        "timestamp": TIME,
        "createdAt": TIME,
        "ref": ID,
        "when": TIME,
        "note": CORRELATION,
        "paid": True,
        "valid": "yes",
        "total": 62.49,
        "items": [{"sku": "A", "price": IGNORED}, {"sku": "B", "price": IGNORED}],
    }


def test_cyclic_causation_ids_cannot_loop() -> None:
    a = event_of(record("a", {}, event_id="1", causation_id="2"))
    b = event_of(record("b", {}, event_id="2", causation_id="1"))
    placed = causal_order([a, b], None)
    assert [(p.event.routing_key, p.depth) for p in placed] == [("a", 0), ("b", 1)]


def test_bodies_of_every_encoding_are_compared() -> None:
    text = {"body_encoding": "text", "body_text": '{"a": 1}'}
    raw = {"body_encoding": "base64", "body_base64": "AAH+/w=="}
    assert event_of(text).body == {"a": 1}
    assert event_of(raw).body == b"\x00\x01\xfe\xff"
    one = Fixture("c", (event_of({**raw, "routing_key": "k"}),))
    other = Fixture("c", (event_of({**raw, "routing_key": "k", "body_base64": "AAH+/g=="}),))
    assert differences(one, other) == [
        "event 1 k: body : expected 4 bytes 0001feff, got 4 bytes 0001fefe"
    ]


def test_a_file_that_is_no_fixture_is_refused_by_name() -> None:
    for data in (b"[]", b'{"events": []}', b'{"eventscope_fixture": 2, "events": []}'):
        try:
            parse_fixture(data, source="f.json")
        except ValueError as exc:
            assert "f.json" in str(exc)
        else:
            raise AssertionError(f"{data!r} was read as a fixture")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(body=JSON, correlation=st.text(max_size=6))
def test_normalising_twice_changes_nothing_more(body: Any, correlation: str) -> None:
    once = normalise(body, correlation)
    assert normalise(once, correlation) == once


JSON_LEAF = "leaf"


@settings(max_examples=300, deadline=None)
@given(
    # Few distinct bodies and keys: sibling effects that look alike but caused different
    # things are where a naive sort would pair the wrong subtrees.
    bodies=st.lists(st.sampled_from([{}, {"a": 1}, [JSON_LEAF]]), min_size=1, max_size=8),
    shape=st.lists(st.integers(min_value=0, max_value=7), min_size=8, max_size=8),
    seed=st.integers(),
)
def test_a_run_matches_itself_and_any_reordering_of_sibling_effects(
    bodies: list[Any], shape: list[int], seed: int
) -> None:
    # Event i is caused by an earlier event shape[i] % i (event 0 by none): a random forest.
    records = [
        record(
            f"k.{i % 2}",
            body,
            event_id=f"e{i}",
            causation_id=f"e{shape[i] % i}" if i else None,
        )
        for i, body in enumerate(bodies)
    ]
    fixture = Fixture("c", tuple(event_of(r) for r in records))
    assert differences(fixture, fixture) == []
    # Any recorded order in which each cause still precedes its effects is the same run.
    rng = random.Random(seed)
    order: list[int] = []
    ready = [0]
    children = {
        i: [j for j in range(1, len(records)) if shape[j] % j == i] for i in range(len(records))
    }
    while ready:
        current = ready.pop(rng.randrange(len(ready)))
        order.append(current)
        ready += children[current]
    shuffled = Fixture("c", tuple(event_of(copy.deepcopy(records[i])) for i in order))
    assert differences(fixture, shuffled) == []


def test_bus_text_in_a_failure_cannot_rearrange_the_terminal() -> None:
    shown = safe("order\u202e.detaerc\x00\x1b[31m\u200b")
    assert shown == "order\\u202e.detaerc\\u0000\\u001b[31m\\u200b"
    assert len(safe("x" * 1000)) == 60
    table = sequence_table(["order.created"], [{"routing_key": "<b>\u202e", "id": 1}])
    assert "≠" in table and "\\u202e" in table and "\u202e" not in table


def test_a_fixture_document_round_trips_through_json() -> None:
    run = checkout("a")
    document = {
        "eventscope_fixture": 1,
        "correlation_id": "req_a",
        "events": [e.record for e in run.events],
    }
    again = parse_fixture(json.dumps(document).encode())
    assert differences(run, again) == []
