"""The live hub's bookkeeping against a real store: each event counted and pushed exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend import live as live_module
from eventscope.backend.live import LiveHub, Renderers
from eventscope.backend.store.engine import create_engine
from tests.conftest import eventually
from tests.web.conftest import delivery, store


async def _status() -> str:
    return "status"


RENDERERS = Renderers(
    rows=lambda rows, new, masked: "rows:" + ",".join(str(r["id"]) for r in rows) + f"/{new}",
    paused=lambda missed: f"paused:{missed}",
    status=_status,
)


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(sqlite_url)
    yield engine
    await engine.dispose()


async def run_hub(hub: LiveHub, body: Callable[[], Any]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(hub.run(stop))
    try:
        await body()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_event_committed_while_the_hub_starts_is_counted_once(
    sqlite_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit right after the hub's starting snapshot is counted once, by the next tick."""
    snapshot = live_module.max_id_and_count

    async def snapshot_then_commit(e: AsyncEngine) -> tuple[int, int]:
        taken = await snapshot(e)
        await store(sqlite_url, delivery("landed.during.startup"))
        return taken

    monkeypatch.setattr(live_module, "max_id_and_count", snapshot_then_commit)
    hub = LiveHub(engine, RENDERERS, max_rows=10, interval=0.02, status_every=60)

    async def body() -> None:
        await eventually(lambda: hub.last_id >= 1, 10, "the hub to read the row")
        for _ in range(3):  # more ticks change nothing: no new rows
            await hub.tick()
        assert hub.total == 1

    await run_hub(hub, body)


async def test_each_new_event_reaches_a_subscriber_once(
    sqlite_url: str, engine: AsyncEngine
) -> None:
    hub = LiveHub(engine, RENDERERS, max_rows=10, interval=0.02, status_every=60)
    subscriber = hub.subscribe()

    async def body() -> None:
        await eventually(lambda: hub.total is not None, 10, "the hub to start")
        first = await store(sqlite_url, delivery("one"), delivery("two"))
        assert await asyncio.wait_for(subscriber.next(), 10) == f"rows:{first[1]},{first[0]}/2"
        second = await store(sqlite_url, delivery("three"))
        assert await asyncio.wait_for(subscriber.next(), 10) == f"rows:{second[0]}/1"
        assert hub.total == 3

    await run_hub(hub, body)


async def test_burst_larger_than_the_live_window_reports_what_was_left_out(
    sqlite_url: str, engine: AsyncEngine
) -> None:
    hub = LiveHub(engine, RENDERERS, max_rows=3, interval=0.02, status_every=60)
    subscriber = hub.subscribe()

    async def body() -> None:
        await eventually(lambda: hub.total is not None, 10, "the hub to start")
        ids = await store(sqlite_url, *(delivery(f"burst.{i}") for i in range(8)))
        message = await asyncio.wait_for(subscriber.next(), 10)
        assert message == f"rows:{ids[7]},{ids[6]},{ids[5]}/8"
        assert hub.total == 8

    await run_hub(hub, body)


async def test_paused_subscriber_gets_the_running_count_of_missed_events(
    sqlite_url: str, engine: AsyncEngine
) -> None:
    hub = LiveHub(engine, RENDERERS, max_rows=10, interval=0.02, status_every=60)
    subscriber = hub.subscribe()

    async def body() -> None:
        await eventually(lambda: hub.total is not None, 10, "the hub to start")
        hub.pause(subscriber)
        assert await subscriber.next() == "paused:0"
        await store(sqlite_url, delivery("a"), delivery("b"))
        assert await asyncio.wait_for(subscriber.next(), 10) == "paused:2"
        await store(sqlite_url, delivery("c"))
        assert await asyncio.wait_for(subscriber.next(), 10) == "paused:3"

    await run_hub(hub, body)
