"""Re-extract stored events with the current rules: what `eventscope reindex` runs.

Extraction happens when a message is recorded, so events stored before a rule change (or
before a column existed: `source` and `trace_id` came with migration 0006, old rows have them
NULL) keep what was found then. This reads the stored events in commit order, a batch at a
time, extracts each again from its stored body, properties and headers, and UPDATEs by id the
rows whose extracted columns, keys or `originals` differ. Rows are never inserted or deleted.
Each batch is one short transaction (on SQLite through the store's writer thread), so the
recorder keeps writing meanwhile; events recorded after the run started were extracted with
the rules the recorder runs, and are not visited.

Safe to interrupt and rerun: a rerun rewrites nothing that is already current, and `start`
resumes after the last cursor reported. Left as they are: rows stored with a `problem` (reduced
or undecodable: they do not hold what arrived) and rows whose truncated body was JSON (the
whole document is gone). An updated row's full-text words are written again in the same
transaction when an id among them changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from eventscope.backend.envelope import body_document, extract
from eventscope.backend.extraction import Extractor
from eventscope.backend.fieldtable import decode_table, encode_table
from eventscope.backend.ingest.committer import is_transient
from eventscope.backend.redaction import Redactor
from eventscope.backend.search_text import search_text
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.models import events
from eventscope.backend.store.paging import NEWEST_FIRST, OLDEST_FIRST, ORIGIN, Cursor, after
from eventscope.backend.store.sqlite_writer import sql_value as sqlite_value

log = logging.getLogger(__name__)

BATCH = 500
# The columns extraction decides (with `originals`, which keeps an unusable occurred-at value).
EXTRACTED = (
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "event_type_key",
    "correlation_key",
    "aggregate_key",
    "source",
    "source_key",
    "trace_id",
    "trace_key",
    "originals",
)
# Extracted columns the full-text words include (backend/search_text.py).
_SEARCHED = ("event_type", "event_id", "correlation_id", "aggregate_type", "aggregate_id")
_READ = (
    events.c.id,
    events.c.commit_seq,
    events.c.exchange,
    events.c.routing_key,
    events.c.message_id,
    events.c.body_kind,
    events.c.body_truncated,
    events.c.body,
    events.c.properties,
    events.c.headers,
    events.c.problem,
    *(events.c[name] for name in EXTRACTED),
)
_SQLITE_UPDATE = f"UPDATE events SET {', '.join(f'{name} = ?' for name in EXTRACTED)} WHERE id = ?"  # noqa: S608 - fixed names
_SQLITE_WORDS = "INSERT OR REPLACE INTO events_fts (rowid, words) VALUES (?, ?)"
_PG_UPDATE = (
    update(events)
    .where(events.c.id == bindparam("row_id"))
    .values({name: bindparam(f"new_{name}") for name in EXTRACTED})
)
_PG_WORDS = text(
    "INSERT INTO event_search (event_id, doc) VALUES (:id, to_tsvector('simple', :words)) "
    "ON CONFLICT (event_id) DO UPDATE SET doc = EXCLUDED.doc"
)


@dataclass(frozen=True)
class Progress:
    """Where a run stands: `position` is the cursor to resume after."""

    total: int  # events to visit (stored when the run started)
    done: int = 0
    updated: int = 0  # rows whose extracted columns changed
    kept: int = 0  # rows left as they are (stored with a problem, or a truncated JSON body)
    refused: int = 0  # rows the database would not update (logged; left as they were)
    retyped: int = 0  # updated rows whose event type changed (catalogs counted by type are stale)
    position: Cursor = ORIGIN
    finished: bool = False


@dataclass(frozen=True)
class _Change:
    id: int
    values: dict[str, Any]
    words: str | None  # new full-text words, when an id among them changed
    retyped: bool  # the event type (its key) changed


def _utc(value: Any) -> Any:
    """Datetimes as SQLite returns them (naive, UTC) made comparable with extracted ones."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def left_as_is(row: dict[str, Any]) -> bool:
    """Rows re-extraction cannot improve: stored with a problem (they do not hold what
    arrived), or with a truncated body that was JSON (the document is gone)."""
    return row["problem"] is not None or (
        bool(row["body_truncated"]) and row["body_kind"] == "json"
    )


def reextract(row: dict[str, Any], extractor: Extractor) -> dict[str, Any] | None:
    """The extracted columns `row` gets under `extractor`, or None when it is left as it is."""
    if left_as_is(row):
        return None
    truncated = bool(row["body_truncated"])
    props = decode_table(row["properties"] or "{}")
    headers = decode_table(row["headers"] or "{}")
    # A truncated body that was not JSON whole never gave a field; its prefix might parse.
    parsed = None if truncated else body_document(bytes(row["body"]), props)[1]
    values = extract(parsed, props, headers, extractor)
    unparsed = values.pop("occurred_at_unparsed")
    originals = decode_table(row["originals"]) if row["originals"] else {}
    originals.pop("occurred_at", None)
    if unparsed is not None:
        originals["occurred_at"] = unparsed  # last, where the recorder puts it
    values["originals"] = encode_table(originals) if originals else None
    return values


def _change(row: dict[str, Any], extractor: Extractor, mask: Redactor | None) -> _Change | None:
    values = reextract(row, extractor)
    if values is None or all(_utc(row[name]) == values[name] for name in EXTRACTED):
        return None
    words = None
    if mask is not None and any(row[name] != values[name] for name in _SEARCHED):
        words = search_text({**row, **values}, mask)
    retyped = row["event_type_key"] != values["event_type_key"]
    return _Change(int(row["id"]), values, words, retyped)


async def reindex(
    store: EventStore,
    extractor: Extractor,
    *,
    mask: Redactor | None = None,
    batch: int = BATCH,
    start: Cursor = ORIGIN,
    progress: Callable[[Progress], None] = lambda p: None,
    stop: Callable[[], bool] = lambda: False,
) -> Progress:
    """Re-extract every event after `start` stored before this call, in commit order.

    `mask`: the redactor the search indexer uses (full-text words are masked); None leaves
    the full-text index alone. `progress` is called after each batch; `stop()` is asked
    between batches (the result then has `finished=False` and the cursor to resume after).
    Database errors propagate; every batch before them is committed."""
    end = await _last(store)
    state = Progress(total=await _count(store, start, end), position=start)
    progress(state)
    finished = end is None
    while end is not None and not finished and not stop():
        rows = await _read(store, state.position, end, batch)
        changes, kept = [], 0
        for row in rows:
            change = _change(row, extractor, mask)
            if change is not None:
                changes.append(change)
            kept += left_as_is(row)
        refused = await _write(store, changes) if changes else 0
        retyped = sum(c.retyped for c in changes) if not refused else 0
        finished = len(rows) < batch
        state = replace(
            state,
            done=state.done + len(rows),
            updated=state.updated + len(changes) - refused,
            kept=state.kept + kept,
            refused=state.refused + refused,
            retyped=state.retyped + retyped,
            position=Cursor.of(rows[-1]) if rows else state.position,
        )
        progress(state)
    return replace(state, finished=finished)


async def _last(store: EventStore) -> Cursor | None:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                select(events.c.commit_seq, events.c.id).order_by(*NEWEST_FIRST).limit(1)
            )
        ).first()
    return Cursor(int(row[0]), int(row[1])) if row else None


async def _count(store: EventStore, start: Cursor, end: Cursor | None) -> int:
    if end is None:
        return 0
    query = select(func.count()).select_from(events).where(after(start), ~after(end))
    async with store.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


async def _read(
    store: EventStore, position: Cursor, end: Cursor, limit: int
) -> list[dict[str, Any]]:
    query = select(*_READ).where(after(position), ~after(end)).order_by(*OLDEST_FIRST).limit(limit)
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def _write(store: EventStore, changes: Sequence[_Change]) -> int:
    """Apply a batch in one transaction; if the database refuses it (not: is down), apply the
    rows one by one and leave those it refuses. Returns how many were refused."""
    try:
        await _apply(store, changes)
        return 0
    except Exception as exc:
        if is_transient(exc) or not await store.ping():
            raise
        if len(changes) == 1:
            log.warning("event %s could not be updated, left as it was: %s", changes[0].id, exc)
            return 1
    refused = 0
    for change in changes:
        refused += await _write(store, [change])
    return refused


async def _apply(store: EventStore, changes: Sequence[_Change]) -> None:
    if store.is_sqlite:
        updates = [(*(sqlite_value(c.values[name]) for name in EXTRACTED), c.id) for c in changes]
        words = [(c.id, c.words) for c in changes if c.words is not None]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(_SQLITE_UPDATE, updates)
            if words:
                conn.executemany(_SQLITE_WORDS, words)

        await store.sqlite_writer().transaction(work)
        return
    async with store.engine.begin() as conn:
        await _pg_apply(conn, changes)


async def _pg_apply(conn: AsyncConnection, changes: Sequence[_Change]) -> None:
    await conn.execute(
        _PG_UPDATE,
        [
            {"row_id": c.id, **{f"new_{name}": c.values[name] for name in EXTRACTED}}
            for c in changes
        ],
    )
    words = [{"id": c.id, "words": c.words} for c in changes if c.words is not None]
    if words:
        await conn.execute(_PG_WORDS, words)


def progress_line(p: Progress, width: int = 30) -> str:
    """One line of plain text for a terminal: a bar, the share done and what changed."""
    share = p.done / p.total if p.total else 1.0
    filled = min(width, int(share * width))
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%} {p.done:,}/{p.total:,} events"
        f", {p.updated:,} updated, {p.kept + p.refused:,} left as they were"
    )
