"""The audit log, as a page and as JSON: logins, failed logins, and every operator action."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from eventscope.backend.audit import entries
from eventscope.backend.store.queries import MAX_ROW_ID, clamp_limit
from eventscope.web.display import iso
from eventscope.web.services import Services

Cursor = Annotated[int | None, QueryParameter(ge=1, le=MAX_ROW_ID, description="Entry id cursor")]
Limit = Annotated[int | None, QueryParameter(ge=1, le=1000)]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": iso(row["at"])}


@get("/api/audit", tags=["audit"], summary="Audit entries, newest first (keyset paged)")
async def audit_api(
    services: NamedDependency[Services], limit: Limit = None, before: Cursor = None
) -> dict[str, Any]:
    size = clamp_limit(limit, services.settings.page_size)
    rows = await entries(services.engine, size, before)
    return {
        "items": [_entry(row) for row in rows],
        "next_before": rows[-1]["id"] if len(rows) == size else None,
    }


@get("/audit", include_in_schema=False)
async def audit_page(services: NamedDependency[Services], before: Cursor = None) -> Template:
    size = services.settings.page_size
    rows = await entries(services.engine, size, before)
    return Template(
        "audit.html",
        context={
            "entries": rows,
            "before": before,
            "next_before": rows[-1]["id"] if len(rows) == size else None,
        },
    )
