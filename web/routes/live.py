"""The live websocket: rendered fragments from the hub, pause/resume from the page."""

from __future__ import annotations

import asyncio
import contextlib
import json

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from eventscope.backend.live import Subscriber
from eventscope.backend.store.queries import events_after, list_events
from eventscope.web.auth import origin_allowed, principal_of
from eventscope.web.event_view import masked_row
from eventscope.web.services import Services
from eventscope.web.templating import render


@websocket("/ws/live")
async def live_socket(socket: WebSocket, services: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
    if origin_allowed(socket.scope, services.settings.allowed_origins) is not True:
        await socket.close(code=4403, reason="origin not allowed")
        return
    await socket.accept()
    hub = services.hub
    mask = services.mask_for(principal_of(socket))
    subscriber = hub.subscribe(masked=mask is not None)
    after = _int(socket.query_params.get("after"))
    if after is not None and after < subscriber.joined_at:
        # Rows stored between the page render and this connection: the hub will not send them.
        rows, new = await events_after(
            services.engine, after, services.settings.live_rows, subscriber.joined_at
        )
        if rows:
            subscriber.push(hub.renderers.rows(rows, new, subscriber.masked))
    sender = asyncio.create_task(_send(socket, subscriber))
    try:
        while True:
            try:
                message = await socket.receive_text()
            except WebSocketDisconnect:
                break
            action = _action(message)
            if action == "pause":
                hub.pause(subscriber)
            elif action == "resume":
                hub.resume(subscriber)
                rows = await list_events(services.engine, services.settings.live_rows)
                subscriber.push(
                    render(
                        services.env,
                        "_live_reset.html",
                        rows=[masked_row(row, mask) for row in rows],
                        live_rows=services.settings.live_rows,
                        exchanges=services.settings.exchanges,
                    )
                )
    finally:
        hub.unsubscribe(subscriber)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _send(socket: WebSocket, subscriber: Subscriber) -> None:  # type: ignore[type-arg]
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await socket.send_text(await subscriber.next())


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _action(message: str) -> str | None:
    """htmx ws-send posts the element's values as JSON; only `action` is read."""
    try:
        data = json.loads(message)
    except ValueError:
        return None
    action = data.get("action") if isinstance(data, dict) else None
    return action if action in {"pause", "resume"} else None
