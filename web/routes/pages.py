"""HTML pages: the live timeline, event detail and raw download."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from eventscope.backend.store.queries import (
    MAX_ROW_ID,
    get_event,
    list_events,
    neighbours,
    related_observations,
)
from eventscope.web.auth import operator_only, principal_of
from eventscope.web.event_view import masked_row, page_context
from eventscope.web.services import AnyRequest, Services


class Pages(Controller):
    include_in_schema = False

    @get("/")
    async def timeline(
        self,
        request: AnyRequest,
        services: NamedDependency[Services],
        before: Annotated[int | None, QueryParameter(ge=1, le=MAX_ROW_ID)] = None,
    ) -> Template:
        """Newest first; with `before` it is a still page of history, otherwise live."""
        size = services.settings.live_rows if before is None else services.settings.page_size
        rows = await list_events(services.engine, size, before)
        mask = services.mask_for(principal_of(request))
        context = {
            "rows": [masked_row(row, mask) for row in rows],
            "live": before is None,
            "before": before,
            "next_before": rows[-1]["id"] if len(rows) == size else None,
            "status": await services.status(),
            "live_rows": services.settings.live_rows,
            "exchanges": services.settings.exchanges,
        }
        return Template("timeline.html", context=context)

    @get("/events/{event_id:int}")
    async def event(
        self, request: AnyRequest, services: NamedDependency[Services], event_id: FromPath[int]
    ) -> Template:
        row = await get_event(services.engine, event_id)
        if row is None:
            raise NotFoundException(f"No event with id {event_id}.")
        mask = services.mask_for(principal_of(request))
        context = page_context(row, mask)
        related = await related_observations(services.engine, row)
        context["related"] = {
            kind: [masked_row(other, mask) for other in others] for kind, others in related.items()
        }
        context["older"], context["newer"] = await neighbours(services.engine, event_id)
        return Template("event.html", context=context)

    @get("/events/{event_id:int}/raw", guards=[operator_only])
    async def raw(
        self, services: NamedDependency[Services], event_id: FromPath[int]
    ) -> Response[bytes]:
        """The stored body bytes, never interpreted by the browser; operators only (unmasked)."""
        row = await get_event(services.engine, event_id)
        if row is None:
            raise NotFoundException(f"No event with id {event_id}.")
        return Response(
            bytes(row["body"]),
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="event-{event_id}.bin"'},
        )
