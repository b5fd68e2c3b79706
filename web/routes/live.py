"""The live websocket: rendered fragments from the hub, pause/resume from the page."""

from __future__ import annotations

import asyncio
import contextlib
import json

from litestar import websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from eventscope.backend.filters import FilterError
from eventscope.backend.store.paging import Cursor
from eventscope.web.auth import origin_allowed
from eventscope.web.context import WebContext
from eventscope.web.event_view import masked_row
from eventscope.web.filtering import filter_from, refuse_masked_values
from eventscope.web.live import Subscriber
from eventscope.web.request import AnySocket
from eventscope.web.templating import render


@websocket("/ws/live")
async def live_socket(socket: AnySocket, web: NamedDependency[WebContext]) -> None:
    settings = web.settings
    if origin_allowed(socket.scope, settings.allowed_origins) is not True:
        await socket.close(code=4403, reason="origin not allowed")
        return
    await socket.accept()
    hub = web.hub
    mask = web.mask_for(socket.scope["state"]["principal"])
    try:
        event_filter = filter_from(socket.query_params.multi_items())
        refuse_masked_values(event_filter, mask)
    except FilterError as exc:
        await socket.close(code=4400, reason=str(exc)[:120])
        return
    subscriber = hub.subscribe(masked=mask is not None, event_filter=event_filter)
    sender: asyncio.Task[None] | None = None
    try:  # from here on, whatever fails, the subscription ends with the socket
        after = _cursor(socket.query_params.get("after"))
        joined = subscriber.joined_at
        if after is not None and joined is not None and after < joined:
            # Rows stored between the page render and this connection: the hub will not send them.
            rows = await web.store.events.committed_after(after, settings.live_rows, until=joined)
            rows = await hub.select(subscriber, rows)
            if rows:
                rows.reverse()
                subscriber.push(hub.renderers.rows(rows, len(rows), subscriber.masked))
        sender = asyncio.create_task(_send(socket, subscriber))
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
                if subscriber.filter is None:
                    page = await web.store.events.page(settings.live_rows)
                else:
                    found = await web.store.search.page(
                        subscriber.filter, settings.live_rows, mask=mask
                    )
                    page = found.page
                subscriber.push(
                    render(
                        web.env,
                        "_live_reset.html",
                        rows=[masked_row(row, mask) for row in page.rows],
                        live_rows=settings.live_rows,
                        exchanges=settings.exchanges,
                    )
                )
    finally:
        hub.unsubscribe(subscriber)
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender


async def _send(socket: AnySocket, subscriber: Subscriber) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await socket.send_text(await subscriber.next())


def _cursor(value: str | None) -> Cursor | None:
    if value is None:
        return None
    try:
        return Cursor.parse(value)
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
