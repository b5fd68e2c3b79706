"""The event type catalog's tables: what is left to count, the known types, writing a batch's
counts, and the reads the types page makes.

Written only by the type catalog (backend/type_catalog.py), in one transaction per batch that
also moves `type_catalog_progress`: the move is a compare-and-set, so a second catalog over the
same database (another process) cannot count a batch twice; it finds the cursor moved and
starts again from there. On SQLite the transaction runs in the store's writer thread, queued
behind the recorder's batches; on Postgres it reads, like the change feed, only below the
oldest running transaction, so no event is passed over. The page reads a bounded number of
rows of these small tables, never the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, null, select
from sqlalchemy.ext.asyncio import AsyncConnection

from eventscope.backend.store.catalogs import FollowsEvents, save_with_progress, start_over
from eventscope.backend.store.models import (
    event_types,
    events,
    type_catalog_progress,
    type_rate_buckets,
    type_shape_changes,
)
from eventscope.backend.store.paging import Cursor

MAX_SHAPE_BODY = 256 * 1024  # larger bodies are counted, not read for their shape or sample
TYPE_COLUMNS = tuple(c.name for c in event_types.columns)

_PENDING = (
    events.c.id,
    events.c.commit_seq,
    events.c.received_at,
    events.c.routing_key,
    events.c.event_type,
    events.c.event_type_key,
    events.c.dead_letter,
    events.c.body_kind,
    events.c.body_truncated,
    case((events.c.body_size <= MAX_SHAPE_BODY, events.c.body), else_=null()).label("body"),
)

_UPSERT_TYPE = (
    f"INSERT INTO event_types ({', '.join(TYPE_COLUMNS)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join(':' + c for c in TYPE_COLUMNS)}) ON CONFLICT (type_key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in TYPE_COLUMNS if c != "type_key")
)
_ADD_BUCKET = (
    "INSERT INTO type_rate_buckets (type_key, minute, events) VALUES (:type_key, :minute, :events) "
    "ON CONFLICT (type_key, minute) DO UPDATE SET "
    "events = type_rate_buckets.events + excluded.events"
)
_ADD_CHANGE = (
    "INSERT INTO type_shape_changes (type_key, event_id, at, changes) "
    "VALUES (:type_key, :event_id, :at, :changes)"
)
_PRUNE = "DELETE FROM type_rate_buckets WHERE minute < :minute"


@dataclass
class CatalogWrite:
    """What one batch changes: whole type rows, new change records, rate counts to add."""

    types: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    buckets: dict[tuple[int, int], int] = field(default_factory=dict)  # (type_key, minute)
    prune_before: int | None = None  # drop rate buckets older than this minute


@dataclass(frozen=True)
class TypesPage:
    rows: list[dict[str, Any]]  # the most recently seen types, newest first
    total: int  # how many types are known
    rates: dict[int, dict[int, int]]  # type_key → minute → events


class EventTypes(FollowsEvents):
    progress_table = type_catalog_progress
    pending_columns = _PENDING

    async def known(self, keys: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The stored rows of these types."""
        if not keys:
            return {}
        query = select(event_types).where(event_types.c.type_key.in_(sorted(set(keys))))
        async with self.store.engine.connect() as conn:
            return {r.type_key: dict(r._mapping) for r in await conn.execute(query)}

    async def save(self, write: CatalogWrite, start: Cursor, end: Cursor) -> bool:
        """Write one batch and move the progress from `start` to `end`, in one transaction;
        False (nothing written) when the progress is no longer at `start`."""
        buckets = [
            {"type_key": key, "minute": minute, "events": n}
            for (key, minute), n in sorted(write.buckets.items())
        ]
        types = sorted(write.types, key=lambda r: r["type_key"])  # one lock order for all
        prune = [] if write.prune_before is None else [{"minute": write.prune_before}]
        return await save_with_progress(
            self.store,
            type_catalog_progress,
            start,
            end,
            [
                (_UPSERT_TYPE, types),
                (_ADD_CHANGE, write.changes),
                (_ADD_BUCKET, buckets),
                (_PRUNE, prune),
            ],
        )

    async def reset(self) -> None:
        """Forget the catalog and count every event again (store/catalogs.py)."""
        await start_over(
            self.store,
            (type_shape_changes, type_rate_buckets, event_types),
            type_catalog_progress,
        )

    async def page(self, limit: int, *, since_minute: int) -> TypesPage:
        """The `limit` most recently seen types, the number of types, and their rate buckets
        from `since_minute` on. A few indexed reads of the catalog, whatever the events."""
        query = (
            select(event_types)
            .order_by(event_types.c.last_seen.desc(), event_types.c.type_key)
            .limit(limit)
        )
        async with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
            total = len(rows)
            if total == limit:
                total = int(await conn.scalar(select(func.count()).select_from(event_types)) or 0)
            rates = await _rates(conn, [r["type_key"] for r in rows], since_minute)
        return TypesPage(rows, total, rates)

    async def one(
        self, type_key: int, *, since_minute: int
    ) -> tuple[dict[str, Any], dict[int, int]] | None:
        """One type's row and its rate buckets from `since_minute` on, or None."""
        query = select(event_types).where(event_types.c.type_key == type_key)
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            rates = await _rates(conn, [type_key], since_minute)
        return dict(row._mapping), rates.get(type_key, {})

    async def changes(
        self, type_key: int, limit: int, before: int | None = None
    ) -> list[dict[str, Any]]:
        """A type's flagged shape changes, newest first (keyset paged by id)."""
        query = select(type_shape_changes).where(type_shape_changes.c.type_key == type_key)
        if before is not None:
            query = query.where(type_shape_changes.c.id < before)
        query = query.order_by(type_shape_changes.c.id.desc()).limit(limit)
        async with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]


async def _rates(conn: AsyncConnection, keys: list[int], since: int) -> dict[int, dict[int, int]]:
    """type_key → minute → events, for these types from minute `since` on."""
    rates: dict[int, dict[int, int]] = {}
    if keys:
        buckets = select(
            type_rate_buckets.c.type_key, type_rate_buckets.c.minute, type_rate_buckets.c.events
        ).where(type_rate_buckets.c.type_key.in_(keys), type_rate_buckets.c.minute >= since)
        for key, minute, n in await conn.execute(buckets):
            rates.setdefault(key, {})[minute] = n
    return rates
