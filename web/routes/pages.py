"""HTML pages: the live timeline, event detail and raw download."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from eventscope.backend.filters import FilterError
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.web.auth import Principal, operator_only
from eventscope.web.context import WebContext
from eventscope.web.copy_values import copy_values
from eventscope.web.dead_letter_view import death_context
from eventscope.web.dependencies import Position, event_or_404
from eventscope.web.event_view import masked_row, off_loop, page_context
from eventscope.web.filtering import filter_context, filter_from, query, refuse_masked_values
from eventscope.web.json_tree import pretty_tree
from eventscope.web.replay_view import replay_context, settled_before
from eventscope.web.request import AnyRequest


def detail_page(row: dict[str, Any], mask: Redactor | None) -> dict[str, Any]:
    """The detail template's context: `page_context`, the JSON body as a foldable tree and
    the whole values the copy buttons copy."""
    context = page_context(row, mask)
    context["tree"] = pretty_tree(context["pretty"])
    context["copies"] = copy_values(row, mask)
    return context


class Pages(Controller):
    include_in_schema = False

    @get("/")
    async def timeline(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        position: NamedDependency[Position],
        principal: NamedDependency[Principal],
    ) -> Template:
        """Newest first, filtered by the filter language; with `before`, `after` or `at` (a jump
        to a time) a still page of history, else live (new matching rows arrive over the
        socket)."""
        live = position.before is None and position.after is None
        size = settings.live_rows if live else settings.page_size
        context: dict[str, Any] = {
            "live": live,
            "status": await web.status(),
            "live_rows": settings.live_rows,
            "exchanges": settings.exchanges,
            "filter_error": None,
            "rows": [],
            "older": None,
            "newer": None,
            "count": None,
            "scanned_out": False,
            "search_behind": None,
            "at": position.at,  # a jump to a time (`?at=`): history at or before it
            "can_act": principal.can_act,
        }
        try:
            event_filter = filter_from(request.query_params.multi_items())
            refuse_masked_values(event_filter, mask)
        except FilterError as exc:
            context.update(filter_error=str(exc), live=False, **filter_context(None))
            return Template("timeline.html", context=context, status_code=400)
        context.update(filter_context(event_filter))
        if event_filter.empty:
            page = await store.events.page(
                size, older_than=position.before, newer_than=position.after
            )
        else:
            found = await store.search.page(
                event_filter, size, older_than=position.before, newer_than=position.after, mask=mask
            )
            page = found.page
            context["scanned_out"] = found.scanned_out
            context["count"] = await store.search.count(event_filter)
            if event_filter.q is not None:
                context["search_behind"] = web.runtime.indexer.behind
        context.update(
            rows=[masked_row(row, mask) for row in page.rows], older=page.older, newer=page.newer
        )
        headers = {}
        if request.headers.get("hx-request"):  # typed in the filter bar: a clean URL to share
            at = position.at.isoformat().replace("+00:00", "Z") if position.at else None
            shared = query(event_filter.query_items(), at=at)
            headers["HX-Push-Url"] = "/" + (f"?{shared}" if shared else "")
        return Template("timeline.html", context=context, headers=headers)

    @get("/events/{event_id:int}")
    async def event(
        self,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        mask: NamedDependency[Redactor | None],
        principal: NamedDependency[Principal],
        event_id: FromPath[int],
    ) -> Template:
        row = await event_or_404(store, event_id)
        context = await off_loop(detail_page, row, mask)
        context["death"] = death_context(row, mask, settings.error_headers)
        context["can_act"] = principal.can_act
        context.update(
            await replay_context(store, row, mask, settled_before(settings.replay_quiet_seconds))
        )
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
