"""JSON API under /api/: the same data the pages show, for scripts and end-to-end tests."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath, QueryParameter

from eventscope.backend.event_wait import newest_settled
from eventscope.backend.filters import FilterError
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import clamp_limit
from eventscope.web.context import WebContext
from eventscope.web.dependencies import Position, event_or_404
from eventscope.web.event_view import detail, off_loop, summary
from eventscope.web.filtering import filter_from, refuse_masked_values
from eventscope.web.long_poll import MinCountParameter, WaitParameter, long_poll
from eventscope.web.request import AnyRequest


class EventsApi(Controller):
    path = "/api"
    tags = ("events",)

    @get(
        "/events",
        summary="Events, newest first (keyset paged in commit order), filtered",
        description="Every parameter of the filter language (docs/api.md#filters) may be given: "
        "routing_key, routing_key_exact, exchange, type, correlation_id, causation_id, "
        "aggregate_type, aggregate_id, source, trace_id, message_id, header, field, dead_letter, "
        "since, until, q. A parameter that cannot be parsed is a 400 naming it. With `wait` "
        "(a long-poll, docs/api.md#waiting-for-events): matching events after `after`, oldest "
        "first, as soon as `min_count` are there.",
    )
    async def events(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        position: NamedDependency[Position],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        wait: WaitParameter = None,
        min_count: MinCountParameter = None,
    ) -> dict[str, Any]:
        size = clamp_limit(limit, settings.page_size)
        try:
            event_filter = filter_from(request.query_params.multi_items())
            refuse_masked_values(event_filter, mask)
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
        if wait is not None or min_count is not None:
            if position.before is not None:
                raise ValidationException("give `after` with `wait`, not `before`")
            return await long_poll(
                request,
                store,
                settings,
                event_filter,
                after=position.after,
                wait=wait or 0.0,
                min_count=min_count,
                limit=size,
                mask=mask,
            )
        extra: dict[str, Any] = {}
        if event_filter.empty:
            page = await store.events.page(
                size, older_than=position.before, newer_than=position.after
            )
        else:
            found = await store.search.page(
                event_filter, size, older_than=position.before, newer_than=position.after, mask=mask
            )
            page = found.page
            extra["scan_stopped"] = found.scanned_out
            if event_filter.q is not None:
                extra["search_behind_seconds"] = web.runtime.indexer.behind
        return {
            "items": [summary(row, mask) for row in page.rows],
            "next_before": str(page.older) if page.older else None,
            "next_after": str(page.newer) if page.newer else None,
            **extra,
        }

    @get("/events/{event_id:int}", summary="One event with headers, properties and raw body")
    async def event(
        self,
        store: NamedDependency[EventStore],
        mask: NamedDependency[Redactor | None],
        event_id: FromPath[int],
    ) -> dict[str, Any]:
        return await off_loop(detail, await event_or_404(store, event_id), mask)

    @get(
        "/cursor",
        summary="Where the store ends now: pass it as `after` to wait for what comes next",
    )
    async def cursor(self, store: NamedDependency[EventStore]) -> dict[str, Any]:
        return {"cursor": str(await newest_settled(store))}

    @get("/status", summary="Recorder and store health with counters")
    async def status(self, web: NamedDependency[WebContext]) -> dict[str, Any]:
        return await web.status()
