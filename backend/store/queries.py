"""Read queries. Every list is keyset-paged by row id (newest first) and has a limit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend.store.models import SUMMARY_COLUMNS, events

MAX_LIMIT = 1000
MAX_ROW_ID = 2**63 - 1  # row ids are BIGINT; anything larger cannot exist


def clamp_limit(limit: int | None, default: int) -> int:
    if limit is None:
        return default
    return max(1, min(int(limit), MAX_LIMIT))


async def list_events(
    engine: AsyncEngine, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """Event summaries (no body), newest first, strictly older than row id `before`."""
    query = select(*SUMMARY_COLUMNS).order_by(events.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(events.c.id < before)
    async with engine.connect() as conn:
        result = await conn.execute(query)
        return [dict(row._mapping) for row in result]


async def events_after(
    engine: AsyncEngine, after: int, limit: int, until: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The newest `limit` summaries with `after` < id (<= `until`), newest first, and how many
    such rows there are in all."""
    window = events.c.id > after
    if until is not None:
        window = window & (events.c.id <= until)
    async with engine.connect() as conn:
        result = await conn.execute(
            select(*SUMMARY_COLUMNS).where(window).order_by(events.c.id.desc()).limit(limit)
        )
        rows = [dict(row._mapping) for row in result]
        if len(rows) < limit:
            return rows, len(rows)
        total = await conn.scalar(select(func.count()).where(window))
        return rows, int(total or 0)


async def get_event(engine: AsyncEngine, event_id: int) -> dict[str, Any] | None:
    if not 1 <= event_id <= MAX_ROW_ID:
        return None
    async with engine.connect() as conn:
        result = await conn.execute(select(events).where(events.c.id == event_id))
        row = result.first()
        return dict(row._mapping) if row else None


async def related_observations(
    engine: AsyncEngine, row: dict[str, Any], limit: int = 20
) -> dict[str, list[dict[str, Any]]]:
    """Other observations of the same publish, and other events reusing its message_id."""
    async with engine.connect() as conn:
        dupes = await conn.execute(
            select(events.c.id, events.c.observation, events.c.received_at)
            .where(events.c.fingerprint == row["fingerprint"], events.c.id != row["id"])
            .order_by(events.c.id)
            .limit(limit)
        )
        duplicates = [dict(r._mapping) for r in dupes]
        copies: list[dict[str, Any]] = []
        conflicts: list[dict[str, Any]] = []
        if row.get("message_id_key") is not None:
            result = await conn.execute(
                select(
                    events.c.id,
                    events.c.exchange,
                    events.c.routing_key,
                    events.c.received_at,
                    (events.c.body == row["body"]).label("same_body"),
                )
                .where(
                    events.c.message_id_key == row["message_id_key"],
                    events.c.message_id == row["message_id"],
                    events.c.fingerprint != row["fingerprint"],
                )
                .order_by(events.c.id)
                .limit(limit)
            )
            for r in result:
                (copies if r.same_body else conflicts).append(dict(r._mapping))
        return {"duplicates": duplicates, "copies": copies, "id_conflicts": conflicts}


async def neighbours(engine: AsyncEngine, event_id: int) -> tuple[int | None, int | None]:
    """The ids just older and just newer than `event_id`, for prev/next links."""
    async with engine.connect() as conn:
        older = await conn.scalar(select(func.max(events.c.id)).where(events.c.id < event_id))
        newer = await conn.scalar(select(func.min(events.c.id)).where(events.c.id > event_id))
        return older, newer


async def max_event_id(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.max(events.c.id))) or 0)


async def max_id_and_count(engine: AsyncEngine) -> tuple[int, int]:
    """The newest row id and the number of rows, from one consistent snapshot."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(func.max(events.c.id), func.count()))).one()
        return int(row[0] or 0), int(row[1] or 0)


async def count_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(events)) or 0)


async def ping(engine: AsyncEngine) -> bool:
    """True when the database answers a trivial query."""
    try:
        async with engine.connect() as conn:
            await conn.scalar(select(1))
        return True
    except Exception:
        return False
