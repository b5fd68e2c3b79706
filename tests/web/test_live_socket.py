"""The live websocket: new rows pushed as htmx out-of-band fragments, pause/resume, refusals."""

from __future__ import annotations

import html
import queue
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient, WebSocketTestSession

from tests.conftest import eventually
from tests.web.conftest import ORIGIN, delivery, hub_ready

Client = AsyncTestClient[Litestar]
NEW_ROWS = 'hx-swap-oob="afterbegin:#rows"'
RESET_ROWS = '<tbody id="rows" hx-swap-oob="true"'


def receive_until(
    session: WebSocketTestSession, wanted: Callable[[str], bool], what: str, timeout: float = 15
) -> tuple[str, list[str]]:
    """Messages up to the first one `wanted` accepts (status updates arrive in between)."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {what} within {timeout}s; got {seen!r}")
        try:
            message = session.receive_text(timeout=remaining)
        except queue.Empty:
            continue
        seen.append(message)
        if wanted(message):
            return message, seen


def missed_count(message: str) -> int | None:
    if 'id="live-controls"' not in message:
        return None
    found = re.search(r'<b id="missed">([\d,]+)</b>', message)
    return int(found.group(1).replace(",", "")) if found else None


@asynccontextmanager
async def connect(client: Client, app: Litestar) -> AsyncIterator[WebSocketTestSession]:
    """An open live socket whose subscription the hub already holds."""
    await hub_ready(app)
    hub = app.state.web.hub
    before = len(hub.subscribers)
    with await client.websocket_connect("/ws/live", headers={"origin": ORIGIN}) as session:
        await eventually(lambda: len(hub.subscribers) > before, 10, "the socket to subscribe")
        yield session


async def test_new_events_are_pushed_as_rows(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    async with connect(client, app) as session:
        ids = await put(delivery("live.first"), delivery("live.second"))
        message, _ = receive_until(session, lambda m: NEW_ROWS in m, "new rows")
        assert "live.first" in message
        assert "live.second" in message
        assert message.index("live.second") < message.index("live.first")  # newest first
        for event_id in ids:
            assert f'<tr id="e{event_id}"' in message


async def caught_up(app: Litestar, ids: list[int]) -> None:
    """The hub has read past these rows (they went to whoever was subscribed then)."""
    hub = app.state.web.hub
    await eventually(
        lambda: hub.position is not None and hub.position.id >= max(ids),
        10,
        f"the hub to read past row {max(ids)}",
    )


async def test_events_already_published_are_not_pushed_again(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    await caught_up(app, await put(delivery("old.event")))
    async with connect(client, app) as session:
        await put(delivery("fresh.event"))
        message, seen = receive_until(session, lambda m: NEW_ROWS in m, "new rows")
        assert "fresh.event" in message
        assert not any("old.event" in m for m in seen)


async def test_pause_sends_only_a_counter_and_resume_resets_the_rows(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    await caught_up(app, await put(delivery("before.pause")))
    async with connect(client, app) as session:
        session.send_json({"action": "pause"})
        receive_until(session, lambda m: missed_count(m) == 0, "the paused controls")

        await put(
            delivery("while.paused.1"), delivery("while.paused.2"), delivery("while.paused.3")
        )
        message, seen = receive_until(session, lambda m: missed_count(m) == 3, "missed == 3")
        assert "Paused" in message
        assert not any(NEW_ROWS in m or "while.paused" in m for m in seen)

        await put(delivery("while.paused.4"))
        _, seen = receive_until(session, lambda m: missed_count(m) == 4, "missed == 4")
        assert not any(NEW_ROWS in m for m in seen)

        session.send_json({"action": "resume"})
        message, _ = receive_until(session, lambda m: RESET_ROWS in m, "the reset rows")
        for key in ("before.pause", "while.paused.1", "while.paused.4"):
            assert key in message
        assert message.index("while.paused.4") < message.index("before.pause")
        assert "Paused" not in message
        assert "● live" in message

        await put(delivery("after.resume"))
        message, _ = receive_until(session, lambda m: NEW_ROWS in m, "rows after resume")
        assert "after.resume" in message


async def test_events_arriving_between_page_load_and_socket_connect_are_not_lost(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    """The browser renders the page, then loads htmx and opens the socket a moment later."""
    await caught_up(app, await put(delivery("shown.on.page")))
    page = (await client.get("/", headers={"accept": "text/html"})).text
    assert "shown.on.page" in page
    socket_url = html.unescape(re.search(r'ws-connect="([^"]+)"', page).group(1))  # type: ignore[union-attr]

    # an event lands while the browser is still starting up, and the hub moves past it
    await caught_up(app, await put(delivery("between.load.and.connect")))

    hub = app.state.web.hub
    with await client.websocket_connect(socket_url, headers={"origin": ORIGIN}) as session:
        await eventually(lambda: len(hub.subscribers) == 1, 10, "the socket to subscribe")
        _, seen = receive_until(
            session,
            lambda m: "between.load.and.connect" in m,
            "the event that arrived in between",
            5,
        )
        assert "shown.on.page" not in "".join(seen), "rows already on the page were sent again"


async def test_unknown_messages_are_ignored(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    async with connect(client, app) as session:
        session.send_text("not json")
        session.send_json({"action": "drop-tables"})
        session.send_json(["pause"])
        await put(delivery("still.live"))
        message, _ = receive_until(session, lambda m: NEW_ROWS in m, "new rows")
        assert "still.live" in message


async def test_live_rows_escape_hostile_routing_keys(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    async with connect(client, app) as session:
        await put(delivery("<script>alert(1)</script>", b'"><img src=x onerror=alert(1)>'))
        message, _ = receive_until(session, lambda m: NEW_ROWS in m, "new rows")
        assert "<script>alert" not in message
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message


async def test_status_bar_is_pushed_periodically(client: Client, app: Litestar) -> None:
    async with connect(client, app) as session:
        message, _ = receive_until(session, lambda m: 'id="status"' in m, "a status update")
        assert 'hx-swap-oob="true"' in message
        assert "broker unreachable" in message


async def test_socket_without_authentication_is_refused(anon: Client) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        session = await anon.websocket_connect("/ws/live", headers={"origin": ORIGIN})
        with session:
            session.receive_text(timeout=5)
    assert refused.value.code == 4401


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://testserver.local.evil.example",
        "null",
        "https://evil.example:443",
    ],
)
async def test_socket_from_a_foreign_origin_is_refused(client: Client, origin: str) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        session = await client.websocket_connect("/ws/live", headers={"origin": origin})
        with session:
            session.receive_text(timeout=5)
    assert refused.value.code == 4403


async def test_socket_without_origin_is_refused(client: Client) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        session = await client.websocket_connect("/ws/live")
        with session:
            session.receive_text(timeout=5)
    assert refused.value.code == 4403


async def test_closed_socket_unsubscribes(client: Client, app: Litestar) -> None:
    hub = app.state.web.hub
    async with connect(client, app):
        assert len(hub.subscribers) == 1
    await eventually(lambda: len(hub.subscribers) == 0, 10, "the hub to drop the subscriber")
