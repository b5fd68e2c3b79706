"""Idempotent batch insert: one transaction per batch, redeliveries skipped, duplicates counted.

Rules (the glossary in docs/architecture.md): a delivery flagged `redelivered` whose fingerprint
is already stored is the same observation (a tap redelivery) and is skipped. Anything else is a
new observation: a fingerprint seen before gets the next `observation` number and is shown as a
duplicate publish. Every row of a batch gets the batch's `commit_seq` (store/paging.py).
`EventStore.write` picks the writer: `SqliteBatchWriter` (sqlite_writer.py) or
`PostgresBatchWriter` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend.store.models import events


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: int
    skipped_redeliveries: int
    duplicates: int


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


# Every column a batch writes, in one order (commit_seq is set by the writer, id by the database).
COLUMNS = tuple(c.name for c in events.columns if c.name not in ("id", "commit_seq"))
KNOWN_FINGERPRINTS = (
    "SELECT fingerprint, max(observation) FROM events "
    "WHERE fingerprint = ANY($1::bytea[]) GROUP BY fingerprint"
)
_PG_TRANSACTION_ID = "SELECT pg_current_xact_id()::text::bigint"
_PG_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}, commit_seq) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 2))})"
)


class PostgresBatchWriter:
    """Batches through asyncpg itself, in its own transaction: it encodes the rows in C, where
    SQLAlchemy's per-row parameter processing would run in Python on the recorder's loop."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def store(self, rows: Sequence[dict[str, Any]]) -> BatchResult:
        if not rows:
            return BatchResult(0, 0, 0)
        fingerprints = list({row["fingerprint"] for row in rows})
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            async with driver.transaction():
                found = await driver.fetch(KNOWN_FINGERPRINTS, fingerprints)
                known = {bytes(fp): int(observation) for fp, observation in found}
                keep, skipped, duplicates = assign_observations(rows, known)
                if keep:
                    seq = await driver.fetchval(_PG_TRANSACTION_ID)  # this batch's commit_seq
                    params = [(*(row.get(name) for name in COLUMNS), seq) for row in keep]
                    await driver.executemany(_PG_INSERT, params)
        return BatchResult(len(keep), skipped, duplicates)

    async def close(self) -> None:
        """Nothing of its own to release (the engine belongs to the store)."""
