"""Export: every event a filter selects, streamed as NDJSON or a JSON array, in commit order.

The page, `GET /api/events/export` and `eventscope export` share this. Memory stays constant
whatever the export's size: the store is read one page of summaries at a time (keyset on the
commit-order cursor, never OFFSET), full rows in chunks of bounded body bytes, and each chunk is
encoded and handed on before the next is read. Large chunks are encoded in a worker thread, so
the event loop that also runs the recorder and the live view never stalls on a 16 MiB body.

What is exported is the store as it was when the export started: rows are read oldest first
up to the newest cursor at that moment. Events that arrive meanwhile are left out (they come
after the cursor); none is skipped or repeated, because a row's cursor never changes.

Each record holds what a republish needs byte for byte (`backend/export_read.py` reads it
back): the typed `properties` and `headers` (backend/fieldtable.py, the form the API calls
`*_typed`), the property bytes as received (`raw_properties`, base64: the typed form does not
keep integer widths, float precision or header order), the exact exchange and routing key when
they had to be altered to be stored (`originals`), and the body as parsed JSON (`body`, only
when its compact rendering gives back the same bytes), text (`body_text`, valid UTF-8) or
`body_base64`, named by `body_encoding`. A viewer's export is masked (`masked: true` on every
record): secrets masked as everywhere else, no raw bytes — it cannot be republished exactly.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select

from eventscope.backend.filters import EventFilter
from eventscope.backend.redaction import MASK, Redactor
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.models import events
from eventscope.backend.store.paging import OLDEST_FIRST, ORIGIN, Cursor, Page

Format = Literal["ndjson", "json"]
MEDIA_TYPES: dict[str, str] = {"ndjson": "application/x-ndjson", "json": "application/json"}
PAGE_SIZE = 500  # summaries read per query
CHUNK_BYTES = 8 * 1024 * 1024  # body bytes of the full rows read (and encoded) at once
OFF_LOOP_BYTES = 64 * 1024  # chunks with more body bytes than this are encoded in a thread
VIEWER_BYTES = 256 * 1024  # the most of a body masked for a viewer (as web/event_view.py)
_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eventscope-export")

# The full-row columns a record is built from (summaries carry no body, headers or properties).
_COLUMNS = tuple(
    events.c[name]
    for name in (
        "id",
        "commit_seq",
        "observation",
        "received_at",
        "exchange",
        "routing_key",
        "redelivered",
        "event_id",
        "event_type",
        "correlation_id",
        "causation_id",
        "aggregate_type",
        "aggregate_id",
        "aggregate_version",
        "occurred_at",
        "message_id",
        "content_type",
        "source",
        "trace_id",
        "dead_letter",
        "body_kind",
        "body_size",
        "body_truncated",
        "body",
        "properties",
        "headers",
        "originals",
        "raw_properties",
        "problem",
    )
)
EXTRACTED = (
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "message_id",
    "content_type",
    "source",
    "trace_id",
    "dead_letter",
)
# The text columns viewers see masked (the same list as web/event_view.py's masked_row).
_MASKED_TEXT = (
    "source",
    "exchange",
    "routing_key",
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "aggregate_type",
    "aggregate_id",
    "message_id",
    "content_type",
    "problem",
)


@dataclass(frozen=True)
class Span:
    """Which part of commit order to export: after `after`, before `before` (either open)."""

    after: Cursor | None = None
    before: Cursor | None = None


# -- reading the store, page by page ------------------------------------------------------------


async def newest_cursor(store: EventStore) -> Cursor:
    """Where the store ends now: the export's upper bound."""
    page = await store.events.page(1)
    return Cursor.of(page.rows[0]) if page.rows else ORIGIN


async def matching_pages(
    store: EventStore,
    f: EventFilter,
    *,
    span: Span = Span(),
    mask: Redactor | None = None,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Summaries of every matching row, oldest first, one page at a time (the filter language
    through `store.search.page`, or `store.events.page` with no filter), up to the newest row
    stored when the export started."""
    newest = await newest_cursor(store)

    def inside(cursor: Cursor) -> bool:
        return cursor <= newest and (span.before is None or cursor < span.before)

    position = span.after or ORIGIN
    while position < newest and (span.before is None or position < span.before):
        page = await _page(store, f, position, mask, page_size)
        rows = list(reversed(page.rows))  # pages come newest first; exports go oldest first
        wanted = [row for row in rows if inside(Cursor.of(row))]
        if wanted:
            yield wanted
        if len(wanted) < len(rows) or page.newer is None:
            return
        position = page.newer


async def _page(
    store: EventStore, f: EventFilter, position: Cursor, mask: Redactor | None, size: int
) -> Page:
    if f.empty:
        return await store.events.page(size, newer_than=position)
    return (await store.search.page(f, size, newer_than=position, mask=mask)).page


async def full_rows(
    store: EventStore, summaries: Sequence[dict[str, Any]], chunk_bytes: int = CHUNK_BYTES
) -> AsyncIterator[list[dict[str, Any]]]:
    """The full rows of `summaries`, in their order, in chunks of at most `chunk_bytes` of
    body (a single larger body is a chunk of its own)."""
    group: list[int] = []
    size = 0
    for row in summaries:
        weight = int(row.get("body_size") or 0)
        if group and size + weight > chunk_bytes:
            yield await _fetch(store, group)
            group, size = [], 0
        group.append(int(row["id"]))
        size += weight
    if group:
        yield await _fetch(store, group)


async def _fetch(store: EventStore, ids: list[int]) -> list[dict[str, Any]]:
    # A read of rows by id, like store.events.contents, with every column a record needs.
    query = select(*_COLUMNS).where(events.c.id.in_(ids)).order_by(*OLDEST_FIRST)
    async with store.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


# -- one record -----------------------------------------------------------------------------------


def iso(value: dt.datetime | None) -> str | None:
    """UTC, microseconds, `Z` (SQLite hands datetimes back naive; everything stored is UTC)."""
    if value is None:
        return None
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _typed(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def compact_json(body: bytes) -> tuple[bool, Any]:
    """(True, data) when the body is JSON whose compact rendering (as JavaScript's
    `JSON.stringify` writes it) is exactly these bytes: then the data stands for the bytes."""
    try:
        data = json.loads(body)
        again = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return again.encode("utf-8") == body, data
    except (ValueError, RecursionError, UnicodeEncodeError):
        return False, None


def render_compact(data: Any) -> bytes:
    """The bytes a `body_encoding: json` record stands for."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _strict(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return False
    return True


def body_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The body, as exactly as JSON can carry it: parsed JSON, text, or base64."""
    body = bytes(row["body"])
    if row.get("body_kind") == "json":
        exact, data = compact_json(body)
        if exact:
            return {"body_encoding": "json", "body": data}
    try:
        return {"body_encoding": "text", "body_text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_encoding": "base64", "body_base64": base64.b64encode(body).decode("ascii")}


def masked_body_fields(row: dict[str, Any], mask: Redactor) -> dict[str, Any]:
    """A viewer's body: JSON masked on its structure, text masked (at most VIEWER_BYTES), and
    nothing of a binary body (masking cannot see into bytes that are not text)."""
    body = bytes(row["body"])
    cut = len(body) > VIEWER_BYTES
    if row.get("body_kind") == "json" and not cut:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            pass
        else:
            masked = mask.data(data)
            if _strict(masked):
                return {"body_encoding": "json", "body": masked, "body_cut": False}
    if row.get("body_kind") in ("json", "text", "empty"):
        shown = mask.raw(body[:VIEWER_BYTES]).decode("utf-8", "replace")
        return {"body_encoding": "text", "body_text": shown, "body_cut": cut}
    return {"body_encoding": "withheld", "body_cut": False}


def record(row: dict[str, Any], mask: Redactor | None = None) -> dict[str, Any]:
    """One stored event as an export record (viewers: `mask`, secrets masked, no raw bytes)."""
    props, headers = _typed(row.get("properties")), _typed(row.get("headers"))
    originals = _typed(row.get("originals"))
    texts = {name: row.get(name) for name in _MASKED_TEXT}
    if mask is not None:
        props, headers, originals = mask.tagged(props), mask.tagged(headers), mask.tagged(originals)
        for name, value in texts.items():
            if isinstance(value, str):
                texts[name] = MASK if mask.sensitive(name) else mask.text(value)
    raw = row.get("raw_properties")
    out: dict[str, Any] = {
        "id": row["id"],
        "cursor": str(Cursor.of(row)),
        "received_at": iso(row.get("received_at")),
        "exchange": texts["exchange"],
        "routing_key": texts["routing_key"],
        "redelivered": bool(row.get("redelivered")),
        "observation": row.get("observation") or 1,
    }
    for name in EXTRACTED:
        out[name] = texts.get(name, row.get(name))
    out["occurred_at"] = iso(row.get("occurred_at"))
    out.update(
        properties=props,
        headers=headers,
        raw_properties=base64.b64encode(bytes(raw)).decode("ascii")
        if raw is not None and mask is None
        else None,
        originals=originals,
        body_size=row.get("body_size"),
        body_truncated=bool(row.get("body_truncated")),
    )
    out.update(body_fields(row) if mask is None else masked_body_fields(row, mask))
    out["problem"] = texts["problem"]
    out["masked"] = mask is not None
    return out


# -- encoding -------------------------------------------------------------------------------------


def dump(item: dict[str, Any]) -> bytes:
    """One record as compact JSON: UTF-8, or ASCII escapes when text holds lone surrogates
    (a header value can)."""
    try:
        text = json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(item, separators=(",", ":"), allow_nan=False).encode("ascii")


def encoded(row: dict[str, Any], mask: Redactor | None) -> bytes:
    """One row's record, encoded. A JSON body nested just deep enough to parse but not to be
    written again inside a record goes as text (the same bytes)."""
    try:
        return dump(record(row, mask))
    except RecursionError:
        return dump(record({**row, "body_kind": "text"}, mask))


def encode_rows(rows: Sequence[dict[str, Any]], mask: Redactor | None, fmt: Format) -> bytes:
    """The records of `rows`: NDJSON lines, or JSON array items joined by `,` (pure: runs in a
    worker thread for large chunks)."""
    if fmt == "ndjson":
        return b"".join(encoded(row, mask) + b"\n" for row in rows)
    return b",\n".join(encoded(row, mask) for row in rows)


async def export_stream(
    store: EventStore,
    f: EventFilter,
    fmt: Format,
    *,
    span: Span = Span(),
    mask: Redactor | None = None,
    page_size: int = PAGE_SIZE,
    chunk_bytes: int = CHUNK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """The export as byte chunks, one per chunk of rows; `progress(n)` after each (n rows).
    JSON is one array, `[` first and `]` last, so an export cut short is not valid JSON."""
    loop = asyncio.get_running_loop()
    first = True
    if fmt == "json":
        yield b"["
    async for summaries in matching_pages(store, f, span=span, mask=mask, page_size=page_size):
        async for rows in full_rows(store, summaries, chunk_bytes):
            if not rows:  # gone between the page and the read
                continue
            if sum(len(row["body"]) for row in rows) > OFF_LOOP_BYTES:
                data = await loop.run_in_executor(_WORKERS, encode_rows, rows, mask, fmt)
            else:
                data = encode_rows(rows, mask, fmt)
            if fmt == "json":
                data = b"\n" + data if first else b",\n" + data
            first = False
            yield data
            if progress is not None:
                progress(len(rows))
    if fmt == "json":
        yield b"]\n" if first else b"\n]\n"


def filename(fmt: Format, now: dt.datetime | None = None) -> str:
    """`eventscope-events-20261201T100000Z.ndjson`: sortable, no characters to quote."""
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"eventscope-events-{stamp}.{fmt}"
