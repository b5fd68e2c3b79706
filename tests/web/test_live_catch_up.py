"""A live socket whose catch-up (or resume) query fails must not leave its subscription behind:
the hub would go on rendering and queueing for a socket nobody reads. The query fails for real:
the socket's Postgres database is dropped under the running app."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient

from tests.conftest import eventually, psql
from tests.web.conftest import ORIGIN, delivery, hub_ready
from tests.web.test_live_socket import caught_up, receive_until

Client = AsyncTestClient[Litestar]


@pytest.fixture
def web_db(pg_url: str) -> str:
    return pg_url


def drop_database(url: str) -> None:
    """The database goes away: every connection to it is closed, every query fails."""
    psql(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")


async def test_a_failing_catch_up_query_ends_the_subscription(
    client: Client, app: Litestar, put: Callable[..., Any], web_db: str
) -> None:
    await hub_ready(app)
    await caught_up(app, await put(delivery("before.the.database.went")))
    hub = app.state.web.hub
    assert not hub.subscribers
    drop_database(web_db)
    # `after` older than the hub's position: the socket first catches up from the store
    with (
        contextlib.suppress(WebSocketDisconnect),
        await client.websocket_connect("/ws/live?after=0-0", headers={"origin": ORIGIN}) as session,
    ):
        session.receive_text(timeout=10)  # the server closes: the query failed
    await eventually(lambda: not hub.subscribers, 10, "the hub to drop the failed subscriber")


async def test_a_failing_resume_query_ends_the_subscription(
    client: Client, app: Litestar, put: Callable[..., Any], web_db: str
) -> None:
    await hub_ready(app)
    hub = app.state.web.hub
    with (
        contextlib.suppress(WebSocketDisconnect),
        await client.websocket_connect("/ws/live", headers={"origin": ORIGIN}) as session,
    ):
        await eventually(lambda: len(hub.subscribers) == 1, 10, "the socket to subscribe")
        session.send_json({"action": "pause"})
        receive_until(session, lambda m: "Paused" in m, "the paused controls")
        drop_database(web_db)
        session.send_json({"action": "resume"})  # resume reads the first page again
        while True:
            session.receive_text(timeout=10)  # status updates, until the server closes
    await eventually(lambda: not hub.subscribers, 10, "the hub to drop the failed subscriber")
