"""Idempotent batch insert: one transaction per batch, redeliveries skipped, duplicates counted.

Rules (design.md §5): a delivery flagged `redelivered` whose fingerprint is already stored is the
same observation and is skipped. Anything else is a new observation: a fingerprint seen before
gets the next `observation` number and is shown as a duplicate publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventscope.backend.store.models import events

_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: int
    skipped_redeliveries: int
    duplicates: int


async def _known_observations(
    conn: AsyncConnection, fingerprints: Sequence[bytes]
) -> dict[bytes, int]:
    known: dict[bytes, int] = {}
    for start in range(0, len(fingerprints), _IN_CHUNK):
        chunk = fingerprints[start : start + _IN_CHUNK]
        result = await conn.execute(
            select(events.c.fingerprint, func.max(events.c.observation))
            .where(events.c.fingerprint.in_(chunk))
            .group_by(events.c.fingerprint)
        )
        for fp, observation in result:
            known[bytes(fp)] = int(observation)
    return known


def assign_observations(
    rows: Sequence[dict[str, Any]], known: dict[bytes, int]
) -> tuple[list[dict[str, Any]], int, int]:
    """Decide which rows to insert and their observation numbers (pure, for tests)."""
    seen = dict(known)
    keep: list[dict[str, Any]] = []
    skipped = duplicates = 0
    for row in rows:
        fp = row["fingerprint"]
        previous = seen.get(fp, 0)
        if previous and row["redelivered"]:
            skipped += 1
            continue
        if previous:
            duplicates += 1
        seen[fp] = previous + 1
        keep.append({**row, "observation": previous + 1})
    return keep, skipped, duplicates


COLUMNS = tuple(c.name for c in events.columns if c.name != "id")
_PG_KNOWN = (
    "SELECT fingerprint, max(observation) FROM events "
    "WHERE fingerprint = ANY($1::bytea[]) GROUP BY fingerprint"
)
_PG_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
)


async def store_batch(engine: AsyncEngine, rows: Sequence[dict[str, Any]]) -> BatchResult:
    """Store a batch in one transaction; raises on database errors (the caller retries)."""
    if not rows:
        return BatchResult(0, 0, 0)
    fingerprints = list({row["fingerprint"] for row in rows})
    if engine.dialect.driver == "asyncpg":
        return await _store_asyncpg(engine, rows, fingerprints)
    async with engine.begin() as conn:
        known = await _known_observations(conn, fingerprints)
        keep, skipped, duplicates = assign_observations(rows, known)
        if keep:
            await conn.execute(insert(events), keep)
    return BatchResult(len(keep), skipped, duplicates)


async def _store_asyncpg(
    engine: AsyncEngine, rows: Sequence[dict[str, Any]], fingerprints: list[bytes]
) -> BatchResult:
    """The same through asyncpg itself, in its own transaction: it encodes the rows in C, where
    SQLAlchemy's per-row parameter processing would run in Python on the recorder's loop."""
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        async with driver.transaction():
            found = await driver.fetch(_PG_KNOWN, fingerprints)
            known = {bytes(fp): int(observation) for fp, observation in found}
            keep, skipped, duplicates = assign_observations(rows, known)
            if keep:
                params = [tuple(row.get(name) for name in COLUMNS) for row in keep]
                await driver.executemany(_PG_INSERT, params)
    return BatchResult(len(keep), skipped, duplicates)
