"""The audit log, as a page and as JSON: logins, failed logins, and every operator action.

The name typed into a failed login is often a password pasted in the wrong field: it is shown
to operators only (viewers see the entry, not the name). Summaries of failure floods that have
closed are written before the log is read (web/login_audit.py)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from eventscope.backend.store.paging import MAX_ROW_ID, clamp_limit
from eventscope.web.auth import Principal
from eventscope.web.context import WebContext
from eventscope.web.display import iso

Cursor = Annotated[int | None, QueryParameter(ge=1, le=MAX_ROW_ID, description="Entry id cursor")]
Limit = Annotated[int | None, QueryParameter(ge=1, le=1000)]


def shown_to(principal: Principal, row: dict[str, Any]) -> dict[str, Any]:
    """An entry as `principal` may see it: the actor of a failed attempt only for operators."""
    if principal.is_operator or row["result"] == "ok":
        return {**row, "actor_hidden": False}
    return {**row, "actor": None, "actor_hidden": True}


def _next(rows: list[dict[str, Any]], size: int) -> int | None:
    return rows[-1]["id"] if len(rows) == size else None


async def _entries(
    web: WebContext, principal: Principal, size: int, before: int | None
) -> list[dict[str, Any]]:
    await web.attempts.audit.flush()
    return [shown_to(principal, row) for row in await web.store.audit.entries(size, before)]


@get("/api/audit", tags=["audit"], summary="Audit entries, newest first (keyset paged)")
async def audit_api(
    web: NamedDependency[WebContext],
    principal: NamedDependency[Principal],
    limit: Limit = None,
    before: Cursor = None,
) -> dict[str, Any]:
    size = clamp_limit(limit, web.settings.page_size)
    rows = await _entries(web, principal, size, before)
    return {
        "items": [{**row, "at": iso(row["at"])} for row in rows],
        "next_before": _next(rows, size),
    }


@get("/audit", include_in_schema=False)
async def audit_page(
    web: NamedDependency[WebContext], principal: NamedDependency[Principal], before: Cursor = None
) -> Template:
    size = web.settings.page_size
    rows = await _entries(web, principal, size, before)
    return Template(
        "audit.html",
        context={"entries": rows, "before": before, "next_before": _next(rows, size)},
    )
