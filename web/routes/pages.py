"""HTML pages: the live timeline, event detail and raw download."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from backend.store.queries import (
    MAX_ROW_ID,
    get_event,
    list_events,
    neighbours,
    related_observations,
)
from web.event_view import page_context
from web.services import Services


class Pages(Controller):
    include_in_schema = False

    @get("/")
    async def timeline(
        self,
        services: NamedDependency[Services],
        before: Annotated[int | None, QueryParameter(ge=1, le=MAX_ROW_ID)] = None,
    ) -> Template:
        """Newest first; with `before` it is a still page of history, otherwise live."""
        size = services.settings.live_rows if before is None else services.settings.page_size
        rows = await list_events(services.engine, size, before)
        context = {
            "rows": rows,
            "live": before is None,
            "before": before,
            "next_before": rows[-1]["id"] if len(rows) == size else None,
            "status": await services.status(),
            "live_rows": services.settings.live_rows,
            "exchanges": services.settings.exchanges,
        }
        return Template("timeline.html", context=context)

    @get("/events/{event_id:int}")
    async def event(self, services: NamedDependency[Services], event_id: FromPath[int]) -> Template:
        row = await get_event(services.engine, event_id)
        if row is None:
            raise NotFoundException(f"No event with id {event_id}.")
        context = page_context(row)
        context["related"] = await related_observations(services.engine, row)
        context["older"], context["newer"] = await neighbours(services.engine, event_id)
        return Template("event.html", context=context)

    @get("/events/{event_id:int}/raw")
    async def raw(
        self, services: NamedDependency[Services], event_id: FromPath[int]
    ) -> Response[bytes]:
        """The stored body bytes, never interpreted by the browser."""
        row = await get_event(services.engine, event_id)
        if row is None:
            raise NotFoundException(f"No event with id {event_id}.")
        return Response(
            bytes(row["body"]),
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="event-{event_id}.bin"'},
        )
