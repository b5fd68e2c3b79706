"""`GET /api/events/export`: the current filter's events as an NDJSON or JSON download.

The filter is parsed (and refused with a 400 naming the parameter) before anything is sent;
then the body streams from backend/export.py in constant memory. Viewers get a masked export
(`masked: true` on every record, `x-eventscope-masked: true` on the response). Every export is
audited: who, which filter, which format.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter
from litestar.response import Stream

from eventscope.backend.export import MEDIA_TYPES, Span, export_stream, filename
from eventscope.backend.filters import FilterError
from eventscope.backend.redaction import Redactor
from eventscope.backend.store.eventstore import EventStore
from eventscope.web.auth import Principal
from eventscope.web.context import WebContext
from eventscope.web.dependencies import Position
from eventscope.web.filtering import filter_from, query, refuse_masked_values
from eventscope.web.request import AnyRequest

FORMAT_HELP = "`ndjson` (one record per line, the default) or `json` (one array)."


@get(
    "/api/events/export",
    summary="Every event the filter selects, oldest first, as an NDJSON or JSON download",
    description="Takes the filter parameters of /api/events (docs/api.md#filters), `before` / "
    "`after` cursors and `format`. Streams the events stored when the export started, in "
    "commit order, with typed properties and headers, raw property bytes and the body as JSON, "
    "text or base64 (docs/api.md#export).",
    tags=("events",),
)
async def export_events(
    request: AnyRequest,
    store: NamedDependency[EventStore],
    web: NamedDependency[WebContext],
    principal: NamedDependency[Principal],
    mask: NamedDependency[Redactor | None],
    position: NamedDependency[Position],
    format: Annotated[str, QueryParameter(description=FORMAT_HELP)] = "ndjson",
) -> Stream:
    if format not in MEDIA_TYPES:
        raise ValidationException(f"format: {format[:20]!r} is not ndjson or json")
    try:
        event_filter = filter_from(request.query_params.multi_items())
        refuse_masked_values(event_filter, mask)
    except FilterError as exc:
        raise ValidationException(str(exc)) from None
    fmt: Any = format
    await store.audit.record(
        actor=principal.name,
        role=principal.role,
        action="export",
        result="ok",
        target=query(event_filter.query_items()) or None,
        client=web.attempts.client(request.scope),
        details={"format": format, "masked": mask is not None},
    )
    name = filename(fmt)
    return Stream(
        export_stream(
            store,
            event_filter,
            fmt,
            span=Span(after=position.after, before=position.before),
            mask=mask,
        ),
        media_type=MEDIA_TYPES[format],
        headers={
            "content-disposition": f'attachment; filename="{name}"',
            "x-eventscope-masked": "true" if mask is not None else "false",
        },
    )
