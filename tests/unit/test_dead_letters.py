"""What a stored dead letter says about its failure (backend/dead_letters.py): never an
exception on forged rows, retries and ordinary events are no failure, groups by kind."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from eventscope.backend.dead_letters import failure_of, group_failures
from eventscope.backend.envelope import Delivery, to_row

AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def stored(routing_key: str, body: bytes, headers: dict[str, Any] | None) -> dict[str, Any]:
    row = to_row(Delivery("events.dlx", routing_key, False, {}, headers, body, AT), 1 << 20)
    return {**row, "id": 1}


@given(headers=st.dictionaries(st.text(max_size=20), json_values, max_size=5), body=st.binary())
def test_a_forged_x_death_or_wrapper_never_raises(headers: dict[str, Any], body: bytes) -> None:
    for key, extra in (("order.paid", {"x-death": headers}), ("dlq.order.paid", headers)):
        try:
            row = stored(key, body, extra)
        except ValueError:  # a header value AMQP cannot carry: not a message the bus has
            continue
        failure = failure_of(row)
        if failure is not None:
            assert failure.fingerprint and failure.row_id == 1


def test_retry_copies_and_ordinary_events_are_no_failure() -> None:
    retry = {
        "x-death": [{"queue": "retry.5s", "reason": "expired", "count": 1, "exchange": "retry"}]
    }
    assert failure_of(stored("order.paid", b"{}", None)) is None
    copy = {**stored("order.paid", b"{}", retry), "exchange": "retry"}
    assert failure_of(copy) is None


def test_ids_and_numbers_in_errors_do_not_split_a_group() -> None:
    def dead(order: int, queue: str) -> Any:
        headers = {
            "x-death": [{"queue": queue, "reason": "rejected", "count": 1, "exchange": "events"}],
            "x-error": f"order {order} not found (trace 3f2a9c1e-0b7d-4c55-9a1e-5d2f8b7c6a10)",
        }
        return failure_of(stored("order.paid", json.dumps({"n": order}).encode(), headers))

    groups = group_failures([dead(1, "ship"), dead(2, "ship"), dead(3, "bill")])
    assert sorted((g.queue, g.count) for g in groups) == [("bill", 1), ("ship", 2)]
    assert {g.error for g in groups} == {"order <n> not found (trace <uuid>)"}
