"""The correlation catalog (backend/correlation_catalog.py) and the traces it summarises, on
SQLite and Postgres: a trace's summary is the same whether the catalog counted all, some or
none of its events; a key the catalog cannot vouch for is counted from its events; a second
catalog never counts a batch twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from eventscope.backend.correlation_catalog import CorrelationCatalog
from eventscope.backend.envelope import id_key
from eventscope.backend.store.correlations import service_rows
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.models import correlation_services
from eventscope.backend.store.trace import TraceSummary
from tests.integration.test_trace_store import T0, event

RETRY = {
    "x-death": [
        {"queue": "retry.q", "reason": "expired", "count": 1, "exchange": "retry"},
        {"queue": "work", "reason": "rejected", "count": 1, "exchange": "events"},
    ]
}
REJECTED = {"x-death": [{"queue": "ship", "reason": "rejected", "count": 1}]}


def flow(correlation: str, first: int) -> list[dict[str, Any]]:
    """Nine events of one request from three services (one without a name), a TTL retry
    copy, a rejected copy and a `dlq.` wrapper, with times out of commit order."""
    original = {
        "id": f"evt_{first}",
        "type": "order.paid",
        "metadata": {"correlationId": correlation},
    }
    return [
        event(first, correlation, at=5, source="order-service"),
        event(first + 1, correlation, at=1, source="payment-service"),
        event(first + 2, correlation, source=None, received=first + 40),
        event(first + 3, correlation, at=2, headers=RETRY, body=dict(original)),
        event(first + 4, correlation, at=3, headers=REJECTED, body=dict(original), exchange="dlx"),
        event(
            first + 5,
            correlation,
            routing_key="dlq.order.paid",
            body={"originalEvent": dict(original), "error": "boom", "retries": 3},
        ),
        event(first + 6, correlation, at=7, source="payment-service"),
        event(first + 7, correlation, at=0.5, source="shipping-service"),
        event(first + 8, correlation, at=9, source="order-service"),
    ]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(database_url)
    yield opened
    await opened.close()


def comparable(s: TraceSummary) -> tuple[Any, ...]:
    return (
        s.events,
        s.first_at,
        s.last_at,
        [(v.source, v.events, v.first_at) for v in s.services],
        s.services_total,
        s.dead_letters,
        s.retries,
        s.newest,
    )


async def counted_by_scan(store: EventStore, correlation: str) -> TraceSummary:
    async with store.engine.connect() as conn:
        return (await store.trace._page_by_scan(conn, correlation, 0, None)).summary


async def test_the_summary_is_the_same_whatever_the_catalog_has_counted(
    store: EventStore,
) -> None:
    rows = flow("req_cat", 1) + flow("req_other", 100) + flow("req_cat", 200)
    for start in range(0, len(rows), 4):
        await store.write(rows[start : start + 4])
    expected = await counted_by_scan(store, "req_cat")
    assert expected.events == 18 and (expected.dead_letters, expected.retries) == (4, 2)
    assert [v.source for v in expected.services][:2] == ["shipping-service", "payment-service"]

    catalog = CorrelationCatalog(store)
    catalog.batch = 5
    seen = [comparable(await store.trace.summary("req_cat"))]  # nothing counted yet
    while await catalog.catalog_some():
        seen.append(comparable(await store.trace.summary("req_cat")))
    assert catalog.counted == len(rows) and len(seen) == 7
    assert seen == [comparable(expected)] * len(seen)

    later = flow("req_cat", 300)  # recorded after the catalog caught up: added, not lost
    await store.write(later)
    grown = await store.trace.summary("req_cat")
    assert grown.events == 27
    assert comparable(grown) == comparable(await counted_by_scan(store, "req_cat"))
    page = await store.trace.page("req_cat", 5)
    assert len(page.rows) == 5 and page.next is not None
    # At 0.5 s in three flows: the earliest in event time, ties in commit order.
    assert [r["event_id"] for r in page.rows[:3]] == ["evt_8", "evt_207", "evt_307"]


async def test_a_key_the_catalog_cannot_vouch_for_is_counted_from_its_events(
    store: EventStore,
) -> None:
    await store.write(flow("req_vouch", 1))
    catalog = CorrelationCatalog(store)
    while await catalog.catalog_some():
        pass
    assert (await store.trace.summary("req_vouch")).events == 9
    # As if another id had landed on the same 64-bit key first: the catalog's counts are
    # someone else's, and the trace must not show them.
    async with store.engine.begin() as conn:
        await conn.execute(
            update(correlation_services)
            .where(correlation_services.c.correlation_key == id_key("req_vouch"))
            .values(correlation_id="req_someone_else", events=999, dead=500)
        )
    summary = await store.trace.summary("req_vouch")
    assert (summary.events, summary.dead_letters) == (9, 2)


async def test_two_catalogs_over_one_database_count_each_event_once(store: EventStore) -> None:
    await store.write(flow("req_twice", 1))
    first, second = CorrelationCatalog(store), CorrelationCatalog(store)
    start = await store.correlations.progress()
    rows = await store.correlations.pending(start, 100)
    end_saved = await first.save(service_rows(rows), start, type(start).of(rows[-1]))
    late = await second.save(service_rows(rows), start, type(start).of(rows[-1]))
    assert (end_saved, late) == (True, False)
    assert (await store.trace.summary("req_twice")).events == 9


def test_ids_or_services_sharing_a_key_in_one_batch_mark_the_row_mixed() -> None:
    rows = [
        {
            "correlation_key": 7,
            "correlation_id": ident,
            "source_key": 3,
            "source": source,
            "event_at": T0 + dt.timedelta(seconds=i),
            "dead_letter": None,
        }
        for i, (ident, source) in enumerate([("a", "s"), ("a", "s"), ("b", "s"), ("a", "t")])
    ]
    assert [r["mixed"] for r in service_rows(rows[:2])] == [False]
    assert [r["mixed"] for r in service_rows(rows[:3])] == [True]
    assert [r["mixed"] for r in service_rows([rows[0], rows[3]])] == [True]
    counted = service_rows(rows[:2])[0]
    assert (counted["events"], counted["first_at"], counted["last_at"]) == (
        2,
        T0,
        T0 + dt.timedelta(seconds=1),
    )


async def test_the_recent_list_is_exact_from_the_catalog_and_capped_only_without_it(
    store: EventStore,
) -> None:
    await store.write(flow("req_list", 1) + flow("req_other", 100))
    catalog = CorrelationCatalog(store)
    catalog.batch = 7  # the catalog stops part-way: the rest is counted since its progress
    await catalog.catalog_some()
    await store.write(flow("req_list", 200))
    listed = {c.correlation_id: c.summary for c in await store.trace.recent(cap=5)}
    assert (
        comparable(listed["req_list"])[:-1]
        == comparable(await counted_by_scan(store, "req_list"))[:-1]
    )  # (the list carries no newest cursor)
    assert listed["req_list"].events == 18 and not listed["req_list"].capped

    async with store.engine.begin() as conn:  # another id on this key: counted, capped
        await conn.execute(
            update(correlation_services)
            .where(correlation_services.c.correlation_key == id_key("req_list"))
            .values(mixed=True)
        )
    capped = {c.correlation_id: c.summary for c in await store.trace.recent(cap=5)}
    assert capped["req_list"].capped and capped["req_list"].events == 5
    assert capped["req_other"].events == 9 and not capped["req_other"].capped
