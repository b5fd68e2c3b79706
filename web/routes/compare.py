"""Compare two events: `/compare?a=<id>&b=<id>` side by side, `/api/compare` as JSON.

Both read-only, for every role; viewers compare masked values (web/comparison.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from eventscope.backend.redaction import Redactor
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import MAX_ROW_ID
from eventscope.web import comparison
from eventscope.web.dependencies import event_or_404
from eventscope.web.event_view import off_loop

EventId = Annotated[
    int | None, QueryParameter(ge=1, le=MAX_ROW_ID, description="An event's row id")
]
T = TypeVar("T")


async def _compared(
    work: Callable[[dict[str, Any], dict[str, Any], Redactor | None], T],
    store: EventStore,
    mask: Redactor | None,
    a: int,
    b: int,
) -> T:
    """`work(a_row, b_row, mask)`, in a worker thread when a body is large (parsing, masking
    and diffing two large bodies must not stall the loop that also records)."""
    a_row, b_row = await event_or_404(store, a), await event_or_404(store, b)
    larger = a_row if len(a_row["body"]) >= len(b_row["body"]) else b_row
    return await off_loop(lambda _row, m: work(a_row, b_row, m), larger, mask)


@get("/compare", include_in_schema=False)
async def compare_page(
    store: NamedDependency[EventStore],
    mask: NamedDependency[Redactor | None],
    a: EventId = None,
    b: EventId = None,
) -> Template:
    """Both events side by side with what differs; without both ids, a form to pick them."""
    if a is None or b is None:
        return Template("compare.html", context={"pick": True, "a_id": a, "b_id": b})
    context = await _compared(comparison.page_context, store, mask, a, b)
    context.update(pick=False, a_id=a, b_id=b)
    return Template("compare.html", context=context)


@get(
    "/api/compare",
    tags=["events"],
    summary="What differs between two events: fields, properties, headers, body",
    description="Body changes are structural when both bodies are JSON (path, kind added/"
    "removed/changed, values as compact JSON text cut at 300 characters; runs of array items "
    "folded), a line diff when both are text, else `mode` incomparable with a `reason`. At most "
    "1,000 changes (`truncated`). Viewers compare masked values.",
)
async def compare_api(
    store: NamedDependency[EventStore],
    mask: NamedDependency[Redactor | None],
    a: Annotated[int, QueryParameter(ge=1, le=MAX_ROW_ID, description="An event's row id")],
    b: Annotated[int, QueryParameter(ge=1, le=MAX_ROW_ID, description="The other event's row id")],
) -> dict[str, Any]:
    return await _compared(comparison.api_shape, store, mask, a, b)
