"""The test API of a correlation: its events (long-poll) and its export as a test fixture.

`GET /api/correlations/{id}/events` answers what end-to-end tests ask after clicking: "have
these events happened yet?" — oldest first, with `wait`/`min_count`/`after` (web/long_poll.py).
`GET /api/correlations/{id}/fixture` downloads the correlation as a JSON file that
`eventscope.testing` compares a later run against. The id is matched exactly; an id holding
`/` cannot be a path segment: use `/api/events?correlation_id=…` (and the fixture's
`?correlation_id=` form, `/api/fixture`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncGenerator
from typing import Annotated, Any, cast

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from eventscope.backend.export import full_rows, matching_pages, record
from eventscope.backend.filters import EventFilter, FilterError
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import clamp_limit
from eventscope.web.dependencies import Position
from eventscope.web.filtering import filter_from, refuse_masked_values
from eventscope.web.long_poll import MinCountParameter, WaitParameter, long_poll
from eventscope.web.request import AnyRequest

FIXTURE_FORMAT = 1
Rows = AsyncGenerator[list[dict[str, Any]], None]
MAX_FIXTURE_EVENTS = 1000  # a test fixture, not an archive: larger correlations are cut
MAX_FIXTURE_BYTES = 64 * 1024 * 1024  # body bytes (the largest recorded body is 16 MiB)
MAX_FIXTURES_AT_ONCE = 2  # built in memory: a few at a time, the rest are told to retry
_building = asyncio.Semaphore(MAX_FIXTURES_AT_ONCE)
OFF_LOOP_BYTES = 64 * 1024


def correlation_filter(
    request: AnyRequest, correlation_id: str, mask: Redactor | None, *, extra: bool = True
) -> EventFilter:
    """The correlation as a filter, with any other filter parameters of the query."""
    pairs = list(request.query_params.multi_items()) if extra else []
    try:
        event_filter = filter_from([*pairs, ("correlation_id", correlation_id)])
        refuse_masked_values(event_filter, mask)
    except FilterError as exc:
        raise ValidationException(str(exc)) from None
    return event_filter


class CorrelationEventsApi(Controller):
    path = "/api"
    tags = ("test api",)

    @get(
        "/correlations/{correlation_id:str}/events",
        summary="A correlation's events, oldest first; with `wait`, a long-poll",
        description="Events whose correlation id is exactly this one, in commit order, after "
        "`after`. With `wait`, the answer comes as soon as `min_count` of them are there, or "
        "when the wait ends (`timed_out: true`, with what there is). Other filter parameters "
        "(routing_key, type, ...) narrow it further.",
    )
    async def correlation_events(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        mask: NamedDependency[Redactor | None],
        position: NamedDependency[Position],
        correlation_id: FromPath[str],
        limit: Annotated[int | None, QueryParameter(ge=1, le=1000)] = None,
        wait: WaitParameter = None,
        min_count: MinCountParameter = None,
    ) -> dict[str, Any]:
        if position.before is not None:
            raise ValidationException("before: this list is oldest first; page with `after`")
        return await long_poll(
            request,
            store,
            settings,
            correlation_filter(request, correlation_id, mask),
            after=position.after,
            wait=wait or 0.0,
            min_count=min_count,
            limit=clamp_limit(limit, settings.page_size),
            mask=mask,
        )

    @get(
        "/correlations/{correlation_id:str}/fixture",
        summary="A correlation as a test fixture (JSON file, typed, byte-exact)",
        description="Every event of the correlation, oldest first, as export records "
        "(docs/testing.md#fixtures): load it with eventscope.testing.load_fixture.",
    )
    async def correlation_fixture(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        mask: NamedDependency[Redactor | None],
        correlation_id: FromPath[str],
    ) -> Response[bytes]:
        return await _fixture(request, store, mask, correlation_id)

    @get(
        "/fixture",
        summary="A correlation as a test fixture, the id as `?correlation_id=` (ids with `/`)",
    )
    async def fixture_by_query(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        mask: NamedDependency[Redactor | None],
        correlation_id: Annotated[str, QueryParameter(min_length=1)],
    ) -> Response[bytes]:
        return await _fixture(request, store, mask, correlation_id)


async def _fixture(
    request: AnyRequest, store: EventStore, mask: Redactor | None, correlation_id: str
) -> Response[bytes]:
    event_filter = correlation_filter(request, correlation_id, mask, extra=False)
    if _building.locked():
        raise HTTPException(
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"{MAX_FIXTURES_AT_ONCE} fixtures are being built; try again shortly",
            headers={"retry-after": "2"},
        )
    async with _building:
        records, truncated = await _records(store, event_filter, mask)
    head = {
        "eventscope_fixture": FIXTURE_FORMAT,
        "correlation_id": correlation_id,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "masked": mask is not None,
        "truncated": truncated,
    }
    opening = _dump(head)[:-1] + (b',\n "events": [\n' if records else b',\n "events": []')
    body = opening + b",\n".join(records) + (b"\n ]\n}\n" if records else b"\n}\n")
    return Response(
        body,
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="{fixture_filename(correlation_id)}"'
        },
    )


async def _records(
    store: EventStore, event_filter: EventFilter, mask: Redactor | None
) -> tuple[list[bytes], bool]:
    """The correlation's export records, encoded, oldest first; True when cut at a bound."""
    records: list[bytes] = []
    body_bytes = 0
    # Both are async generators; closed at once when the bound cuts the reading short.
    pages = cast(Rows, matching_pages(store, event_filter, mask=mask))
    async with contextlib.aclosing(pages):
        async for summaries in pages:
            chunks = cast(Rows, full_rows(store, summaries))
            async with contextlib.aclosing(chunks):
                async for rows in chunks:
                    kept: list[dict[str, Any]] = []
                    for row in rows:
                        body_bytes += len(row["body"])
                        if len(records) + len(kept) >= MAX_FIXTURE_EVENTS or (
                            body_bytes > MAX_FIXTURE_BYTES
                        ):
                            records += await _encode_all(kept, mask)
                            return records, True
                        kept.append(row)
                    records += await _encode_all(kept, mask)
    return records, False


async def _encode_all(rows: list[dict[str, Any]], mask: Redactor | None) -> list[bytes]:
    """Records of `rows`; large bodies are encoded in a worker thread, off the event loop
    that also runs the recorder and the live view."""
    if sum(len(row["body"]) for row in rows) <= OFF_LOOP_BYTES:
        return [_encoded(row, mask) for row in rows]
    return await asyncio.to_thread(lambda: [_encoded(row, mask) for row in rows])


def _encoded(row: dict[str, Any], mask: Redactor | None) -> bytes:
    """One export record, indented inside the document. A JSON body nested too deep to be
    written again goes as text (the same bytes), as in backend/export.py."""
    try:
        return b"  " + _dump(record(row, mask))
    except RecursionError:
        return b"  " + _dump(record({**row, "body_kind": "text"}, mask))


def _dump(item: dict[str, Any]) -> bytes:
    """Compact JSON in ASCII (a header value may hold a lone surrogate, which UTF-8 cannot
    carry): one line per record, so a fixture kept in git diffs event by event."""
    return json.dumps(item, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def fixture_filename(correlation_id: str) -> str:
    """`correlation-req_5e2b.json`: the id with anything outside [A-Za-z0-9._-] replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", correlation_id)[:80].strip(".") or "id"
    return f"correlation-{safe}.json"
