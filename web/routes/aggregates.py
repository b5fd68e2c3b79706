"""Aggregates: the list of every aggregate seen (`/aggregates`, `/api/aggregates`), one
aggregate's state at any version beside its events (`/aggregates/{type}/{id}`), diffs between
versions, and what-ifs (operators).

Names are bus data: `/aggregates/{type}/{id}` serves names a path segment carries, and the
query form `/aggregates/view?type=…&id=…` (no `type`: events without an aggregate type; `key=`:
an id whose stored form differs from what was sent) serves any — every link eventscope renders
picks the right one (web/aggregate_links.py). The same holds for `/api/aggregates/view`,
`/api/aggregates/diff` and `/api/aggregates/what-if`. A name only ever selects rows: it is
matched exactly and never becomes part of a route. Viewers see states masked and cannot look
up a name viewers see masked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from eventscope.backend.aggregate_folds import Folded
from eventscope.backend.aggregates.fold import WhatIfError
from eventscope.backend.aggregates.history import RecordedEvent, candidate_from_body
from eventscope.backend.extraction import extractor_for
from eventscope.backend.filters import FilterError, parse_when
from eventscope.backend.redaction import Redactor
from eventscope.backend.store.aggregates import AggregateRef, CatalogPage, CatalogQuery
from eventscope.backend.store.paging import MAX_ROW_ID
from eventscope.web.aggregate_links import aggregate_url
from eventscope.web.aggregate_view import (
    API_STEPS,
    MAX_API_STEPS,
    Selection,
    SelectionError,
    api_diff,
    api_state,
    api_what_if,
    page_view,
)
from eventscope.web.auth import operator_only
from eventscope.web.context import WebContext
from eventscope.web.display import iso
from eventscope.web.event_view import hidden_from, shown
from eventscope.web.filtering import query
from eventscope.web.request import AnyRequest

MAX_ID_CHARS = 64 * 1024  # a longer name cannot be one recorded (names are kept whole, keyed)
DEFAULT_LIST = 100
MAX_LIST = 500
T = TypeVar("T")

Version = Annotated[
    int | None,
    QueryParameter(ge=0, le=MAX_ROW_ID, description="The state after this version (0: empty)"),
]
Step = Annotated[
    int | None,
    QueryParameter(ge=0, le=MAX_ROW_ID, description="The state after this step (1-based)"),
]
EventRow = Annotated[
    int | None,
    QueryParameter(ge=1, le=MAX_ROW_ID, description="The step this recorded event is shown at"),
]
AsOf = Annotated[
    str | None,
    QueryParameter(
        description="The state as of a time (occurred, else received): ISO 8601 or an age "
        "such as `2h`"
    ),
]
StepsLimit = Annotated[int | None, QueryParameter(ge=1, le=MAX_API_STEPS)]
ListLimit = Annotated[int | None, QueryParameter(ge=1, le=MAX_LIST)]


# --- naming an aggregate ----------------------------------------------------------------------


def _ref(
    aggregate_type: str | None, aggregate_id: str | None, key: str | None, mask: Redactor | None
) -> AggregateRef:
    """The aggregate a request names; 400 for what cannot name a recorded one."""
    if not aggregate_id:
        raise ValidationException("id: give an aggregate id")
    for name, value in (("type", aggregate_type), ("id", aggregate_id)):
        if value is None:
            continue
        if len(value) > MAX_ID_CHARS:
            raise ValidationException(f"{name}: too long to be a recorded aggregate {name}")
        if hidden_from(mask, f"aggregate_{name}", value):
            raise ValidationException(
                f"{name}: this value is masked for viewers; it cannot be looked up"
            )
    stored_key = None
    if key is not None:
        try:
            stored_key = int(key)
        except ValueError:
            raise ValidationException("key: not a stored aggregate key") from None
        if not -(2**63) <= stored_key < 2**63:
            raise ValidationException("key: not a stored aggregate key")
    return AggregateRef.of(aggregate_type, aggregate_id, stored_key)


async def _query_ref(request: AnyRequest, web: WebContext, mask: Redactor | None) -> AggregateRef:
    """The aggregate `?type=&id=` (and `key=`) names; with no `id`, the aggregate of the
    recorded event `?event=<row id>`."""
    params = request.query_params
    event = params.get("event")
    if params.get("id") is None and event is not None and event.isdigit() and len(event) < 20:
        row = await web.store.events.get(int(event))
        if row is None:
            raise NotFoundException(f"No event with id {event}.")
        if row["aggregate_id"] is None:
            raise ValidationException(f"event: #{event} belongs to no aggregate")
        kind, ident, key = row["aggregate_type"], row["aggregate_id"], row["aggregate_key"]
        return _ref(kind, ident, str(key), mask)
    return _ref(params.get("type"), params.get("id"), params.get("key"), mask)


def _selection(
    version: int | None, step: int | None, event: int | None, as_of: str | None
) -> Selection:
    when = None
    if as_of is not None and as_of.strip():
        try:
            when = parse_when("as_of", as_of[:100], dt.datetime.now(dt.UTC))
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
    where = Selection(version, step, event, when)
    if where.given > 1:
        raise ValidationException("give one of version, step, event and as_of")
    return where


async def _folded(web: WebContext, ref: AggregateRef, work: Callable[[Folded], T]) -> T:
    """`work` on the aggregate's fold; 404 when no event is recorded, 400 for a selection it
    does not have."""
    try:
        found = await web.runtime.aggregates.use(ref, work)
    except SelectionError as exc:
        raise ValidationException(str(exc)) from None
    if found is None:
        raise NotFoundException("no event of this aggregate is recorded")
    return found


# --- the list ---------------------------------------------------------------------------------


def _catalog_query(request: AnyRequest, limit: int | None) -> CatalogQuery:
    params = request.query_params
    now = dt.datetime.now(dt.UTC)
    times: dict[str, dt.datetime | None] = {}
    for name in ("since", "until"):
        raw = (params.get(name) or "").strip()
        try:
            times[name] = parse_when(name, raw[:100], now) if raw else None
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
    kind = params.get("type") or None
    prefix = params.get("q") or None
    for name, value in (("type", kind), ("q", prefix)):
        if value is not None and len(value) > MAX_ID_CHARS:
            raise ValidationException(f"{name}: too long")
    return CatalogQuery(
        aggregate_type=kind,
        prefix=prefix,
        since=times["since"],
        until=times["until"],
        before=params.get("before") or None,
        limit=limit or DEFAULT_LIST,
    )


def _listed(row: dict[str, Any], mask: Redactor | None) -> dict[str, Any]:
    kind, ident = row["aggregate_type"], row["aggregate_id"]
    event_type = row["last_event_type"]
    if mask is not None:
        kind = shown("aggregate_type", kind, mask)
        ident, event_type = (
            shown("aggregate_id", ident, mask),
            shown("event_type", event_type, mask),
        )
    return {
        "aggregate_type": kind,
        "aggregate_id": ident,
        "events": row["events"],
        "dead_letters": row["dead_letters"],
        "version": row["max_version"],
        "last_event_type": event_type,
        "last_event_id": row["last_event_id"],
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "url": aggregate_url(kind, ident, row["aggregate_key"]),
        "api_url": aggregate_url(kind, ident, row["aggregate_key"], api=True),
    }


async def _list(
    web: WebContext, request: AnyRequest, mask: Redactor | None, limit: int | None
) -> tuple[CatalogQuery, CatalogPage]:
    q = _catalog_query(request, limit)
    if mask is not None:
        if q.prefix is not None:  # prefix by prefix, a search would spell out a masked id
            raise ValidationException(
                "q: searching ids by their start is for operators; open an aggregate by its "
                "whole id (/aggregates/view?type=…&id=…)"
            )
        if q.aggregate_type is not None and hidden_from(mask, "aggregate_type", q.aggregate_type):
            raise ValidationException(
                "type: this value is masked for viewers; it cannot be searched"
            )
    try:
        page = await web.store.aggregates.page(q)
    except ValueError as exc:
        raise ValidationException(f"before: {exc}") from None
    return q, page


@get(
    "/api/aggregates",
    tags=["aggregates"],
    summary="Every aggregate seen: type, id, events, version, last event (newest first)",
    description="From the aggregate catalog, kept behind ingest (`behind_seconds` says how "
    "far). `type` filters by aggregate type (exact), `q` lists ids starting with it (exact "
    "characters, case-sensitive, no wildcards; then in id order), `since`/`until` bound the "
    "last event's time (ISO 8601 or an age such as `2h`); `next_before` continues.",
)
async def aggregates_api(
    request: AnyRequest,
    web: NamedDependency[WebContext],
    mask: NamedDependency[Redactor | None],
    limit: ListLimit = None,
) -> dict[str, Any]:
    _, page = await _list(web, request, mask, limit)
    items = []
    for row in page.rows:
        item = _listed(row, mask)
        for name in ("first_seen", "last_seen"):
            item[name] = iso(item[name])
        items.append(item)
    return {
        "items": items,
        "total": page.total,
        "total_capped": page.capped,
        "next_before": page.next_before,
        "behind_seconds": web.runtime.aggregate_catalog.behind,
    }


@get("/aggregates", include_in_schema=False)
async def aggregates_page(
    request: AnyRequest,
    web: NamedDependency[WebContext],
    mask: NamedDependency[Redactor | None],
    limit: ListLimit = None,
) -> Template:
    params = request.query_params
    form = {name: params.get(name) or "" for name in ("type", "q", "since", "until")}
    context: dict[str, Any] = {"form": form, "items": [], "error": None, "nav": "aggregates"}
    context["behind"] = web.runtime.aggregate_catalog.behind
    try:
        q, page = await _list(web, request, mask, limit)
    except ValidationException as exc:
        context["error"] = exc.detail
        return Template("aggregates.html", context=context, status_code=400)
    shown = [(k, v) for k, v in form.items() if v]
    context.update(
        items=[_listed(row, mask) for row in page.rows],
        total=page.total,
        capped=page.capped,
        by_prefix=bool(q.prefix),
        filtered=bool(shown),
        next_query=query(shown, before=page.next_before) if page.next_before else None,
        redacted=mask is not None,
    )
    return Template("aggregates.html", context=context)


# --- one aggregate: the page ----------------------------------------------------------------


async def _aggregate_page(
    request: AnyRequest,
    web: WebContext,
    mask: Redactor | None,
    ref: AggregateRef,
    where: Selection,
) -> Template:
    settings = web.settings
    base: dict[str, Any] = {
        "nav": "aggregates",
        "aggregate_type": ref.aggregate_type,
        "aggregate_id": ref.aggregate_id,
        "live_rows": settings.live_rows,
        "live_query": query(
            ([] if ref.aggregate_type is None else [("aggregate_type", ref.aggregate_type)])
            + [("aggregate_id", ref.aggregate_id)]
        ),
        "error": None,
        "missing": False,
    }
    try:
        view = await _folded(web, ref, lambda f: page_view(f.ref, f.fold, f.capped, where, mask))
    except NotFoundException:
        base.update(missing=True, status=await web.status())
        return Template("aggregate.html", context=base, status_code=404)
    except ValidationException as exc:
        base["error"] = exc.detail
        return Template("aggregate.html", context=base, status_code=400)
    context = {**base, **view}
    headers = {}
    if request.headers.get("hx-request"):
        # The address bar shows the step's canonical URL (a slider's ?step=N becomes
        # ?version=M); a refresh of the same step pushes nothing.
        target = view["links"]["self"] or view["links"]["current"] or ""
        shown = urlsplit(request.headers.get("hx-current-url", ""))
        if target != shown.path + (f"?{shown.query}" if shown.query else ""):
            headers["HX-Push-Url"] = target
        if not request.headers.get("hx-history-restore-request"):
            return Template("_aggregate_view.html", context=context, headers=headers)
    context["status"] = await web.status()  # the status bar: full pages only
    return Template("aggregate.html", context=context, headers=headers)


class AggregatePages(Controller):
    include_in_schema = False

    @get("/aggregates/view")
    async def by_query(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        version: Version = None,
        step: Step = None,
        event: EventRow = None,
        as_of: AsOf = None,
    ) -> Template:
        """Any aggregate: `?type=&id=` (and `key=`), at `version`, `step`, `event` or `as_of`;
        `?event=<row id>` alone: that event's aggregate, at its step."""
        try:
            ref = await _query_ref(request, web, mask)
            where = _selection(version, step, event, as_of)
        except (ValidationException, NotFoundException) as exc:
            context = {"nav": "aggregates", "error": exc.detail, "missing": False}
            context.update(aggregate_type=request.query_params.get("type"), aggregate_id=None)
            code = 404 if isinstance(exc, NotFoundException) else 400
            return Template("aggregate.html", context=context, status_code=code)
        return await _aggregate_page(request, web, mask, ref, where)

    @get("/aggregates/{aggregate_type:str}/{aggregate_id:str}")
    async def by_path(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        aggregate_type: FromPath[str],
        aggregate_id: FromPath[str],
        version: Version = None,
        step: Step = None,
        event: EventRow = None,
        as_of: AsOf = None,
    ) -> Template:
        try:
            ref = _ref(aggregate_type, aggregate_id, None, mask)
            where = _selection(version, step, event, as_of)
        except ValidationException as exc:
            context = {"nav": "aggregates", "error": exc.detail, "missing": False}
            context.update(aggregate_type=None, aggregate_id=None)
            return Template("aggregate.html", context=context, status_code=400)
        return await _aggregate_page(request, web, mask, ref, where)


# --- one aggregate: the API -----------------------------------------------------------------


async def _state(
    web: WebContext,
    mask: Redactor | None,
    ref: AggregateRef,
    where: Selection,
    limit: int | None,
) -> dict[str, Any]:
    size = limit or API_STEPS
    return await _folded(web, ref, lambda f: api_state(f.ref, f.fold, f.capped, where, mask, size))


async def _diff(
    web: WebContext,
    mask: Redactor | None,
    ref: AggregateRef,
    ends: tuple[int | None, int | None, int | None, int | None],
) -> dict[str, Any]:
    start, end, start_step, end_step = ends
    if (start is None) == (start_step is None) or (end is None) == (end_step is None):
        raise ValidationException("give from (or from_step) and to (or to_step)")
    a, b = Selection(version=start, step=start_step), Selection(version=end, step=end_step)
    return await _folded(web, ref, lambda f: api_diff(f.fold, a, b, mask))


async def _what_if(request: AnyRequest, web: WebContext, ref: AggregateRef) -> dict[str, Any]:
    candidate = await _candidate(request, web, ref)

    def run(folded: Folded) -> dict[str, Any]:
        try:
            return api_what_if(folded.fold, folded.fold.what_if(candidate))
        except WhatIfError as exc:
            raise SelectionError(str(exc)) from None

    return await _folded(web, ref, run)


async def _candidate(request: AnyRequest, web: WebContext, ref: AggregateRef) -> RecordedEvent:
    """The event to fold in: a stored row (`row_id`, e.g. a dead letter) or a body (with an
    optional `version` and `event_id`)."""
    try:
        data = json.loads(await request.body())
    except (ValueError, RecursionError):
        raise ValidationException("the request body is not JSON") from None
    if not isinstance(data, dict) or ("row_id" in data) == ("body" in data):
        raise ValidationException('give {"row_id": <a recorded event>} or {"body": {...}}')
    if "row_id" in data:
        row_id = data["row_id"]
        if not isinstance(row_id, int) or isinstance(row_id, bool) or not 1 <= row_id <= MAX_ROW_ID:
            raise ValidationException("row_id: a recorded event's id (a positive integer)")
        row = await web.store.events.get(row_id)
        if row is None:
            raise NotFoundException(f"No event with id {row_id}.")
        if not ref.owns(row):
            raise ValidationException(f"row_id: event #{row_id} belongs to another aggregate")
        return RecordedEvent.from_row(row)
    body, version, event_id = data["body"], data.get("version"), data.get("event_id")
    if not isinstance(body, dict):
        raise ValidationException("body: the event as published, a JSON object")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise ValidationException("version: an integer")
    if event_id is not None and not isinstance(event_id, str):
        raise ValidationException("event_id: a string")
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    candidate = candidate_from_body(
        raw,
        received_at=dt.datetime.now(dt.UTC),
        extractor=extractor_for(web.settings.extraction_rules),
    )
    if candidate.aggregate_id is None:  # a body without its aggregate: this one
        candidate.aggregate_type, candidate.aggregate_id = ref.aggregate_type, ref.aggregate_id
    if version is not None:
        candidate.version = version
    if event_id is not None:
        candidate.event_id = event_id
    return candidate


async def replay_what_if(
    web: WebContext, row: dict[str, Any], body: bytes | None
) -> dict[str, Any] | None:
    """What replaying a stored row would do to its aggregate (the replay preview): the body it
    would send folded in at its place, as an event (a dead letter is otherwise never folded);
    None when the row names no aggregate or none is recorded."""
    aggregate_id = row.get("aggregate_id")
    if not aggregate_id or body is None:
        return None
    ref = AggregateRef.of(row.get("aggregate_type"), aggregate_id, row.get("aggregate_key"))
    candidate = RecordedEvent.from_row({**row, "body": body, "dead_letter": None})

    def run(folded: Folded) -> dict[str, Any]:
        try:
            return api_what_if(folded.fold, folded.fold.what_if(candidate))
        except WhatIfError as exc:
            return {"error": str(exc)}

    found = await web.runtime.aggregates.use(ref, run)
    if found is not None:
        found["aggregate"] = {"type": ref.aggregate_type, "id": ref.aggregate_id}
    return found


WHAT_IF_DESCRIPTION = (
    'Operators. Body: `{"row_id": N}` (a recorded event of this aggregate, e.g. a dead '
    'letter) or `{"body": {...}, "version": N, "event_id": "…"}` (the event as published; '
    "version and event id override what is read from it). The candidate is folded in at its "
    "place — replacing the event with its id at its version, else at its version, else after "
    "the last step — and the later steps are folded again. Returns the resulting current "
    "state, the current state without it (`baseline`), the diff, and errors at the steps "
    "folded again. Nothing is stored."
)


class AggregatesApi(Controller):
    path = "/api/aggregates"
    tags = ("aggregates",)

    @get(
        "/view",
        summary="One aggregate named by query (any name): ?type=&id=, as /{type}/{id}",
    )
    async def state_by_query(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        version: Version = None,
        step: Step = None,
        event: EventRow = None,
        as_of: AsOf = None,
        limit: StepsLimit = None,
    ) -> dict[str, Any]:
        ref = await _query_ref(request, web, mask)
        return await _state(web, mask, ref, _selection(version, step, event, as_of), limit)

    @get(
        "/{aggregate_type:str}/{aggregate_id:str}",
        summary="One aggregate's state at a version, and the events folded to reach it",
        description="Without `version` (or `step`, `event`, `as_of`): the current state. "
        "`version=N`: the state after version N (events without a version that arrived "
        "before N+1 included); `step=N`: after the N-th step (1-based, 0 is empty; for "
        "aggregates whose events carry no version); `event=<row id>`: at the step that event "
        "is shown at; `as_of=T`: after every step that happened by T (occurred time, else "
        "received). With the step's diff, the markers (gaps, conflicts, out-of-order, "
        "duplicates, dead letters, reducer errors) and up to `limit` steps ending there.",
    )
    async def state(
        self,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        aggregate_type: FromPath[str],
        aggregate_id: FromPath[str],
        version: Version = None,
        step: Step = None,
        event: EventRow = None,
        as_of: AsOf = None,
        limit: StepsLimit = None,
    ) -> dict[str, Any]:
        ref = _ref(aggregate_type, aggregate_id, None, mask)
        return await _state(web, mask, ref, _selection(version, step, event, as_of), limit)

    @get("/diff", summary="The diff of one aggregate (named by query) between two versions")
    async def diff_by_query(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        from_version: Annotated[
            int | None, QueryParameter(name="from", ge=0, le=MAX_ROW_ID)
        ] = None,
        to_version: Annotated[int | None, QueryParameter(name="to", ge=0, le=MAX_ROW_ID)] = None,
        from_step: Step = None,
        to_step: Step = None,
    ) -> dict[str, Any]:
        ref = await _query_ref(request, web, mask)
        return await _diff(web, mask, ref, (from_version, to_version, from_step, to_step))

    @get(
        "/{aggregate_type:str}/{aggregate_id:str}/diff",
        summary="The structural diff of one aggregate's state between two versions",
        description="`from=N&to=M` (versions) or `from_step`/`to_step`: paths added, removed "
        "and changed between the two states (values as compact JSON text cut at 300 "
        "characters; runs of array items folded; at most 1,000 changes).",
    )
    async def diff(
        self,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        aggregate_type: FromPath[str],
        aggregate_id: FromPath[str],
        from_version: Annotated[
            int | None, QueryParameter(name="from", ge=0, le=MAX_ROW_ID)
        ] = None,
        to_version: Annotated[int | None, QueryParameter(name="to", ge=0, le=MAX_ROW_ID)] = None,
        from_step: Step = None,
        to_step: Step = None,
    ) -> dict[str, Any]:
        ref = _ref(aggregate_type, aggregate_id, None, mask)
        return await _diff(web, mask, ref, (from_version, to_version, from_step, to_step))

    @post(
        "/what-if",
        guards=[operator_only],
        status_code=200,
        summary="What-if for one aggregate named by query (?type=&id=)",
        description=WHAT_IF_DESCRIPTION,
    )
    async def what_if_by_query(
        self, request: AnyRequest, web: NamedDependency[WebContext]
    ) -> dict[str, Any]:
        return await _what_if(request, web, await _query_ref(request, web, None))

    @post(
        "/{aggregate_type:str}/{aggregate_id:str}/what-if",
        guards=[operator_only],
        status_code=200,
        summary="What one more (or an edited) event would make of an aggregate's state",
        description=WHAT_IF_DESCRIPTION,
    )
    async def what_if(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        aggregate_type: FromPath[str],
        aggregate_id: FromPath[str],
    ) -> dict[str, Any]:
        return await _what_if(request, web, _ref(aggregate_type, aggregate_id, None, None))
