"""JSON API under /api/: the same data the pages show, for scripts and end-to-end tests."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from backend.store.queries import clamp_limit, get_event, list_events
from web.event_view import detail, summary
from web.services import Services


class EventsApi(Controller):
    path = "/api"
    tags = ["events"]

    @get("/events", summary="Events, newest first (keyset paged)")
    async def events(
        self,
        services: Services,
        limit: int | None = Parameter(default=None, ge=1, le=1000),
        before: int | None = Parameter(default=None, ge=1, description="Row id cursor"),
    ) -> dict[str, Any]:
        size = clamp_limit(limit, services.settings.page_size)
        rows = await list_events(services.engine, size, before)
        items = [summary(row) for row in rows]
        next_before = rows[-1]["id"] if len(rows) == size else None
        return {"items": items, "next_before": next_before}

    @get("/events/{event_id:int}", summary="One event with headers, properties and raw body")
    async def event(self, services: Services, event_id: int) -> dict[str, Any]:
        row = await get_event(services.engine, event_id)
        if row is None:
            raise NotFoundException(f"no event {event_id}")
        return detail(row)

    @get("/status", summary="Recorder and store health with counters")
    async def status(self, services: Services, request: Request) -> dict[str, Any]:  # type: ignore[type-arg]
        return await services.status()
