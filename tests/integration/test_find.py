"""Finding events: every parameter of the filter language on both databases, with hostile
values, answered by the store (backend/store/search.py) and the full-text index."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.filters import parse_filter
from eventscope.backend.redaction import Redactor
from eventscope.backend.search_index import SearchIndexer
from eventscope.backend.store import search as search_module
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import ORIGIN, Cursor

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def event(
    n: int,
    routing_key: str,
    *,
    correlation: str = "req_1",
    source: str | None = "order-service",
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    exchange: str = "events",
    minutes: int = 0,
    **body: Any,
) -> dict[str, Any]:
    document = {
        "id": f"evt_{n}",
        "eventType": body.pop("event_type", "OrderCreated"),
        "aggregateType": body.pop("aggregate_type", "Order"),
        "aggregateId": body.pop("aggregate_id", f"order_{n}"),
        "version": 1,
        "data": body.pop("data", {"orderId": f"order_{n}", "total": 10 + n}),
        "metadata": {"correlationId": correlation, "causationId": body.pop("causation", None)},
        **body,
    }
    if source is not None:
        document["metadata"]["source"] = source
    delivery = Delivery(
        exchange,
        routing_key,
        False,
        properties or {"message_id": f"msg_{n}"},
        headers,
        json.dumps(document, ensure_ascii=False).encode(),
        T0 + dt.timedelta(minutes=minutes),
    )
    return to_row(delivery, 1 << 20)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(database_url)
    yield opened
    await opened.close()


async def find(store: EventStore, mask: Redactor | None = None, **params: Any) -> list[str]:
    """The event ids a filter selects, newest first."""
    f = parse_filter(
        {k: v if isinstance(v, list) else [v] for k, v in params.items()},
        now=T0 + dt.timedelta(hours=1),
    )
    page = (await store.search.page(f, 100, mask=mask)).page
    return [row["event_id"] for row in page.rows]


async def index(store: EventStore) -> None:
    """Index everything stored (on Postgres the newest rows may wait a moment behind another
    session's open transaction: the indexer then says it is behind, and is asked again)."""
    indexer = SearchIndexer(store, Redactor())
    for _ in range(600):
        while await indexer.index_some():
            pass
        if indexer.behind == 0.0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"search is still {indexer.behind} s behind")


async def test_every_parameter_selects_exactly_its_events(store: EventStore) -> None:
    await store.write(
        [
            event(1, "order.created", correlation="req_1"),
            event(2, "order.paid", correlation="req_1", event_type="OrderPaid", causation="evt_1"),
            event(
                3,
                "payment.failed",
                correlation="req_2",
                source=None,
                properties={"message_id": "msg_3", "app_id": "payments"},
                minutes=10,
            ),
            event(
                4,
                "dlq.order.created",
                correlation="req_2",
                exchange="events.dlx",
                headers={
                    "x-death": [{"queue": "q", "reason": "rejected"}],
                    "x-tenant": "acme",
                    "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
                    "attempt": 3,
                },
                minutes=20,
            ),
            event(
                5,
                "order.created.eu",
                correlation="req_3",
                aggregate_type="Invoice",
                aggregate_id="order_1",
                data={"orderId": "order_42", "note": "card declined"},
            ),
        ]
    )
    await index(store)
    assert await find(store, routing_key="order.*") == ["evt_2", "evt_1"]
    assert await find(store, routing_key="order.#") == ["evt_5", "evt_2", "evt_1"]
    assert await find(store, routing_key=["#.failed", "*.paid"]) == ["evt_3", "evt_2"]
    assert await find(store, routing_key_exact="order.*") == []
    assert await find(store, exchange="events.dlx") == ["evt_4"]
    assert await find(store, type="OrderPaid") == ["evt_2"]
    assert await find(store, correlation_id="req_2") == ["evt_4", "evt_3"]
    assert await find(store, causation_id="evt_1") == ["evt_2"]
    assert await find(store, aggregate_type="Order", aggregate_id="order_1") == ["evt_1"]
    assert await find(store, aggregate_id="order_1") == ["evt_5", "evt_1"]
    assert await find(store, aggregate_type="Invoice") == ["evt_5"]
    assert await find(store, source="payments") == ["evt_3"], "app_id when no metadata.source"
    assert await find(store, source="order-service", type="OrderPaid") == ["evt_2"]
    assert await find(store, trace_id=TRACE) == ["evt_4"]
    assert await find(store, message_id="msg_3") == ["evt_3"]
    assert await find(store, dead_letter="true") == ["evt_4"]
    assert len(await find(store, dead_letter="false")) == 4
    assert await find(store, since="2026-12-01T10:05:00Z") == ["evt_4", "evt_3"]
    assert await find(store, until="2026-12-01T10:15:00Z", correlation_id="req_2") == ["evt_3"]
    assert await find(store, header="x-tenant:acme") == ["evt_4"]
    assert await find(store, header="attempt:3") == ["evt_4"], "compared as plain text"
    assert await find(store, header="x-tenant:other") == []
    assert await find(store, field="data.orderId:order_42", type="OrderCreated") == ["evt_5"]
    assert await find(store, field="data.total:12", since="1d") == ["evt_2"]
    assert await find(store, q="card declined") == ["evt_5"]
    assert await find(store, q='"declined card"') == []
    assert await find(store, q="order -eu", routing_key="order.#") == ["evt_2", "evt_1"]
    assert await find(store, q="acme") == ["evt_4"], "headers are searched too"


@pytest.mark.parametrize(
    ("stored", "searched"),
    [
        ("req_%", "req_1"),  # % is no wildcard
        ("req_1", "req_%"),
        ("req.1", "req_1"),  # _ is no wildcard
        ("rеq_7", "req_7"),  # Cyrillic е is another id
        ("req_7", "rеq_7"),
        ("req_7\u202e", "req_7"),
        ("req_7", "req_"),  # a prefix is not the id
        ("a\x00b", "a\u2400b"),  # NUL is not the visible ␀ it is shown as
    ],
)
async def test_look_alike_values_never_match(store: EventStore, stored: str, searched: str) -> None:
    await store.write([event(1, "k", correlation=stored)])
    assert await find(store, correlation_id=searched) == []
    assert await find(store, correlation_id=stored) == ["evt_1"]


async def test_hostile_values_are_data(store: EventStore) -> None:
    hostile = ["%", "_", "'", '"', "\\", "'; DROP TABLE events; --", "\u202eevil", "🐇", "a" * 3000]
    await store.write([event(i, "k", correlation=v) for i, v in enumerate(hostile)])
    for i, value in enumerate(hostile):
        assert await find(store, correlation_id=value) == [f"evt_{i}"], repr(value)


async def test_viewers_cannot_find_what_they_see_masked(store: EventStore) -> None:
    await store.write(
        [
            event(
                1,
                "k",
                headers={"authorization": "Bearer s3cret-token"},
                data={"password": "horse battery staple", "card": "4111 1111 1111 1111"},
            ),
        ]
    )
    await index(store)
    viewer = Redactor()
    assert await find(store, q="horse") == [], "the index holds masked text, for everyone"
    assert await find(store, q="s3cret") == []
    assert await find(store, q="4111") == []
    assert await find(store, mask=viewer, header="authorization:Bearer s3cret-token") == []
    assert await find(store, header="authorization:Bearer s3cret-token") == ["evt_1"]
    assert (
        await find(store, mask=viewer, field="data.password:horse battery staple", routing_key="k")
        == []
    )


async def test_filtered_pages_never_overlap_or_skip(store: EventStore) -> None:
    await store.write([event(i, "order.created" if i % 2 else "other.k") for i in range(30)])
    f = parse_filter({"routing_key": ["order.*"]})
    seen: list[str] = []
    older = None
    for _ in range(10):
        found = await store.search.page(f, 4, older_than=older)
        seen += [r["event_id"] for r in found.page.rows]
        older = found.page.older
        if older is None:
            break
    assert seen == [f"evt_{i}" for i in range(29, 0, -2)]


@pytest.mark.parametrize(
    "extra", [{}, {"routing_key": ["order.*"]}, {"since": ["2026-12-01T09:00:00Z"]}]
)
async def test_text_search_pages_both_ways_without_losing_or_repeating(
    store: EventStore, extra: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alone, `q` is led by the text index (SQLite); with another filter each row is probed:
    either way every match is seen once, newest first going older and oldest first back."""
    await store.write(
        [event(i, "order.created", data={"note": "gift" if i % 3 else "plain"}) for i in range(40)]
    )
    await index(store)
    f = parse_filter({"q": ["gift"], **extra})
    expected = [f"evt_{i}" for i in range(39, -1, -1) if i % 3]
    seen: list[str] = []
    older = None
    while True:
        page = (await store.search.page(f, 7, older_than=older)).page
        seen += [r["event_id"] for r in page.rows]
        if page.older is None:
            break
        older = page.older
    assert seen == expected
    back: list[str] = []
    newer: Cursor | None = ORIGIN
    while newer is not None:
        page = (await store.search.page(f, 7, newer_than=newer)).page
        back = [r["event_id"] for r in page.rows] + back  # each page is shown newest first
        newer = page.newer
    assert back == expected, "from the oldest back to the newest, each match once"
    assert await store.search.count(f) == (len(expected), False)
    monkeypatch.setattr(search_module, "COUNT_CAP", 5)
    assert await store.search.count(f) == (5, True)


async def test_counts_are_exact_up_to_a_cap(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.write([event(i, "order.created") for i in range(12)])
    f = parse_filter({"routing_key": ["order.created"]})
    assert await store.search.count(f) == (12, False)
    monkeypatch.setattr(search_module, "COUNT_CAP", 5)
    assert await store.search.count(f) == (5, True)


async def test_a_field_scan_stops_at_its_bound_and_says_where_to_go_on(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "SCAN_LIMIT", 10)
    monkeypatch.setattr(search_module, "SCAN_CHUNK", 5)
    rows = [event(i, "k", data={"orderId": "x"}) for i in range(30)]
    rows[3] = event(3, "k", data={"orderId": "wanted"})
    await store.write(rows)
    f = parse_filter({"field": ["data.orderId:wanted"], "routing_key": ["k"]})
    first = await store.search.page(f, 5)
    assert first.scanned_out and first.page.rows == []
    assert first.page.older is not None, "the next page continues the scan"
    rest: list[str] = []
    older = first.page.older
    while older is not None:
        more = await store.search.page(f, 5, older_than=older)
        rest += [r["event_id"] for r in more.page.rows]
        older = more.page.older
    assert rest == ["evt_3"]


async def test_the_indexer_reports_how_far_behind_search_is(store: EventStore) -> None:
    await store.write([event(i, "k") for i in range(3)])
    indexer = SearchIndexer(store, Redactor())
    assert indexer.behind is None
    # On Postgres rows may wait behind another session's open transaction: then the indexer
    # says it is behind instead of claiming it caught up.
    for _ in range(600):
        await indexer.index_some()
        if indexer.indexed == 3:
            break
        assert indexer.behind is not None and indexer.behind > 0.0
        await asyncio.sleep(0.05)
    assert indexer.indexed == 3
    await indexer.index_some()
    assert indexer.behind == 0.0
    assert await find(store, q="evt_2") == ["evt_2"]
