"""Folding an aggregate's history: order, every problem marker, states at versions and times,
what-if, snapshot equivalence, hostile bodies and bounds."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventscope.backend.aggregates.fold import Fold, WhatIfError, fold
from eventscope.backend.aggregates.history import RecordedEvent, candidate_from_body
from eventscope.backend.aggregates.json_values import size_of
from eventscope.backend.aggregates.reducer_modules import ReducerRegistry
from eventscope.backend.aggregates.reducer_rules import rules_from_text
from eventscope.backend.aggregates.reducer_set import ReducerSet, combine, load_reducers
from eventscope.backend.aggregates.reducers import FoldLimits
from eventscope.backend.aggregates.snapshots import FoldCache
from eventscope.backend.structural_diff import path_text
from tests.unit.aggregate_rows import T0, dlq_wrapper, recorded, seed_event

ORDER = load_reducers(None, [], demo=True, entry_points=False)
MERGE = load_reducers(None, [], demo=False, entry_points=False)


def kinds(folded: Fold) -> list[list[str]]:
    return [[m.kind for m in step.markers] for step in folded.steps]


def marker(folded: Fold, index: int, kind: str) -> Any:
    (found,) = [m for m in folded.steps[index].markers if m.kind == kind]
    return found


def created(version: int = 1, **data: Any) -> dict[str, Any]:
    return seed_event(version, "OrderCreated", {"userId": "user_abc", "total": 99.99, **data})


def updated(version: int, **data: Any) -> dict[str, Any]:
    return seed_event(version, "OrderUpdated", data)


# --- a clean history ------------------------------------------------------------------------


def test_each_version_gives_the_state_after_it_and_what_it_changed() -> None:
    rows = [
        recorded(1, created(items=[1, 2])),
        recorded(2, updated(2, total=120, address={"city": "Ams", "zip": "1011"})),
        recorded(3, updated(3, address={"city": "Rdam"}, items=[1])),
    ]
    folded = fold(rows, MERGE)
    assert folded.order == "version"
    assert [s.version for s in folded.steps] == [1, 2, 3]
    assert kinds(folded) == [[], [], []]
    assert folded.state == {
        "userId": "user_abc",
        "total": 120,
        "items": [1],
        "address": {"city": "Rdam", "zip": "1011"},
    }
    changes = {(path_text(c.path), c.kind, c.before, c.after) for c in folded.changes(2)}
    assert changes == {
        ("address.city", "changed", "Ams", "Rdam"),
        ("items[1]", "removed", 2, None),
    }
    assert [(path_text(c.path), c.kind) for c in folded.changes(0)] == [
        ("userId", "added"),
        ("total", "added"),
        ("items", "added"),
    ]
    assert folded.steps[1].reducer == "default: merge data"
    assert folded.state_after(-1) == {}


def test_a_step_that_changes_nothing_says_so_and_keeps_the_state() -> None:
    rows = [
        recorded(1, created(1, address={"city": "Ams"})),
        recorded(2, updated(2, total=99.99, address={"city": "Ams"})),  # the same values again
        recorded(3, updated(3, total=100)),
    ]
    folded = fold(rows, MERGE)
    assert [s.changed for s in folded.steps] == [True, False, True]
    assert folded.state_after(1) == folded.state_after(0)
    assert folded.changes(1) == []


def test_rows_from_the_store_are_accepted_as_they_are() -> None:
    row = recorded(1, created())
    stored = {
        "id": 1,
        "received_at": row.received_at.replace(tzinfo=None),  # SQLite gives naive datetimes
        "body": row.body,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "aggregate_type": "Order",
        "aggregate_id": "order_123",
        "aggregate_version": 1,
        "occurred_at": row.occurred_at,
        "commit_seq": 5,
        "dead_letter": None,
        "routing_key": "order.created",
        "body_size": len(row.body),
        "body_truncated": False,
    }
    folded = fold([stored], ORDER)
    assert folded.state["status"] == "created"
    assert folded.aggregate_type == "Order" and folded.aggregate_id == "order_123"
    assert folded.steps[0].event is not None
    assert folded.steps[0].event.received_at.tzinfo is not None


# --- problems are shown, never hidden --------------------------------------------------------


def test_gaps_are_marked_on_the_step_after_them() -> None:
    folded = fold(
        [recorded(1, updated(3, a=1)), recorded(2, updated(4, b=1)), recorded(3, updated(7, c=1))],
        MERGE,
    )
    assert marker(folded, 0, "gap").text == "versions 1–2 not recorded"
    assert kinds(folded)[1] == []
    assert marker(folded, 2, "gap").text == "versions 5–6 missing"
    assert folded.state == {"a": 1, "b": 1, "c": 1}
    single = fold([recorded(1, updated(1, a=1)), recorded(2, updated(3, a=3))], MERGE)
    assert marker(single, 1, "gap").text == "version 2 missing"
    assert folded.problems["gap"] == 2


def test_two_events_claiming_one_version_fold_the_first_to_arrive_and_list_the_other() -> None:
    first = recorded(1, updated(2, status="a"), received_at=T0 + dt.timedelta(seconds=5))
    second = recorded(2, updated(2, status="b") | {"id": "evt_other"})
    third = recorded(3, updated(2, status="c") | {"id": "evt_third"})
    folded = fold([recorded(9, created(1)), third, second, first], MERGE)
    step = folded.steps[1]
    assert step.event is not None and step.event.row_id == 2  # second arrived first (T0+2s)
    assert folded.state["status"] == "b"
    conflict = marker(folded, 1, "conflict")
    assert conflict.text == "2 other events claim version 2: not folded (the first to arrive is)"
    assert set(conflict.rows) == {1, 3}
    assert [r.row_id for r in step.rivals] == [3, 1]  # in arrival order


def test_events_that_arrived_out_of_order_are_folded_in_version_order_and_marked() -> None:
    rows = [
        recorded(1, created(1)),
        recorded(2, updated(3, status="shipped")),
        recorded(3, updated(2, status="paid")),
    ]
    folded = fold(rows, MERGE)
    assert folded.order == "version"
    assert [s.version for s in folded.steps] == [1, 2, 3]
    assert marker(folded, 1, "out-of-order").text == "arrived after version 3: folded at version 2"
    assert kinds(folded)[2] == []
    assert folded.state["status"] == "shipped"


def test_without_versions_events_fold_in_arrival_order() -> None:
    rows = [
        recorded(2, updated(None, status="second")),
        recorded(1, updated(None, status="first", a=1)),
    ]
    folded = fold(rows, MERGE)
    assert folded.order == "arrival"
    assert [s.event.row_id for s in folded.steps if s.event] == [1, 2]
    assert folded.state == {"status": "second", "a": 1}
    assert kinds(folded) == [[], []]
    with pytest.raises(ValueError, match="no versions"):
        folded.state_at(version=1)


def test_an_event_without_a_version_among_versioned_ones_is_placed_where_it_arrived() -> None:
    rows = [
        recorded(1, updated(1, a=1)),
        recorded(2, updated(2, a=2)),
        recorded(3, updated(None, b="after v2")),
        recorded(4, updated(3, a=3)),
    ]
    folded = fold(rows, MERGE)
    assert [s.version for s in folded.steps] == [1, 2, None, 3]
    assert marker(folded, 2, "unversioned").text == "no version: placed where it arrived"
    assert folded.state_at(version=2).state == {"a": 2, "b": "after v2"}


def test_a_producers_duplicate_publish_is_folded_once_and_marked() -> None:
    body = seed_event(2, "OrderRefunded", {"refunds": 1})
    rows = [recorded(1, created()), recorded(2, body), recorded(3, body), recorded(4, body)]
    registry = ReducerRegistry()
    registry.add("Order", "OrderRefunded", lambda s, e: {**s, "count": s.get("count", 0) + 1})
    folded = fold(rows, combine(None, registry.reducers, limits=FoldLimits()))
    assert len(folded.steps) == 2
    assert folded.state["count"] == 1
    duplicate = marker(folded, 1, "duplicate")
    assert duplicate.text == "published 3 times: folded once"
    assert duplicate.rows == (3, 4)


def test_same_event_id_with_another_body_is_a_conflict_not_a_duplicate() -> None:
    rows = [recorded(1, updated(2, a=1)), recorded(2, updated(2, a=2))]  # same id, same version
    folded = fold(rows, MERGE)
    assert kinds(folded)[0] == ["gap", "conflict"]
    assert folded.state == {"a": 1}


def test_dead_letter_copies_are_shown_at_their_version_and_never_folded() -> None:
    paid = seed_event(2, "OrderPaid", {"paymentMethod": "card"})
    shipped = seed_event(3, "OrderShipped", {"carrier": "DHL"})
    rows = [
        recorded(1, created()),
        recorded(2, paid),
        recorded(3, paid, dead_letter="x-death", routing_key="order.paid"),
        recorded(4, shipped),
        recorded(5, dlq_wrapper(created()), dead_letter="dlq-key", routing_key="dlq.order.created"),
    ]
    folded = fold(rows, ORDER)
    assert [s.version for s in folded.steps] == [1, 2, 3]
    assert marker(folded, 0, "dead-letter").text == (
        "published as a dead letter to dlq.order.created: not folded"
    )
    assert marker(folded, 0, "dead-letter").rows == (5,)
    assert (
        marker(folded, 1, "dead-letter").text == "dead-lettered by RabbitMQ (x-death): not folded"
    )
    assert marker(folded, 1, "dead-letter").rows == (3,)
    assert [d.row_id for d in folded.steps[1].dead_letters] == [3]
    assert folded.state["status"] == "shipped"


def test_a_version_recorded_only_as_a_dead_letter_gets_its_own_step_and_no_gap() -> None:
    paid = seed_event(2, "OrderPaid")
    rows = [
        recorded(1, created()),
        recorded(2, dlq_wrapper(paid), dead_letter="dlq-key", routing_key="dlq.order.paid"),
        recorded(3, seed_event(3, "OrderShipped", timestamp="2025-10-23T00:00:00Z")),
    ]
    folded = fold(rows, ORDER)
    assert [s.version for s in folded.steps] == [1, 2, 3]
    only = folded.steps[1]
    assert only.event is None and only.reducer is None and not only.changed
    assert kinds(folded)[1] == ["dead-letter", "dead-letter-only"]
    assert kinds(folded)[2] == []  # no gap: version 2 is there, as a dead letter
    assert folded.state_after(1) == folded.state_after(0)


def test_a_reducer_error_shows_at_its_version_and_the_rest_is_folded() -> None:
    rules = rules_from_text(
        '[Order."*"]\nmerge = "$data"\n[Order.Broken]\nincrement = { status = 1 }\n', "r.toml"
    )
    rows = [
        recorded(1, created(status="open")),
        recorded(2, seed_event(2, "Broken")),
        recorded(3, updated(3, status="closed")),
    ]
    folded = fold(rows, combine(rules, {}, limits=FoldLimits()))
    broken = folded.steps[1]
    assert broken.error == "increment status: it is a string, not a number"
    assert [m.kind for m in broken.markers] == ["error"]
    assert not broken.changed and folded.changes(1) == []
    assert folded.state["status"] == "closed"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<xml>not json</xml>", "the body is not JSON: nothing to fold"),
        (
            b'{"a":' * 80 + b"1" + b"}" * 80,
            "the body is nested more than 64 levels deep: nothing to fold",
        ),
    ],
)
def test_bodies_that_cannot_be_folded_are_errors_at_their_step(body: bytes, error: str) -> None:
    good = recorded(1, created())
    bad = RecordedEvent(
        row_id=2, received_at=T0, body=body, aggregate_type="Order", version=2, commit_seq=2
    )
    folded = fold([good, bad, recorded(3, updated(3, a=1))], MERGE)
    assert folded.steps[1].error == error
    assert folded.state["a"] == 1


def test_a_truncated_body_is_an_error_at_its_step() -> None:
    folded = fold([recorded(1, created()), recorded(2, updated(2, a=1), truncated_to=20)], MERGE)
    error = folded.steps[1].error
    assert error is not None and error.startswith("the body was stored truncated (20 of ")


# --- state at a version, as of a time --------------------------------------------------------


def test_state_at_a_version_and_as_of_a_time() -> None:
    rows = [
        recorded(1, created(1) | {"timestamp": "2025-10-22T10:00:00Z"}),
        recorded(2, seed_event(2, "OrderPaid", timestamp="2025-10-22T11:00:00Z")),
        recorded(3, seed_event(4, "OrderShipped", timestamp="2025-10-22T12:00:00Z")),
    ]
    folded = fold(rows, ORDER)
    assert folded.state_at(version=0).state == {} and folded.state_at(version=0).index is None
    assert folded.state_at(version=1).state["status"] == "created"
    assert folded.state_at(version=3).state["status"] == "paid"  # version 3 is missing
    assert folded.state_at(version=99).state["status"] == "shipped"
    at = dt.datetime(2025, 10, 22, 11, 30, tzinfo=dt.UTC)
    as_of = folded.state_as_of(at)
    assert as_of.index == 1 and as_of.state["status"] == "paid"
    assert folded.state_as_of(dt.datetime(2025, 10, 22, 9, tzinfo=dt.UTC)).state == {}
    assert folded.state_as_of(dt.datetime(2025, 10, 22, 11)).index == 1  # naive is UTC


def test_as_of_uses_the_received_time_when_there_is_no_occurred_time() -> None:
    untimed = created()
    del untimed["timestamp"]
    row = recorded(1, untimed, received_at=T0)
    assert row.occurred_at is None
    folded = fold([row], ORDER)
    assert folded.state_as_of(T0 - dt.timedelta(seconds=1)).index is None
    assert folded.state_as_of(T0).index == 0


def test_as_of_never_skips_an_event_whose_clock_ran_behind() -> None:
    rows = [
        recorded(1, updated(1, a=1) | {"timestamp": "2025-10-22T10:00:00Z"}),
        recorded(2, updated(2, a=2) | {"timestamp": "2025-10-22T12:00:00Z"}),
        recorded(3, updated(3, a=3) | {"timestamp": "2025-10-22T11:00:00Z"}),
    ]
    folded = fold(rows, MERGE)
    assert folded.index_as_of(dt.datetime(2025, 10, 22, 11, 30, tzinfo=dt.UTC)) == 0


# --- what-if ------------------------------------------------------------------------------


def test_what_if_an_edited_dead_letter_replaces_its_event_and_later_events_fold_after_it() -> None:
    rules = rules_from_text(
        '[Order."*"]\nmerge = "$data"\n[Order.Adjusted]\nincrement = { total = "$data.by" }\n',
        "r.toml",
    )
    reducers = combine(rules, {}, limits=FoldLimits())
    paid = seed_event(2, "OrderUpdated", {"total": 10, "status": "paid"})
    rows = [
        recorded(1, created()),
        recorded(2, paid),
        recorded(3, dlq_wrapper(paid), dead_letter="dlq-key", routing_key="dlq.order.updated"),
        recorded(4, seed_event(3, "Adjusted", {"by": 5})),
    ]
    folded = fold(rows, reducers)
    assert folded.state["total"] == 15
    unchanged = folded.what_if(rows[2])
    assert unchanged.placement == "replaces row 2 at version 2"
    assert unchanged.changes == [] and unchanged.state == folded.state
    edited = json.loads(rows[2].body)
    edited["originalEvent"]["data"]["total"] = 20
    candidate = candidate_from_body(json.dumps(edited).encode(), received_at=T0)
    result = folded.what_if(candidate)
    assert result.state["total"] == 25  # the later Adjusted (+5) folded after the edit
    assert [(path_text(c.path), c.before, c.after) for c in result.changes] == [("total", 15, 25)]
    assert result.baseline == folded.state and result.candidate_error is None
    assert folded.state["total"] == 15, "nothing is stored"


def test_what_if_fills_a_version_that_only_has_a_dead_letter() -> None:
    paid = seed_event(2, "OrderPaid", timestamp="2025-10-22T15:00:00Z")
    rows = [
        recorded(1, created()),
        recorded(2, paid, dead_letter="x-death", routing_key="order.paid"),
    ]
    folded = fold(rows, ORDER)
    assert folded.state["status"] == "created"
    result = folded.what_if(rows[1])
    assert result.placement == "fills version 2 (only dead letters there)"
    assert {(path_text(c.path), c.kind, c.after) for c in result.changes} == {
        ("status", "changed", "paid"),
        ("paidAt", "added", "2025-10-22T15:00:00Z"),
    }


def test_what_if_a_missing_version_is_inserted_in_its_place() -> None:
    rows = [recorded(1, updated(1, log="v1")), recorded(2, updated(3, log="v3"))]
    folded = fold(rows, MERGE)
    candidate = recorded(0, updated(2, log="v2", extra=True))
    result = folded.what_if(candidate)
    assert result.placement == "at version 2 (no event was recorded there)"
    assert result.index == 1
    assert result.state == {"log": "v3", "extra": True}


def test_what_if_another_event_at_a_taken_version_goes_after_it() -> None:
    rows = [recorded(1, updated(1, a=1)), recorded(2, updated(2, a=2))]
    folded = fold(rows, MERGE)
    rival = recorded(0, updated(1, a=9, b=1) | {"id": "evt_rival"})
    result = folded.what_if(rival)
    assert result.placement == "after version 1's event (a conflict)"
    assert result.state == {"a": 2, "b": 1}


def test_what_if_reports_errors_the_candidate_causes_later() -> None:
    rules = rules_from_text(
        '[Order."*"]\nmerge = "$data"\n[Order.Counted]\nincrement = { n = 1 }\n', "r.toml"
    )
    reducers = combine(rules, {}, limits=FoldLimits())
    rows = [recorded(1, updated(1, n=0)), recorded(2, seed_event(2, "Counted"))]
    folded = fold(rows, reducers)
    result = folded.what_if(recorded(0, updated(1, n="zero")))  # same id: replaces v1
    assert result.placement == "replaces row 1 at version 1"
    (error,) = result.errors
    assert (error.version, error.row_id, error.new) == (2, 2, True)
    assert error.error == "increment n: it is a string, not a number"


def test_what_if_refuses_another_aggregates_event_and_appends_unversioned_ones() -> None:
    folded = fold([recorded(1, created())], ORDER)
    with pytest.raises(WhatIfError, match="aggregate id is 'order_999'"):
        folded.what_if(recorded(0, seed_event(2, "OrderPaid", aggregate_id="order_999")))
    unversioned = recorded(0, seed_event(None, "OrderPaid", timestamp="2025-10-22T16:00:00Z"))
    result = folded.what_if(unversioned)
    assert result.placement == "after the last step" and result.state["status"] == "paid"


# --- snapshots never change a result -------------------------------------------------------

RULES = rules_from_text(
    """
    [Order."*"]
    merge = "$data"
    [Order.Paid]
    set = { status = "paid", paidAt = "$event.timestamp" }
    increment = { payments = 1 }
    [Order.Noted]
    append = { notes = "$data.note" }
    [Order.Broken]
    increment = { status = 1 }
    [Order.Cleared]
    unset = ["notes", "status"]
    """,
    "random.toml",
)


KEYS = ["status", "note", "total", "address", "items"]
VALUES: list[Any] = [0, 1, -2, 2.5, "a", "ab", None, [], [1, 2], {"city": 1}, {"zip": 2, "city": 0}]


@st.composite
def histories(draw: st.DrawFn) -> list[RecordedEvent]:
    """Random histories: gaps, conflicts, out-of-order arrival, unversioned events, duplicates,
    both kinds of dead-letter copies, errors, and arrival-time ties."""
    count = draw(st.integers(0, 24))
    rows: list[RecordedEvent] = []
    row_id = 0
    for _ in range(count):
        row_id += 1
        version = None if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 14))
        kind = draw(st.sampled_from(["Created", "Paid", "Noted", "Broken", "Cleared", "Other"]))
        data = draw(st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3))
        body = seed_event(version, kind, data, event_id=f"evt_{draw(st.integers(0, 30))}")
        arrival = T0 + dt.timedelta(seconds=draw(st.integers(0, 40)))
        row = recorded(row_id, body, received_at=arrival)
        rows.append(row)
        copy = draw(st.sampled_from(["none", "none", "duplicate", "x-death", "dlq"]))
        if copy != "none":
            row_id += 1
            later = arrival + dt.timedelta(seconds=draw(st.integers(0, 10)))
            if copy == "duplicate":
                rows.append(recorded(row_id, body, received_at=later))
            elif copy == "x-death":
                rows.append(recorded(row_id, body, received_at=later, dead_letter="x-death"))
            else:
                wrapped = dlq_wrapper(body)
                rows.append(recorded(row_id, wrapped, received_at=later, dead_letter="dlq-key"))
    return rows


def reducers_every(k: int) -> ReducerSet:
    return combine(RULES, {}, limits=FoldLimits(checkpoint_every=k))


def summary(folded: Fold) -> list[tuple[Any, ...]]:
    return [
        (
            s.version,
            s.event.row_id if s.event else None,
            tuple((m.kind, m.text, m.rows) for m in s.markers),
            s.error,
            s.reducer,
            s.changed,
            tuple(d.row_id for d in s.dead_letters),
        )
        for s in folded.steps
    ]


def all_states(folded: Fold, order: list[int]) -> dict[int, str]:
    return {i: json.dumps(folded.state_after(i), sort_keys=True) for i in order}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.sampled_from([2, 3, 5]), st.randoms(use_true_random=False))
def test_snapshot_assisted_states_equal_a_full_fold(
    rows: list[RecordedEvent], every: int, rng: Any
) -> None:
    full = fold(rows, reducers_every(1))  # every state kept: nothing is folded again
    assisted = fold(list(reversed(rows)), reducers_every(every))
    assert summary(assisted) == summary(full)
    order = list(range(-1, len(full.steps)))
    rng.shuffle(order)  # random access: from checkpoints and from the last state read
    assert all_states(assisted, order) == all_states(full, order)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_extending_a_cached_fold_equals_folding_everything(
    rows: list[RecordedEvent], data: st.DataObject
) -> None:
    arrived = sorted(rows, key=lambda r: r.arrival)
    split = data.draw(st.integers(0, len(arrived)))
    every = data.draw(st.sampled_from([1, 2, 4]))
    reducers = reducers_every(every)
    full = fold(rows, reducers)
    overlap = data.draw(st.integers(0, split))  # rows read twice are skipped
    extended = fold(arrived[:split], reducers).extended(arrived[split - overlap :])
    assert summary(extended) == summary(full)
    order = list(range(-1, len(full.steps)))
    assert all_states(extended, order) == all_states(full, order)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(1, 16), st.sampled_from(["Created", "Paid", "Noted", "Other"]))
def test_what_if_equals_folding_the_candidate_as_if_it_had_been_recorded(
    rows: list[RecordedEvent], version: int, kind: str
) -> None:
    reducers = reducers_every(3)
    folded = fold(rows, reducers)
    for step in folded.steps:  # an event folded again in its own place changes nothing
        if step.event is not None:
            assert folded.what_if(step.event).changes == []
    taken = {s.version for s in folded.steps if s.event is not None}
    if folded.order != "version" or version in taken:
        return
    late = T0 + dt.timedelta(days=1)
    body = seed_event(version, kind, {"note": "what if", "total": 7}, event_id="evt_candidate")
    candidate = recorded(10_000, body, received_at=late)
    result = folded.what_if(candidate)
    assert result.state == fold([*rows, candidate], reducers).state
    assert result.baseline == folded.state


def test_a_history_that_simply_continues_is_extended_without_folding_it_again() -> None:
    rows = [recorded(i, updated(i, n=i)) for i in range(1, 40)]
    first = fold(rows[:30], reducers_every(8))
    grown = first.extended(rows[25:])
    assert grown.steps[:30] == first.steps  # the same step objects: not folded again
    assert grown.state == {"n": 39}
    late = recorded(99, updated(20, n="late"), received_at=T0 + dt.timedelta(hours=1))
    refolded = grown.extended([late])  # a late event with a lower version
    assert refolded.steps[0] is not grown.steps[0]
    assert marker(refolded, 19, "conflict").rows == (99,)


def test_the_fold_cache_is_keyed_by_reducers_and_bounded_by_rows() -> None:
    cache = FoldCache(max_rows=25)
    small = fold([recorded(i, updated(i, n=i)) for i in range(1, 11)], ORDER)
    other = fold([recorded(i, updated(i, n=i)) for i in range(1, 11)], MERGE)
    cache.put("order_1", small)
    cache.put("order_1", other)
    assert cache.get("order_1", ORDER) is small and cache.get("order_1", MERGE) is other
    assert cache.get("order_2", ORDER) is None
    cache.put("order_2", small)  # 30 rows > 25: the least recently used goes
    assert cache.rows <= 25
    assert cache.get("order_1", ORDER) is None
    assert cache.get("order_2", ORDER) is small
    cache.put("huge", fold([recorded(i, updated(i)) for i in range(1, 40)], ORDER))
    assert cache.get("huge", ORDER) is None


# --- hostile input and bounds --------------------------------------------------------------


def test_hostile_keys_and_values_are_folded_as_data() -> None:
    body = updated(
        1,
        **{
            "__proto__": {"polluted": True},
            "a.b": "dotted",
            "constructor": "<script>alert(1)</script>",
            "\u202eevil": "bidi",
            "nul\x00key": "nul",
        },
    )
    raw = json.dumps(body).replace(
        '"total"', '"n": NaN, "big": 123456789012345678901234567890, "total"'
    )
    folded = fold([RecordedEvent(1, T0, raw.encode(), aggregate_type="Order", version=1)], MERGE)
    state = folded.state
    assert state["__proto__"] == {"polluted": True} and state["a.b"] == "dotted"
    assert state["nul\x00key"] == "nul" and state["\u202eevil"] == "bidi"
    assert folded.changes(0)  # NaN does not break the diff


def test_a_state_that_would_outgrow_the_limit_is_refused_at_that_step() -> None:
    rules = rules_from_text(
        '[Order."*"]\nappend = { log = "$data.blob" }\nincrement = { n = 1 }\n', "grow.toml"
    )
    reducers = combine(rules, {}, limits=FoldLimits(max_state_bytes=4_000))
    rows = [recorded(i, updated(i, blob="x" * 500)) for i in range(1, 21)]
    folded = fold(rows, reducers)
    refused = [s for s in folded.steps if s.error]
    assert refused, "the limit was reached"
    first = refused[0]
    assert [m.kind for m in first.markers] == ["too-large"]
    assert first.error is not None and "(limit 4,000): not applied" in first.error
    assert size_of(folded.state) <= 4_000
    assert folded.state["n"] == first.index  # every step before the limit applied


def test_a_python_reducer_that_builds_a_huge_state_by_sharing_is_refused_quickly() -> None:
    registry = ReducerRegistry()

    def explode(state: dict[str, Any], event: Any) -> dict[str, Any]:
        node: Any = ["x" * 100]
        for _ in range(80):
            node = [node, node]  # 2^80 leaves, 160 list objects
        return {"boom": node}

    registry.add("Order", "*", explode)
    started = time.monotonic()
    folded = fold([recorded(1, created())], combine(None, registry.reducers, limits=FoldLimits()))
    assert time.monotonic() - started < 30  # generous: a full walk would never end
    error = folded.steps[0].error
    assert error is not None and "returned a state that is too large" in error
    assert folded.state == {}


def test_ten_thousand_seed_events_fold_in_bounded_time() -> None:
    """Not a benchmark (see the report): a bound that only quadratic work would break."""
    rows = [recorded(1, created(1, items=[{"sku": "a", "qty": 1}]))]
    types = ["OrderPaid", "OrderShipped", "OrderUpdated", "OrderCancelled"]
    rows += [
        recorded(v, seed_event(v, types[v % 4], {"total": v, "note": f"n{v}"}))
        for v in range(2, 10_001)
    ]
    started = time.monotonic()
    folded = fold(list(reversed(rows)), ORDER)
    folded.changes(5_000)
    folded.state_at(version=7_777)
    assert time.monotonic() - started < 30
    assert len(folded.steps) == 10_000 and folded.problems == {"note": 2_500}


def test_states_past_the_kept_bound_are_folded_again_and_stay_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each event adds a field: kept states stop at MAX_KEPT_BYTES and later ones are folded
    again from the last kept one, with the same result."""
    import eventscope.backend.aggregates.fold as fold_module

    rows = [recorded(v, updated(v, **{f"k{v}": v})) for v in range(1, 201)]
    full = [fold(rows, MERGE).state_after(i) for i in range(200)]
    monkeypatch.setattr(fold_module, "MAX_KEPT_BYTES", 600)
    bounded = fold(rows, MERGE)
    assert bounded.held_bytes <= 600
    assert [bounded.state_after(i) for i in reversed(range(200))] == list(reversed(full))
