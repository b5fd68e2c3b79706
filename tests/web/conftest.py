"""Web fixtures: the real app (no recorder) over a migrated store, and a way to put events in it.

The litestar test client runs the app, its lifespan (live hub) and every request in one portal
thread with its own event loop; the test stores events from its own loop with its own engine.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.web.app import create_app
from tests.conftest import Names, eventually, make_settings

TOKEN = "t0ken"
ORIGIN = "http://testserver.local"
NOW = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)


def delivery(
    routing_key: str = "order.created",
    body: bytes | dict[str, Any] = b"{}",
    *,
    exchange: str = "events",
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    redelivered: bool = False,
) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Delivery(exchange, routing_key, redelivered, properties or {}, headers, raw, NOW)


async def store(
    database_url: str, *deliveries: Delivery, max_body: int = 16 * 1024 * 1024
) -> list[int]:
    """Store deliveries in one batch through the real writer; returns their new row ids."""
    store = EventStore(database_url)
    try:
        before = await _max_id(store)
        await store.write([to_row(d, max_body) for d in deliveries])
        after = await _max_id(store)
    finally:
        await store.close()
    return list(range(before + 1, after + 1))


async def _max_id(store: EventStore) -> int:
    page = await store.events.page(1)
    return max((row["id"] for row in page.rows), default=0)


@pytest.fixture
def web_db(sqlite_url: str) -> str:
    """The store under the app; a test module may override it (e.g. with `database_url`)."""
    return sqlite_url


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(web_db: str, names: Names, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(web_db, names, token=TOKEN, **settings_overrides)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, run_recorder=False, migrate=False)


@pytest.fixture
async def anon(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client without credentials (the app's lifespan runs)."""
    async with AsyncTestClient(app) as client:
        yield client


@pytest.fixture
async def client(anon: AsyncTestClient[Litestar]) -> AsyncTestClient[Litestar]:
    """The same client, logged in through the printed login link (session cookie)."""
    response = await anon.get("/login", params={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert "eventscope_session" in anon.cookies
    return anon


@pytest.fixture
def put(web_db: str) -> Callable[..., Any]:
    """`await put(delivery(...), ...)` stores events in the app's database."""

    async def _put(*deliveries: Delivery, max_body: int = 16 * 1024 * 1024) -> list[int]:
        return await store(web_db, *deliveries, max_body=max_body)

    return _put


async def hub_ready(app: Litestar) -> None:
    """The live hub has read where the store ends; later events count as new."""
    hub = app.state.web.hub
    await eventually(lambda: hub.total is not None, 10, "the live hub to start")


async def csrf_token(client: AsyncTestClient[Litestar]) -> str:
    """The session's CSRF token, read from the page as htmx reads it (hx-headers on body)."""
    page = await client.get("/")
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)
