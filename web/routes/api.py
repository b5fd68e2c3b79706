"""JSON API under /api/: the same data the pages show, for scripts and end-to-end tests."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from eventscope.backend.store.queries import MAX_ROW_ID, clamp_limit, get_event, list_events
from eventscope.web.auth import principal_of
from eventscope.web.event_view import detail, summary
from eventscope.web.services import AnyRequest, Services


class EventsApi(Controller):
    path = "/api"
    tags = ("events",)

    @get("/events", summary="Events, newest first (keyset paged)")
    async def events(
        self,
        request: AnyRequest,
        services: NamedDependency[Services],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        before: Annotated[
            int | None, QueryParameter(ge=1, le=MAX_ROW_ID, description="Row id cursor")
        ] = None,
    ) -> dict[str, Any]:
        size = clamp_limit(limit, services.settings.page_size)
        rows = await list_events(services.engine, size, before)
        mask = services.mask_for(principal_of(request))
        items = [summary(row, mask) for row in rows]
        next_before = rows[-1]["id"] if len(rows) == size else None
        return {"items": items, "next_before": next_before}

    @get("/events/{event_id:int}", summary="One event with headers, properties and raw body")
    async def event(
        self, request: AnyRequest, services: NamedDependency[Services], event_id: FromPath[int]
    ) -> dict[str, Any]:
        row = await get_event(services.engine, event_id)
        if row is None:
            raise NotFoundException(f"no event {event_id}")
        return detail(row, services.mask_for(principal_of(request)))

    @get("/status", summary="Recorder and store health with counters")
    async def status(self, services: NamedDependency[Services]) -> dict[str, Any]:
        return await services.status()
