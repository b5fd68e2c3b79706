"""The HTTP side of `?wait=`: the parameters, the client leaving, the answer's shape.

`/api/events` and `/api/correlations/{id}/events` take the same three parameters; the wait
itself is the backend's (backend/event_wait.py). A client that disconnects ends its wait: the
ASGI server tells the app with an `http.disconnect` message, which a small task listens for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from eventscope.backend.event_wait import TooManyWaiters, WaitRoom, wait_for_events
from eventscope.backend.filters import EventFilter
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor
from eventscope.web.event_view import summary
from eventscope.web.request import AnyRequest

MAX_WAIT_PARAMETER = 3600.0  # larger values are refused; anything up to it is capped by settings

WaitParameter = Annotated[
    float | None,
    QueryParameter(
        ge=0,
        le=MAX_WAIT_PARAMETER,
        description="Seconds to wait for `min_count` matching events after `after` (long-poll); "
        "capped by EVENTSCOPE_MAX_WAIT_SECONDS. The answer is then oldest first.",
    ),
]
MinCountParameter = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        le=1000,
        description="With `wait`: answer as soon as this many matching events are there "
        "(default 1; at most `limit`).",
    ),
]


def wait_room(state: State) -> WaitRoom:
    """The app's wait room (made by create_app, fed by the runtime's change feed)."""
    room: WaitRoom = state.waits
    return room


@contextlib.asynccontextmanager
async def client_gone(request: AnyRequest) -> AsyncIterator[asyncio.Event]:
    """An event set when the client disconnects, for the duration of the block. A GET has no
    body: the first message is the (empty) request, the next one only comes on disconnect."""
    gone = asyncio.Event()

    async def listen() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                gone.set()
                return

    task = asyncio.create_task(listen())
    try:
        yield gone
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def long_poll(
    request: AnyRequest,
    store: EventStore,
    settings: Settings,
    event_filter: EventFilter,
    *,
    after: Cursor | None,
    wait: float,
    min_count: int | None,
    limit: int,
    mask: Redactor | None,
) -> dict[str, Any]:
    """Wait for matching events after `after` (from the first when None) and answer with them,
    oldest first, whether the wait ran out (`timed_out`) and where to continue."""
    wanted = 1 if min_count is None else min_count
    if wanted > limit:
        raise ValidationException(f"min_count ({wanted}) is larger than limit ({limit})")
    granted = min(wait, float(settings.max_wait_seconds))
    async with client_gone(request) as gone:
        try:
            result = await wait_for_events(
                store,
                wait_room(request.app.state),
                event_filter,
                after_cursor=after,
                min_count=wanted,
                limit=limit,
                wait_seconds=granted,
                mask=mask,
                gone=gone,
            )
        except TooManyWaiters as exc:
            raise HTTPException(
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
                detail=str(exc),
                headers={"retry-after": "1"},
            ) from None
    return {
        "items": [summary(row, mask) for row in result.rows],
        "count": len(result.rows),
        "timed_out": result.timed_out,
        "next_after": str(result.next_after),
        "wait_seconds": granted,
        "waited_seconds": round(result.waited, 3),
    }
