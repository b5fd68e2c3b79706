"""Building a trace from rows (backend/trace.py): order, gaps, lanes, causes, the causation
tree, dead letters and retries. Any list of rows builds, and every row appears exactly once."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope.backend.fieldtable import encode_table
from eventscope.backend.trace import Lanes, build, causation_tree, deaths, role_of

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def row(
    ident: int,
    seconds: float = 0,
    *,
    event_id: str | None = None,
    cause: str | None = None,
    source: str | None = "svc",
    dead_letter: str | None = None,
    headers: dict[str, Any] | None = None,
    exchange: str = "events",
    routing_key: str = "order.created",
    occurred: bool = True,
    message_id: str | None = None,
) -> dict[str, Any]:
    at = T0 + dt.timedelta(seconds=seconds)
    return {
        "id": ident,
        "commit_seq": ident,
        "received_at": at if not occurred else T0 + dt.timedelta(hours=1, seconds=ident),
        "occurred_at": at if occurred else None,
        "event_id": event_id if event_id is not None else f"evt_{ident}",
        "message_id": message_id,
        "causation_id": cause,
        "source": source,
        "dead_letter": dead_letter,
        "exchange": exchange,
        "routing_key": routing_key,
        "death_headers": encode_table(headers) if headers else None,
    }


def expired(exchange: str = "retry", count: int = 1) -> dict[str, Any]:
    return {
        "x-death": [
            {"queue": "retry.q", "reason": "expired", "count": count, "exchange": exchange},
            {"queue": "work", "reason": "rejected", "count": count, "exchange": "events"},
        ],
        "x-first-death-exchange": "events",
    }


def test_the_waterfall_is_in_event_time_with_offsets_and_long_gaps() -> None:
    rows = [row(3, 0.6), row(1, 0.0), row(2, 0.2), row(4, 30.0), row(5, 30.4)]
    trace = build(rows)
    assert [s.id for s in trace.steps] == [1, 2, 3, 4, 5]
    assert [s.offset.total_seconds() for s in trace.steps] == [0, 0.2, 0.6, 30, 30.4]
    assert trace.steps[0].gap is None
    assert [s.long_gap for s in trace.steps] == [False, False, False, True, False]


def test_arrival_time_orders_events_without_an_occurred_at() -> None:
    early = row(2, 0, occurred=False)  # received at T0 + 1h + 2 s
    rows = [row(1, 3600 + 5), early]
    assert [s.id for s in build(rows).steps] == [2, 1]


def test_offsets_count_from_the_correlations_first_event_on_later_pages() -> None:
    trace = build(
        [row(7, 10), row(8, 11)],
        first_at=T0,
        previous_at=T0 + dt.timedelta(seconds=9),
    )
    assert [s.offset.total_seconds() for s in trace.steps] == [10, 11]
    assert trace.steps[0].gap == dt.timedelta(seconds=1)


def test_causes_point_to_the_event_they_name_and_unknown_causes_are_orphans() -> None:
    rows = [
        row(1, 0, source="order-service"),
        row(2, 1, cause="evt_1", source="inventory-service"),
        row(3, 2, cause="evt_404", source="payment-service"),
        row(4, 3, cause="msg_2", event_id="evt_4", source=None),
        row(5, 4, message_id="msg_2", source="x"),
    ]
    trace = build(rows)
    steps = {s.id: s for s in trace.steps}
    assert steps[2].cause == 1 and steps[2].cause_lane == 0 and steps[2].lane == 1
    assert steps[3].cause is None and steps[3].orphan
    assert steps[4].cause == 5, "a causation id may name a message id"
    assert steps[4].lane == 4, "no source: the unknown lane, after the services"
    nodes = {n.id: n for n in trace.tree}
    assert nodes[2].parent == 1 and nodes[2].depth == 1
    assert nodes[3].orphan and nodes[3].depth == 0, "orphans are roots, never hidden"


def test_a_dead_letter_and_a_retry_follow_the_event_they_are_copies_of() -> None:
    rows = [
        row(1, 0),
        row(2, 1, cause="evt_1"),
        row(3, 2, cause="evt_2"),
        row(9, 1, event_id="evt_2", dead_letter="dlq-key", routing_key="dlq.x"),
        row(8, 2, event_id="evt_3", dead_letter="x-death", headers=expired(count=3)),
        row(
            10,
            2,
            event_id="evt_3",
            dead_letter="x-death",
            exchange="events.dlx",
            headers={"x-death": [{"queue": "ship", "reason": "rejected", "count": 1}]},
        ),
    ]
    trace = build(rows)
    order = [(s.id, s.role, s.copy_of) for s in trace.steps]
    assert order == [
        (1, "event", None),
        (2, "event", None),
        (9, "dead_letter", 2),
        (3, "event", None),
        (8, "retry", 3),
        (10, "dead_letter", 3),
    ]
    assert next(s for s in trace.steps if s.id == 8).retry == 3


def test_an_expired_copy_on_a_dead_letter_exchange_is_a_failure_not_a_retry() -> None:
    ttl_dead = {"x-death": [{"queue": "work", "reason": "expired", "exchange": "events"}]}
    assert role_of(row(1, dead_letter="x-death", headers=ttl_dead, exchange="events.dlx")) == (
        "dead_letter"
    )
    assert role_of(row(1, dead_letter="x-death", headers=ttl_dead, exchange="events")) == "retry"
    back = expired(exchange="delay")
    assert role_of(row(1, dead_letter="x-death", headers=back, exchange="events")) == "retry"
    assert role_of(row(1, dead_letter="dlq-key")) == "dead_letter"


def test_malformed_or_forged_x_death_headers_are_read_as_dead_letters() -> None:
    for headers in (
        {"x-death": "expired"},
        {"x-death": [["expired"]]},
        {"x-death": []},
        {"x-death": [{"reason": 7}]},
    ):
        assert role_of(row(1, dead_letter="x-death", headers=headers)) == "dead_letter"
    assert deaths("{not json") == []
    assert deaths('{"x-death": ["A"]}') == []
    assert deaths(json.dumps({"x-death": ["F", {}]})) == []
    assert deaths("[" * 100_000) == []


def test_cycles_and_self_causation_are_cut_and_marked() -> None:
    rows = [
        row(1, 0, cause="evt_3"),
        row(2, 1, cause="evt_1"),
        row(3, 2, cause="evt_2"),
        row(4, 3, cause="evt_4"),
    ]
    tree = causation_tree(rows)
    nodes = {n.id: n for n in tree}
    assert [n.id for n in tree] == [1, 2, 3, 4]
    assert nodes[1].cycle and nodes[1].parent is None and nodes[3].depth == 2
    assert nodes[4].cycle and not nodes[4].orphan
    step = next(s for s in build(rows).steps if s.id == 4)
    assert step.self_caused and not step.orphan


def test_causes_beyond_the_page_are_not_orphans() -> None:
    outside = [row(1, 0, source="order-service")]
    trace = build([row(2, 1, cause="evt_1", source="x")], outside=outside)
    step = trace.steps[0]
    assert step.cause == 1 and not step.orphan
    assert trace.tree[0].elsewhere and not trace.tree[0].orphan


def test_lanes_follow_first_appearance_and_share_the_rest() -> None:
    lanes = Lanes.of([("a", 3), (None, 2), ("b", 1), ("c", 1), ("a", 9)], max_lanes=2)
    assert [(lane.label, lane.kind, lane.events) for lane in lanes.lanes] == [
        ("a", "service", 3),
        ("b", "service", 1),
        (None, "other", 1),
        (None, "unknown", 2),
    ]
    assert lanes.lane_of("c") == 2 and lanes.lane_of(None) == 3 and lanes.lane_of("zz") == 2
    assert Lanes.of([("a", 1)]).lane_of("new") == 1, "a service seen later gets a lane"


IDS = st.sampled_from(["evt_1", "evt_2", "evt_3", "m1", "", "\u202e", "<b>"])
MAYBE = st.one_of(st.none(), IDS)


@st.composite
def rows_strategy(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 25))
    out = []
    for i in range(count):
        ident = draw(st.integers(1, 30))  # repeats: the same row given twice
        kind = draw(st.sampled_from([None, None, "dlq-key", "x-death"]))
        headers = draw(st.sampled_from([None, expired(), {"x-death": "junk"}]))
        out.append(
            row(
                ident,
                draw(st.floats(-1e6, 1e6, allow_nan=False)),
                event_id=draw(MAYBE),
                message_id=draw(MAYBE),
                cause=draw(MAYBE),
                source=draw(st.sampled_from([None, "a", "b", "c"])),
                dead_letter=kind,
                headers=headers if kind == "x-death" else None,
                occurred=draw(st.booleans()),
            )
            | ({"commit_seq": draw(st.integers(0, 3))} if i % 2 else {})
        )
    return out


@settings(max_examples=300, deadline=None)
@given(rows_strategy(), st.lists(st.integers(1, 30), max_size=5))
def test_any_rows_build_and_every_event_appears_exactly_once(
    rows: list[dict[str, Any]], outside_ids: list[int]
) -> None:
    outside = [row(i + 100, 0, event_id=f"evt_{i % 3 + 1}") for i in outside_ids]
    trace = build(rows, outside=outside)
    distinct = {r["id"] for r in rows}
    waterfall = [s.id for s in trace.steps]
    tree = [n.id for n in trace.tree]
    assert sorted(waterfall) == sorted(distinct)
    assert sorted(tree) == sorted(distinct)
    parents = {n.id: n.parent for n in trace.tree}
    depth = {n.id: n.depth for n in trace.tree}
    for node in trace.tree:  # a forest in pre-order: parents come first, one level up
        if node.parent is not None:
            assert node.parent in parents and depth[node.parent] == node.depth - 1
            assert tree.index(node.parent) < tree.index(node.id)
        else:
            assert node.depth == 0
    for step in trace.steps:
        assert step.cause != step.id


def test_a_chain_of_ten_thousand_builds_without_recursion() -> None:
    rows = [row(i, i, cause=f"evt_{i - 1}" if i > 1 else None) for i in range(1, 10_001)]
    trace = build(rows)
    assert trace.tree[-1].depth == 9_999
    assert len(trace.steps) == 10_000
