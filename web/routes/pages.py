"""HTML pages: the live timeline, event detail and raw download."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.web.auth import operator_only
from eventscope.web.context import WebContext
from eventscope.web.dependencies import Position, event_or_404
from eventscope.web.event_view import masked_row, off_loop, page_context


class Pages(Controller):
    include_in_schema = False

    @get("/")
    async def timeline(
        self,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        position: NamedDependency[Position],
    ) -> Template:
        """Newest first; with `before` or `after` it is a still page of history, else live."""
        live = position.before is None and position.after is None
        size = settings.live_rows if live else settings.page_size
        page = await store.events.page(size, older_than=position.before, newer_than=position.after)
        context = {
            "rows": [masked_row(row, mask) for row in page.rows],
            "live": live,
            "older": page.older,
            "newer": page.newer,
            "status": await web.status(),
            "live_rows": settings.live_rows,
            "exchanges": settings.exchanges,
        }
        return Template("timeline.html", context=context)

    @get("/events/{event_id:int}")
    async def event(
        self,
        store: NamedDependency[EventStore],
        mask: NamedDependency[Redactor | None],
        event_id: FromPath[int],
    ) -> Template:
        row = await event_or_404(store, event_id)
        context = await off_loop(page_context, row, mask)
        related = await store.events.related(row)
        context["related"] = {
            kind: [masked_row(other, mask) for other in others] for kind, others in related.items()
        }
        context["older"], context["newer"] = await store.events.neighbours(row)
        return Template("event.html", context=context)

    @get("/events/{event_id:int}/raw", guards=[operator_only])
    async def raw(
        self, store: NamedDependency[EventStore], event_id: FromPath[int]
    ) -> Response[bytes]:
        """The stored body bytes, never interpreted by the browser; operators only (unmasked)."""
        row = await event_or_404(store, event_id)
        return Response(
            bytes(row["body"]),
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="event-{event_id}.bin"'},
        )
