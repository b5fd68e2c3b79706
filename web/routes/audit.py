"""The audit log, as a page and as JSON: logins, failed logins, and every operator action."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import MAX_ROW_ID, clamp_limit
from eventscope.web.display import iso

Cursor = Annotated[int | None, QueryParameter(ge=1, le=MAX_ROW_ID, description="Entry id cursor")]
Limit = Annotated[int | None, QueryParameter(ge=1, le=1000)]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": iso(row["at"])}


def _next(rows: list[dict[str, Any]], size: int) -> int | None:
    return rows[-1]["id"] if len(rows) == size else None


@get("/api/audit", tags=["audit"], summary="Audit entries, newest first (keyset paged)")
async def audit_api(
    store: NamedDependency[EventStore],
    settings: NamedDependency[Settings],
    limit: Limit = None,
    before: Cursor = None,
) -> dict[str, Any]:
    size = clamp_limit(limit, settings.page_size)
    rows = await store.audit.entries(size, before)
    return {"items": [_entry(row) for row in rows], "next_before": _next(rows, size)}


@get("/audit", include_in_schema=False)
async def audit_page(
    store: NamedDependency[EventStore], settings: NamedDependency[Settings], before: Cursor = None
) -> Template:
    size = settings.page_size
    rows = await store.audit.entries(size, before)
    return Template(
        "audit.html",
        context={"entries": rows, "before": before, "next_before": _next(rows, size)},
    )
