"""Traces in the store (backend/store/trace.py), on SQLite and Postgres: exact matching,
exact summaries, event-time paging of long correlations, dead letters and retries, causes
beyond a page, the recent list."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.filters import parse_filter
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.trace import TraceCursor
from eventscope.backend.trace import build, sort_key

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def event(
    n: int,
    correlation: str,
    *,
    at: float | None = None,
    cause: int | None = None,
    source: str | None = "order-service",
    routing_key: str = "order.created",
    exchange: str = "events",
    headers: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    received: float | None = None,
) -> dict[str, Any]:
    """Event `evt_<n>`: occurred at T0 + `at` s (none when `at` is None), received at T0 +
    `received` s (default n)."""
    document = body or {
        "id": f"evt_{n}",
        "type": routing_key,
        "metadata": {"correlationId": correlation},
    }
    meta = document.setdefault("metadata", {})
    if source is not None:
        meta["source"] = source
    if cause is not None:
        meta["causationId"] = f"evt_{cause}"
    if at is not None:
        document["timestamp"] = (T0 + dt.timedelta(seconds=at)).isoformat()
    delivery = Delivery(
        exchange,
        routing_key,
        False,
        {"message_id": f"msg_{n}"},
        headers,
        json.dumps(document, ensure_ascii=False).encode(),
        T0 + dt.timedelta(seconds=n if received is None else received),
    )
    return to_row(delivery, 1 << 20)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(database_url)
    yield opened
    await opened.close()


async def test_a_correlation_matches_exactly_never_a_prefix_or_look_alike(
    store: EventStore,
) -> None:
    long_a = "r" * 1024 + "A"
    long_b = "r" * 1024 + "B"  # the same display text (1024 characters), another id
    ids = ["req_1", "req_10", "req_1\u200b", "r\u0435q_1", "REQ_1", "a\x00b", "a\u2400b", long_a]
    await store.write([event(i + 1, c) for i, c in enumerate(ids)])
    for i, correlation in enumerate(ids):
        page = await store.trace.page(correlation, 50)
        assert [r["event_id"] for r in page.rows] == [f"evt_{i + 1}"], repr(correlation[:20])
        assert page.summary.events == 1
    assert (await store.trace.summary(long_b)).events == 0
    assert (await store.trace.summary("req_")).events == 0


async def test_the_summary_is_exact_services_dead_letters_and_retries(store: EventStore) -> None:
    retry = {
        "x-death": [
            {"queue": "retry.q", "reason": "expired", "count": 1, "exchange": "retry"},
            {"queue": "work", "reason": "rejected", "count": 1, "exchange": "events"},
        ]
    }
    rejected = {"x-death": [{"queue": "ship", "reason": "rejected", "count": 1}]}
    original = {"id": "evt_2", "type": "order.paid", "metadata": {"correlationId": "req_s"}}
    rows = [
        event(1, "req_s", at=5, source="order-service"),
        event(2, "req_s", at=1, source="payment-service"),  # occurred first, committed second
        event(3, "req_s", source=None, received=9),  # no occurred-at: arrival decides
        event(4, "req_s", at=2, headers=retry, body=dict(original)),
        event(5, "req_s", at=2, headers=rejected, body=dict(original), exchange="events.dlx"),
        event(
            6,
            "req_s",
            routing_key="dlq.order.paid",
            body={"originalEvent": dict(original), "error": "boom", "retries": 3},
            at=None,
        ),
        event(7, "req_other", at=0),
    ]
    await store.write(rows)
    s = await store.trace.summary("req_s")
    assert s.events == 6
    assert s.first_at == T0 + dt.timedelta(seconds=1)
    assert s.last_at == T0 + dt.timedelta(seconds=9)
    assert s.duration == dt.timedelta(seconds=8)
    assert [(v.source, v.events) for v in s.services] == [
        ("payment-service", 1),
        ("order-service", 4),
        (None, 1),
    ]
    assert s.services_total == 3
    assert (s.dead_letters, s.retries) == (2, 1)


async def test_a_long_correlation_pages_in_event_time_without_loss_or_repeat(
    store: EventStore,
) -> None:
    rows = []
    for n in range(1, 2301):
        at = None if n % 7 == 0 else (n * 7919) % 900 / 10  # shuffled times, many equal
        rows.append(event(n, "req_big", at=at, source=f"svc{n % 5}", received=(n * 31) % 1000))
    rows += [event(n, f"req_noise_{n}", at=0) for n in range(3000, 3300)]
    for start in range(0, len(rows), 500):
        await store.write(rows[start : start + 500])
    first = await store.trace.page("req_big", 300)
    assert first.summary.events == 2300 and len(first.rows) == 300
    seen = list(first.rows)
    cursor = first.next
    pages = 1
    while cursor is not None:
        again = TraceCursor.parse(str(cursor))
        assert again == cursor, "the cursor survives the URL"
        page = await store.trace.page("req_big", 500, again)
        assert page.previous_at == cursor.at
        seen += page.rows
        cursor = page.next
        pages += 1
    assert pages == 5
    assert len(seen) == len({r["id"] for r in seen}) == 2300
    assert [sort_key(r) for r in seen] == sorted(sort_key(r) for r in seen)
    assert not first.outside or all(
        r["id"] not in {x["id"] for x in first.rows} for r in first.outside
    )


async def test_dead_letters_and_retries_are_placed_next_to_their_event(
    store: EventStore,
) -> None:
    paid = {
        "id": "evt_2",
        "type": "order.paid",
        "timestamp": (T0 + dt.timedelta(seconds=2)).isoformat(),
        "metadata": {"correlationId": "req_d", "causationId": "evt_1", "source": "order-service"},
    }
    retry = {"x-death": [{"queue": "r", "reason": "expired", "count": 2, "exchange": "retry"}]}
    await store.write(
        [
            event(1, "req_d", at=0),
            to_row(
                Delivery(
                    "events",
                    "order.paid",
                    False,
                    {"message_id": "evt_2"},
                    None,
                    json.dumps(paid).encode(),
                    T0 + dt.timedelta(seconds=2),
                ),
                1 << 20,
            ),
            event(3, "req_d", at=3, cause=2),
            event(
                4,
                "req_d",
                routing_key="dlq.order.paid",
                body={"originalEvent": paid, "error": "x", "retries": 3},
                received=60,
            ),
            to_row(
                Delivery(
                    "events",
                    "order.paid",
                    False,
                    {"message_id": "evt_2"},
                    retry,
                    json.dumps(paid).encode(),
                    T0 + dt.timedelta(seconds=40),
                ),
                1 << 20,
            ),
        ]
    )
    page = await store.trace.page("req_d", 100)
    trace = build(page.rows, first_at=page.summary.first_at)
    order = [(s.row["routing_key"], s.role) for s in trace.steps]
    assert order == [
        ("order.created", "event"),
        ("order.paid", "event"),
        ("dlq.order.paid", "dead_letter"),
        ("order.paid", "retry"),
        ("order.created", "event"),
    ]
    assert (page.summary.dead_letters, page.summary.retries) == (1, 1)


async def test_a_later_page_brings_the_causes_it_names_from_earlier_pages(
    store: EventStore,
) -> None:
    rows = [event(1, "req_c", at=0, source="root-service")]
    rows += [event(n, "req_c", at=n, cause=1, source="leaf") for n in range(2, 12)]
    await store.write(rows)
    first = await store.trace.page("req_c", 4)
    second = await store.trace.page("req_c", 4, first.next)
    assert [r["event_id"] for r in second.outside] == ["evt_1"]
    trace = build(second.rows, outside=second.outside, first_at=second.summary.first_at)
    assert all(s.cause == first.rows[0]["id"] and not s.orphan for s in trace.steps)
    assert all(n.elsewhere for n in trace.tree)


async def test_recent_correlations_are_distinct_newest_first_and_bounded(
    store: EventStore,
) -> None:
    rows = [event(n, f"req_{n % 3}", at=n) for n in range(1, 31)]
    rows.append(event(31, "req_x", at=31, routing_key="payment.failed"))
    rows.append(event(32, "req_0", at=32, source=None))
    await store.write(rows)
    recent = await store.trace.recent()
    assert [c.correlation_id for c in recent] == ["req_0", "req_x", "req_2", "req_1"]
    by_id = {c.correlation_id: c.summary for c in recent}
    assert by_id["req_0"].events == 11 and not by_id["req_0"].capped
    assert by_id["req_0"].services_total == 2
    # The cap applies only to keys the correlation catalog cannot vouch for
    # (test_correlation_catalog.py); these are counted exactly, past it.
    exact = await store.trace.recent(cap=5)
    assert {c.correlation_id: (c.summary.events, c.summary.capped) for c in exact}["req_1"] == (
        10,
        False,
    )
    f = parse_filter({"routing_key": ["payment.*"]})
    assert [c.correlation_id for c in await store.trace.recent(f)] == ["req_x"]
    assert [c.correlation_id for c in await store.trace.recent(limit=2)] == ["req_0", "req_x"]
    assert len(await store.trace.recent(scan=1)) == 1
