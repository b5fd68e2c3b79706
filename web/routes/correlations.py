"""Traces: every event of one correlation (`/correlations/{id}`, `/api/correlations/{id}`) and
the list of recent correlations (`/correlations`, `/api/correlations`).

Ids are bus data and may hold `/`, `..`, `%`, markup or bidi controls. The query form
`/correlations?id=<id>` (and `/api/correlations?id=`) takes any id, and every link eventscope
renders uses it; the path form `/correlations/<id>` is for ids a single path segment can carry
(a `/` — even as `%2F`, which servers decode before routing — or a `..` segment cannot be one).
The id only ever selects rows: it is matched exactly and never becomes part of a route.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from eventscope.backend.filters import FilterError
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.trace import MAX_PAGE, RECENT_SCAN, Correlation, TraceCursor
from eventscope.web.context import WebContext
from eventscope.web.display import iso
from eventscope.web.event_view import hidden_from, shown
from eventscope.web.filtering import filter_context, list_filter, query
from eventscope.web.request import AnyRequest
from eventscope.web.trace_view import (
    FIRST_PAGE,
    build_trace,
    duration_text,
    lanes_context,
    lanes_json,
    node_json,
    step_context,
    step_json,
    summary_json,
    tree_context,
)

RECENT_LIMIT = 50  # correlations listed
MAX_ID_CHARS = 64 * 1024  # a longer id cannot be one recorded (ids are kept whole, keyed)
_OWN = ("id", "after", "limit")


def _checked_id(correlation_id: str, mask: Redactor | None) -> str:
    """The id to look up; a viewer may not look up a value viewers see masked (a match would
    confirm the secret)."""
    if not correlation_id:
        raise ValidationException("id: give a correlation id")
    if len(correlation_id) > MAX_ID_CHARS:
        raise ValidationException("id: too long to be a recorded correlation id")
    if hidden_from(mask, "correlation_id", correlation_id):
        raise ValidationException("id: this value is masked for viewers; it cannot be searched")
    return correlation_id


def _cursor(value: str | None) -> TraceCursor | None:
    if value is None:
        return None
    try:
        return TraceCursor.parse(value)
    except ValueError as exc:
        raise ValidationException(f"after: {exc}") from None


async def _trace_context(
    request: AnyRequest,
    correlation_id: str,
    store: EventStore,
    settings: Settings,
    web: WebContext,
    mask: Redactor | None,
) -> tuple[dict[str, Any], bool]:
    """Everything the trace page and its load-more fragment show; and whether any event
    carries the id."""
    correlation_id = _checked_id(correlation_id, mask)
    after = _cursor(request.query_params.get("after"))
    live_after = web.hub.position  # before reading: what commits later arrives live
    page = await store.trace.page(correlation_id, FIRST_PAGE, after)
    trace, lanes = await build_trace(page)
    s = page.summary
    loaded = len(page.rows)
    # Everything of this correlation up to its newest row is in the trace already: the live
    # socket sends what commits after that (and after where the feed stood before reading).
    known = [c for c in (live_after, s.newest) if c is not None]
    context = {
        "correlation_id": correlation_id,  # a viewer's id is one viewers see unmasked
        "id_query": query([("id", correlation_id)]),
        "filter_query": query([("correlation_id", correlation_id)]),
        "summary": s,
        "duration": duration_text(s.duration),
        "services": [
            {"source": shown("source", service.source, mask), "events": service.events}
            for service in s.services
        ],
        "steps": step_context(trace, lanes, s, mask),
        "tree": tree_context(trace, mask) if after is None else [],
        "tree_partial": loaded < s.events,
        "lanes": lanes_context(lanes, mask),
        "next": str(page.next) if page.next else None,
        "after": str(after) if after else None,
        "loaded": loaded,
        "live_after": str(max(known)) if known else "0-0",
        "live_rows": settings.live_rows,
    }
    return context, bool(s.events)


async def _trace_page(
    request: AnyRequest,
    correlation_id: str,
    store: EventStore,
    settings: Settings,
    web: WebContext,
    mask: Redactor | None,
) -> Template:
    context, found = await _trace_context(request, correlation_id, store, settings, web, mask)
    if request.headers.get("hx-request") and context["after"]:
        return Template("correlation_rows.html", context=context)  # the next rows, on scroll
    context["status"] = await web.status()
    return Template("correlation.html", context=context, status_code=200 if found else 404)


class CorrelationPages(Controller):
    include_in_schema = False

    @get("/correlations")
    async def correlations(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
    ) -> Template:
        """With `?id=`, one trace (any id); else recent correlations, filtered like the
        timeline."""
        correlation_id = request.query_params.get("id")
        if correlation_id is not None:
            return await _trace_page(request, correlation_id, store, settings, web, mask)
        context: dict[str, Any] = {"filter_error": None, "items": [], "scan": RECENT_SCAN}
        try:
            event_filter = list_filter(request, mask, _OWN)
        except FilterError as exc:
            context.update(filter_error=str(exc), **filter_context(None))
            return Template("correlations.html", context=context, status_code=400)
        context.update(filter_context(event_filter))
        found = await store.trace.recent(
            None if event_filter.empty else event_filter, limit=RECENT_LIMIT
        )
        context["items"] = [_listed(item, mask) for item in found]
        headers = {}
        if request.headers.get("hx-request"):  # typed in the filter bar: a clean URL to share
            headers["HX-Push-Url"] = "/correlations" + (
                f"?{context['filter_query']}" if context["filter_query"] else ""
            )
        return Template("correlations.html", context=context, headers=headers)

    @get("/correlations/{correlation_id:str}")
    async def trace(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        correlation_id: FromPath[str],
    ) -> Template:
        return await _trace_page(request, correlation_id, store, settings, web, mask)


def _listed(item: Correlation, mask: Redactor | None) -> dict[str, Any]:
    visible = shown("correlation_id", item.correlation_id, mask)
    return {
        "correlation_id": visible,
        "id_query": query([("id", visible or "")]),
        "summary": item.summary,
        "duration": duration_text(item.summary.duration),
        "last_seen": item.last_seen,
        "services": [shown("source", s.source, mask) for s in item.summary.services],
    }


LimitParameter = Annotated[int | None, QueryParameter(ge=1, le=MAX_PAGE)]
AfterParameter = Annotated[
    str | None,
    QueryParameter(description="A trace cursor (`next_after` of the previous answer)."),
]


class CorrelationsApi(Controller):
    path = "/api"
    tags = ("correlations",)

    @get(
        "/correlations",
        summary="Recent correlations (filtered), or one trace with `?id=` (any id)",
        description="Without `id`: the correlations among the newest matching events, newest "
        "activity first, each with its summary; every filter parameter of /api/events applies. "
        "With `id`: that correlation's trace, as /api/correlations/{id}.",
    )
    async def correlations(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        mask: NamedDependency[Redactor | None],
        limit: LimitParameter = None,
        after: AfterParameter = None,
    ) -> dict[str, Any]:
        correlation_id = request.query_params.get("id")
        if correlation_id is not None:
            return await _trace_json(correlation_id, store, mask, limit, after)
        try:
            event_filter = list_filter(request, mask, _OWN)
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
        found = await store.trace.recent(
            None if event_filter.empty else event_filter, limit=min(limit or RECENT_LIMIT, 200)
        )
        return {
            "items": [
                {
                    "correlation_id": _listed(c, mask)["correlation_id"],
                    "last_seen": iso(c.last_seen) if c.last_seen else None,
                    "summary": summary_json(c.summary, mask),
                }
                for c in found
            ],
            "scanned_events": RECENT_SCAN,
        }

    @get(
        "/correlations/{correlation_id:str}",
        summary="One correlation's trace: exact summary, a page of events in event-time order",
        description="Events whose correlation id is exactly this one, ordered by occurred-at "
        "(else received-at), with offsets, gaps, service lanes, causes, dead letters and "
        "retries; `next_after` continues. Ids holding `/` use /api/correlations?id=.",
    )
    async def trace(
        self,
        store: NamedDependency[EventStore],
        mask: NamedDependency[Redactor | None],
        correlation_id: FromPath[str],
        limit: LimitParameter = None,
        after: AfterParameter = None,
    ) -> dict[str, Any]:
        return await _trace_json(correlation_id, store, mask, limit, after)


async def _trace_json(
    correlation_id: str,
    store: EventStore,
    mask: Redactor | None,
    limit: int | None,
    after: str | None,
) -> dict[str, Any]:
    correlation_id = _checked_id(correlation_id, mask)
    cursor = _cursor(after)
    page = await store.trace.page(correlation_id, limit or FIRST_PAGE, cursor)
    if not page.summary.events:
        raise NotFoundException("no event carries this correlation id")
    trace, lanes = await build_trace(page)
    return {
        "correlation_id": correlation_id,
        "summary": summary_json(page.summary, mask),
        "lanes": lanes_json(lanes, mask),
        "items": [step_json(step, mask) for step in trace.steps],
        "tree": [node_json(node) for node in trace.tree],
        "next_after": str(page.next) if page.next else None,
    }
