"""Per-request values every handler asks for, provided once through Litestar's dependency
injection: the store, the settings, who is asking and what they may see, a page position."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import QueryParameter

from eventscope.backend.filters import FilterError, parse_when
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import ORIGIN, Cursor
from eventscope.web.auth import Principal
from eventscope.web.context import WebContext
from eventscope.web.request import AnyRequest


def _web(state: State) -> WebContext:
    web: WebContext = state.web
    return web


def _store(state: State) -> EventStore:
    return _web(state).store


def _settings(state: State) -> Settings:
    return _web(state).settings


def _principal(request: AnyRequest) -> Principal:
    principal: Principal = request.scope["state"]["principal"]
    return principal


def _mask(request: AnyRequest, state: State) -> Redactor | None:
    return _web(state).mask_for(_principal(request))


@dataclass(frozen=True)
class Position:
    """Where a page starts: just older than `before`, or just newer than `after`, or newest."""

    before: Cursor | None = None
    after: Cursor | None = None
    at: dt.datetime | None = None  # a jump to a time: `before` is then that time's position


CURSOR_HELP = "A cursor (`<seq>-<id>`, from `next_before`/`next_after`) or a row id."
AT_HELP = (
    "Jump to a time: the page of events received at or before it, newest first (ISO 8601, UTC "
    "when no offset, or an age such as `2h`). Combines with every filter; not with before/after."
)


async def _position(
    state: State,
    before: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
    after: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
    at: Annotated[str | None, QueryParameter(description=AT_HELP)] = None,
) -> Position:
    at = at if at and at.strip() else None  # an empty box in a form means "no jump"
    if sum(value is not None for value in (before, after, at)) > 1:
        raise ValidationException("give one of `before`, `after` and `at`")
    store = _store(state)
    if at is not None:
        return await _jump(at, store)
    return Position(
        before=await _cursor("before", before, store), after=await _cursor("after", after, store)
    )


async def _jump(value: str, store: EventStore) -> Position:
    """The page `before` the newest event received at or before the time, that event included
    (the cursor just past it); before every row when nothing is that old."""
    try:
        when = parse_when("at", value[:100], dt.datetime.now(dt.UTC))
    except FilterError as exc:
        raise ValidationException(str(exc)) from None
    found = await store.events.cursor_at(when)
    inclusive = Cursor(found.seq, found.id + 1) if found is not None else ORIGIN
    return Position(before=inclusive, at=when)


async def _cursor(name: str, value: str | None, store: EventStore) -> Cursor | None:
    """A cursor, or a bare row id (the API's older form) resolved to that row's cursor."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit() and len(text) <= 19:
        found = await store.events.cursor_of(int(text))
        if found is None:
            raise ValidationException(f"{name}: no event {text}")
        return found
    try:
        return Cursor.parse(text)
    except ValueError as exc:
        raise ValidationException(f"{name}: {exc}") from None


async def event_or_404(store: EventStore, event_id: int) -> dict[str, Any]:
    """One stored event, or the 404 every event route answers."""
    row = await store.events.get(event_id)
    if row is None:
        raise NotFoundException(f"No event with id {event_id}.")
    return row


DEPENDENCIES = {
    "web": Provide(_web, sync_to_thread=False),
    "store": Provide(_store, sync_to_thread=False),
    "settings": Provide(_settings, sync_to_thread=False),
    "principal": Provide(_principal, sync_to_thread=False),
    "mask": Provide(_mask, sync_to_thread=False),
    "position": Provide(_position),
}
