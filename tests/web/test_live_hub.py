"""The live hub over the real change feed and store: each event counted and pushed exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from eventscope.backend.changefeed import ChangeFeed
from eventscope.backend.store.eventstore import EventStore
from eventscope.web.live import LiveHub, Renderers
from tests.conftest import eventually
from tests.web.conftest import delivery, store


async def _status() -> str:
    return "status"


async def _no_contents(ids: list[int]) -> dict[int, dict[str, Any]]:
    return {}


RENDERERS = Renderers(
    rows=lambda rows, new, masked: "rows:" + ",".join(str(r["id"]) for r in rows) + f"/{new}",
    paused=lambda missed: f"paused:{missed}",
    status=_status,
    contents=_no_contents,
)


@pytest.fixture
async def event_store(sqlite_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(sqlite_url)
    yield opened
    await opened.close()


async def run_hub(feed: ChangeFeed, hub: LiveHub, body: Callable[[], Any]) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(feed.run(stop)), asyncio.create_task(hub.run(stop))]
    try:
        await eventually(lambda: hub.total is not None, 10, "the feed to start")
        await body()
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


def hub_over(event_store: EventStore, max_rows: int = 10) -> tuple[ChangeFeed, LiveHub]:
    feed = ChangeFeed(event_store, poll_interval=0.02)
    return feed, LiveHub(feed, RENDERERS, max_rows=max_rows, flush_every=0.01, status_every=60)


async def test_event_committed_while_the_feed_starts_is_counted_once(
    sqlite_url: str, event_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit right after the feed's starting snapshot is counted once, by the next read."""
    snapshot = event_store.events.position

    async def snapshot_then_commit() -> Any:
        taken = await snapshot()
        await store(sqlite_url, delivery("landed.during.startup"))
        return taken

    monkeypatch.setattr(event_store.events, "position", snapshot_then_commit)
    feed, hub = hub_over(event_store)

    async def body() -> None:
        await eventually(
            lambda: feed.position is not None and feed.position.id >= 1, 10, "the row read"
        )
        for _ in range(3):  # more reads change nothing: no new rows
            assert await feed.deliver() == 0
        assert hub.total == 1

    await run_hub(feed, hub, body)


async def test_each_new_event_reaches_a_subscriber_once(
    sqlite_url: str, event_store: EventStore
) -> None:
    feed, hub = hub_over(event_store)
    subscriber = hub.subscribe()

    async def body() -> None:
        first = await store(sqlite_url, delivery("one"), delivery("two"))
        assert await asyncio.wait_for(subscriber.next(), 10) == f"rows:{first[1]},{first[0]}/2"
        second = await store(sqlite_url, delivery("three"))
        assert await asyncio.wait_for(subscriber.next(), 10) == f"rows:{second[0]}/1"
        assert hub.total == 3

    await run_hub(feed, hub, body)


async def test_burst_larger_than_the_live_window_reports_what_was_left_out(
    sqlite_url: str, event_store: EventStore
) -> None:
    feed, hub = hub_over(event_store, max_rows=3)
    subscriber = hub.subscribe()

    async def body() -> None:
        ids = await store(sqlite_url, *(delivery(f"burst.{i}") for i in range(8)))
        message = await asyncio.wait_for(subscriber.next(), 10)
        assert message == f"rows:{ids[7]},{ids[6]},{ids[5]}/8"
        assert hub.total == 8

    await run_hub(feed, hub, body)


async def test_paused_subscriber_gets_the_running_count_of_missed_events(
    sqlite_url: str, event_store: EventStore
) -> None:
    feed, hub = hub_over(event_store)
    subscriber = hub.subscribe()

    async def body() -> None:
        hub.pause(subscriber)
        assert await subscriber.next() == "paused:0"
        await store(sqlite_url, delivery("a"), delivery("b"))
        assert await asyncio.wait_for(subscriber.next(), 10) == "paused:2"
        await store(sqlite_url, delivery("c"))
        assert await asyncio.wait_for(subscriber.next(), 10) == "paused:3"

    await run_hub(feed, hub, body)
