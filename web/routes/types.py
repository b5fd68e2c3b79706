"""Event types, as a page and as JSON: every type seen with its count, rate, sample, shape and
flagged shape changes. Both read the type catalog (backend/type_catalog.py), a few small
tables, never the events: the page answers as fast on a billion events as on ten."""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from eventscope.backend.redaction import Redactor
from eventscope.backend.store.paging import MAX_ROW_ID
from eventscope.web.context import WebContext
from eventscope.web.type_view import (
    RATE_MINUTES,
    age_text,
    change_record,
    page_extras,
    type_view,
)

DEFAULT_TYPES = 100
MAX_TYPES = 500
Limit = Annotated[
    int | None,
    QueryParameter(ge=1, le=MAX_TYPES, description="How many types, most recently seen first"),
]
ChangesBefore = Annotated[
    int | None, QueryParameter(ge=1, le=MAX_ROW_ID, description="Change id cursor")
]
ChangesLimit = Annotated[int | None, QueryParameter(ge=1, le=1000)]


async def _types(web: WebContext, mask: Redactor | None, limit: int | None) -> dict[str, Any]:
    now_minute = int(time.time() // 60)
    found = await web.store.types.page(
        limit or DEFAULT_TYPES, since_minute=now_minute - RATE_MINUTES + 1
    )
    return {
        "items": [
            type_view(row, found.rates.get(row["type_key"], {}), now_minute, mask)
            for row in found.rows
        ],
        "total": found.total,
        "behind_seconds": web.runtime.catalog.behind,
        "rate_minutes": RATE_MINUTES,
    }


@get(
    "/api/types",
    tags=["types"],
    summary="Every event type seen, most recently seen first",
    description="Per type (per routing key for events without a type; dead letters left out): "
    "count, first and last seen, routing keys, events per minute over the last hour, a sample "
    "payload, the merged shape (field paths and JSON types) and the newest flagged shape "
    "changes. Kept behind ingest: `behind_seconds` says how far.",
)
async def types_api(
    web: NamedDependency[WebContext], mask: NamedDependency[Redactor | None], limit: Limit = None
) -> dict[str, Any]:
    return await _types(web, mask, limit)


@get(
    "/api/types/{type_key:int}",
    tags=["types"],
    summary="One event type with its whole shape",
    description="As an item of /api/types, with every path of the shape (lists show 100).",
)
async def type_api(
    web: NamedDependency[WebContext],
    mask: NamedDependency[Redactor | None],
    type_key: FromPath[int],
) -> dict[str, Any]:
    now_minute = int(time.time() // 60)
    found = await web.store.types.one(type_key, since_minute=now_minute - RATE_MINUTES + 1)
    if found is None:
        raise NotFoundException(f"No event type with key {type_key}.")
    row, rates = found
    return type_view(row, rates, now_minute, mask, max_paths=None)


@get(
    "/api/types/{type_key:int}/changes",
    tags=["types"],
    summary="Every flagged shape change of one type, newest first (keyset paged)",
)
async def type_changes_api(
    web: NamedDependency[WebContext],
    mask: NamedDependency[Redactor | None],
    type_key: FromPath[int],
    limit: ChangesLimit = None,
    before: ChangesBefore = None,
) -> dict[str, Any]:
    if await web.store.types.one(type_key, since_minute=0) is None:
        raise NotFoundException(f"No event type with key {type_key}.")
    size = limit or web.settings.page_size
    rows = await web.store.types.changes(type_key, size, before)
    return {
        "items": [change_record(row, mask) for row in rows],
        "next_before": rows[-1]["id"] if len(rows) == size else None,
    }


@get("/types", include_in_schema=False)
async def types_page(
    web: NamedDependency[WebContext], mask: NamedDependency[Redactor | None], limit: Limit = None
) -> Template:
    found = await _types(web, mask, limit)
    return Template(
        "types.html",
        context={
            **found,
            "items": [page_extras(item) for item in found["items"]],
            "limit": limit or DEFAULT_TYPES,
            "max_types": MAX_TYPES,
            "exchanges": web.settings.exchanges,
            "redacted": mask is not None,
            "behind_text": age_text(found["behind_seconds"] or 0.0),
        },
    )
