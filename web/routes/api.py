"""JSON API under /api/: the same data the pages show, for scripts and end-to-end tests."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import clamp_limit
from eventscope.web.context import WebContext
from eventscope.web.dependencies import Position, event_or_404
from eventscope.web.event_view import detail, off_loop, summary


class EventsApi(Controller):
    path = "/api"
    tags = ("events",)

    @get("/events", summary="Events, newest first (keyset paged in commit order)")
    async def events(
        self,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        mask: NamedDependency[Redactor | None],
        position: NamedDependency[Position],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
    ) -> dict[str, Any]:
        size = clamp_limit(limit, settings.page_size)
        page = await store.events.page(size, older_than=position.before, newer_than=position.after)
        return {
            "items": [summary(row, mask) for row in page.rows],
            "next_before": str(page.older) if page.older else None,
            "next_after": str(page.newer) if page.newer else None,
        }

    @get("/events/{event_id:int}", summary="One event with headers, properties and raw body")
    async def event(
        self,
        store: NamedDependency[EventStore],
        mask: NamedDependency[Redactor | None],
        event_id: FromPath[int],
    ) -> dict[str, Any]:
        return await off_loop(detail, await event_or_404(store, event_id), mask)

    @get("/status", summary="Recorder and store health with counters")
    async def status(self, web: NamedDependency[WebContext]) -> dict[str, Any]:
        return await web.status()
