"""The long-poll (`?wait=`): an answer as soon as the events are there, woken by the change
feed, holding no database connection while it waits, and not read again for unrelated commits.

The first tests drive the backend's wait directly on both databases (a test stores events from
another task); the last ones go through HTTP on a real server whose recorder takes the events
from RabbitMQ, as an end-to-end test does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from litestar import Litestar

from eventscope.backend.changefeed import ChangeFeed
from eventscope.backend.envelope import to_row
from eventscope.backend.event_wait import WaitResult, WaitRoom, wait_for_events
from eventscope.backend.filters import EventFilter, multi, parse_filter
from eventscope.backend.store.eventstore import EventStore
from eventscope.web.app import create_app
from tests.conftest import Broker, Names, eventually, free_port, make_settings
from tests.web.conftest import delivery
from tests.web.serving import serving

WAIT = 30.0  # every wait here is long; an answer "well before it ends" comes in under BOUND
BOUND = 15.0


def only(**filters: str) -> EventFilter:
    return parse_filter(multi(filters.items()))


def order_event(routing_key: str, correlation: str, **headers: Any) -> Any:
    body = {"type": routing_key, "metadata": {"correlationId": correlation}}
    return delivery(routing_key, body, headers=headers or None)


@dataclass
class Following:
    """A store followed by a change feed and a wait room (what the app runs), and a second
    store for the waits themselves, so its pool shows what a waiter holds."""

    writer: EventStore
    waits: EventStore
    feed: ChangeFeed
    room: WaitRoom

    async def put(self, *deliveries: Any) -> None:
        await self.writer.write([to_row(d, 1 << 20) for d in deliveries])
        self.feed.notify()  # as the in-process recorder does after its commit

    async def wait(self, event_filter: EventFilter, **kwargs: Any) -> WaitResult:
        kwargs.setdefault("after_cursor", None)
        kwargs.setdefault("limit", 100)
        kwargs.setdefault("min_count", 1)
        kwargs.setdefault("wait_seconds", WAIT)
        return await wait_for_events(self.waits, self.room, event_filter, **kwargs)


@asynccontextmanager
async def following(database_url: str) -> AsyncIterator[Following]:
    writer, waits = EventStore(database_url), EventStore(database_url)
    feed = ChangeFeed(writer, poll_interval=5.0)  # a slow fallback: wake-ups come from notify
    room = WaitRoom(feed)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(feed.run(stop)), asyncio.create_task(room.run(stop))]
    try:
        await asyncio.wait_for(feed.started.wait(), 10)
        yield Following(writer, waits, feed, room)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await writer.close()
        await waits.close()


async def waiting(f: Following, count: int = 1) -> None:
    await eventually(lambda: len(f.room) == count, 10, f"{count} waiter(s) to be registered")


async def test_the_answer_comes_when_the_events_do_not_when_the_wait_ends(
    database_url: str,
) -> None:
    async with following(database_url) as f:
        await f.put(order_event("order.created", "req-other"))
        began = time.monotonic()
        task = asyncio.create_task(f.wait(only(correlation_id="req-1"), min_count=3))
        await waiting(f)
        assert f.waits.engine.pool.checkedout() == 0, "no connection is held while waiting"

        async def publish() -> None:
            for key in ("order.created", "payment.succeeded", "order.confirmed"):
                await f.put(order_event(key, "req-1"))

        await asyncio.create_task(publish())
        result = await asyncio.wait_for(task, WAIT + 5)
        took = time.monotonic() - began
    assert not result.timed_out
    assert [r["routing_key"] for r in result.rows] == [
        "order.created",
        "payment.succeeded",
        "order.confirmed",
    ], "oldest first"
    assert took < BOUND, f"answered after {took:.1f} s of a {WAIT:.0f} s wait"
    assert str(result.next_after) == f"{result.rows[-1]['commit_seq']}-{result.rows[-1]['id']}"


async def test_a_wait_that_ends_empty_handed_returns_what_there_is(database_url: str) -> None:
    async with following(database_url) as f:
        await f.put(order_event("order.created", "req-2"))
        began = time.monotonic()
        result = await f.wait(only(correlation_id="req-2"), min_count=3, wait_seconds=0.5)
    assert result.timed_out
    assert [r["routing_key"] for r in result.rows] == ["order.created"]
    assert time.monotonic() - began >= 0.5
    assert result.waited >= 0.5


async def test_commits_the_filter_cannot_select_do_not_make_a_waiter_read(
    database_url: str,
) -> None:
    async with following(database_url) as f:
        task = asyncio.create_task(f.wait(only(correlation_id="req-3", routing_key="order.*")))
        await waiting(f)
        for n in range(5):  # other correlations, and this one on another routing key
            await f.put(order_event("order.created", f"someone-else-{n}"))
            await f.put(order_event("payment.failed", "req-3"))
        await eventually(lambda: f.feed.total is not None and f.feed.total >= 10, 10, "feed")
        await f.put(order_event("order.shipped", "req-3"))
        result = await asyncio.wait_for(task, WAIT + 5)
    assert [r["routing_key"] for r in result.rows] == ["order.shipped"]
    assert result.reads == 2, "the first read, and one after the batch that could match"


async def test_many_waiters_are_woken_only_by_their_own_events(database_url: str) -> None:
    async with following(database_url) as f:
        tasks = [
            asyncio.create_task(f.wait(only(correlation_id=f"crowd-{n}"), min_count=2))
            for n in range(50)
        ]
        await waiting(f, 50)
        await f.put(*(order_event("order.created", f"crowd-{n}") for n in range(50)))
        await f.put(*(order_event("order.paid", f"crowd-{n}") for n in range(50)))
        results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT + 10)
        assert f.waits.engine.pool.checkedout() == 0
    for n, result in enumerate(results):
        assert [r["correlation_id"] for r in result.rows] == [f"crowd-{n}"] * 2
        assert not result.timed_out
        assert result.reads <= 3, "one read, and one per batch that concerned it"


async def test_a_header_filter_is_checked_on_the_content_while_waiting(
    database_url: str,
) -> None:
    async with following(database_url) as f:
        task = asyncio.create_task(
            f.wait(only(correlation_id="req-4", header="x-tenant:acme"), min_count=1)
        )
        await waiting(f)
        await f.put(order_event("order.created", "req-4", **{"x-tenant": "other"}))
        await asyncio.sleep(0.2)
        assert not task.done(), "a row whose header differs does not answer the wait"
        await f.put(order_event("order.created", "req-4", **{"x-tenant": "acme"}))
        result = await asyncio.wait_for(task, WAIT + 5)
    assert len(result.rows) == 1
    assert "headers" not in result.rows[0], "summaries, as the API lists them"


async def test_a_client_that_leaves_ends_its_wait(database_url: str) -> None:
    async with following(database_url) as f:
        gone = asyncio.Event()
        task = asyncio.create_task(f.wait(only(correlation_id="req-5"), gone=gone))
        await waiting(f)
        gone.set()
        result = await asyncio.wait_for(task, 5)
        assert len(f.room) == 0
    assert result.timed_out and result.waited < BOUND


# -- over HTTP, events through RabbitMQ ------------------------------------------------------------


@contextmanager
def served(database_url: str, names: Names, **overrides: Any) -> Iterator[tuple[str, Litestar]]:
    """The app (recorder included) on a real server, as `eventscope serve` runs it."""
    port = free_port()
    settings = make_settings(
        database_url, names, token="tok", port=port, allowed_hosts=("127.0.0.1",), **overrides
    )
    app = create_app(settings, migrate=False)
    with serving(app, port) as url:
        yield url, app


AUTH = {"Authorization": "Bearer tok"}


async def publish_order(broker: Broker, routing_key: str, correlation: str) -> None:
    body = {"type": routing_key, "metadata": {"correlationId": correlation}}
    await broker.publish(routing_key, json.dumps(body).encode(), content_type="application/json")


async def test_over_http_the_answer_follows_the_publishes(
    database_url: str, names: Names, broker: Broker
) -> None:
    with served(database_url, names) as (url, app):
        room: WaitRoom = app.state.waits
        recorder = app.state.web.runtime.recorder
        await eventually(lambda: recorder.status.broker_connected, 20, "the recorder")
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=WAIT + 10) as http:
            began = time.monotonic()
            asking = asyncio.create_task(
                http.get("/api/correlations/req-http/events", params={"wait": WAIT, "min_count": 2})
            )
            await eventually(lambda: len(room) == 1, 10, "the request to wait")

            async def publish() -> None:
                await publish_order(broker, "order.created", "req-http")
                await publish_order(broker, "order.paid", "someone-else")
                await publish_order(broker, "payment.succeeded", "req-http")

            await asyncio.create_task(publish())
            answer = await asking
            took = time.monotonic() - began
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["timed_out"] is False
    assert [e["routing_key"] for e in data["items"]] == ["order.created", "payment.succeeded"]
    assert took < BOUND, f"answered after {took:.1f} s of a {WAIT:.0f} s wait"


async def test_over_http_the_wait_is_capped_and_a_leaving_client_ends_it(
    sqlite_url: str, names: Names, broker: Broker
) -> None:
    with served(sqlite_url, names, max_wait_seconds=1) as (url, app):
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=WAIT) as http:
            began = time.monotonic()
            answer = await http.get("/api/events", params={"type": "Nothing", "wait": 3600})
            assert answer.status_code == 200, answer.text
            assert answer.json()["timed_out"] is True
            assert answer.json()["wait_seconds"] == 1.0
            assert time.monotonic() - began < BOUND
    with served(sqlite_url, names, max_wait_seconds=60) as (url, app):
        room: WaitRoom = app.state.waits
        with pytest.raises(httpx.ReadTimeout):
            async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=1.0) as http:
                await http.get("/api/events", params={"type": "Nothing", "wait": 60})
        await eventually(lambda: len(room) == 0, 10, "the server to end the wait of a gone client")
