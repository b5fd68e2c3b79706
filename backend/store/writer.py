"""Idempotent batch insert: one transaction per batch, tap redeliveries skipped, duplicates counted.

Rules (the glossary in docs/architecture.md): every delivery is a new observation — a
fingerprint seen before gets the next `observation` number and is shown as a duplicate publish —
except a tap redelivery. A delivery flagged `redelivered` is a tap redelivery when a batch of a
recorder session that is gone (`Ledger.released`) still lists its fingerprint in `pending_acks`:
that batch was committed and its ack may never have reached the broker. Each listed fingerprint
absorbs one redelivery and passes to the absorbing batch (which holds that delivery unacked now).
A redelivered delivery whose fingerprint is stored but listed nowhere is a second publish of the
same bytes that a recorder took and lost before committing it: a new observation.

Every batch written with a `Ledger` adds its own `pending_acks` row (the fingerprints of all
the deliveries it took) in the same transaction; the recorder clears it once the broker
confirmed the ack (`Ledger.clear`, in a later transaction). A retried write (`Ledger.retry`)
first looks for its own row: a commit whose reply was lost is not stored twice. Every row of a
batch gets the batch's `commit_seq` (store/paging.py). `EventStore.write` picks the writer:
`SqliteBatchWriter` (sqlite_writer.py) or `PostgresBatchWriter` below.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend.store.models import events

FINGERPRINT_SIZE = 16
_UNIQUE_RACE_ATTEMPTS = 8  # two recorders numbering the same fingerprint at once


@dataclass(frozen=True, slots=True)
class BatchResult:
    stored: int
    skipped_redeliveries: int
    duplicates: int
    batches: tuple[int, ...] = ()  # the `pending_acks` rows written (one per committed part)


@dataclass(frozen=True, slots=True)
class Ledger:
    """How one write records what it took, and which earlier batches may absorb redeliveries.

    `holder` is the recorder session (one channel) that holds this batch's deliveries unacked;
    `batch` this write's `pending_acks` key, kept across retries of the same write; `released`
    the sessions known to be gone, whose listed fingerprints may absorb redeliveries; `clear`
    batches whose ack the broker confirmed; `expire_before` drops listings older than that."""

    holder: int
    batch: int
    released: frozenset[int] = frozenset()
    clear: tuple[int, ...] = ()
    retry: bool = False
    expire_before: dt.datetime | None = None


class Observations(NamedTuple):
    keep: list[dict[str, Any]]  # rows to insert, with their observation numbers
    skipped: int  # tap redeliveries absorbed by a pending listing
    duplicates: int  # rows whose fingerprint was seen before (observation > 1)
    absorbed: list[bytes]  # the fingerprints taken from pending listings, one per skipped row


def routing_key_counts(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[int, Any, Any]]:
    """Per routing key of a batch: (count, first received, last received)."""
    out: dict[str, tuple[int, Any, Any]] = {}
    for row in rows:
        key, when = row["routing_key"], row["received_at"]
        n, first, last = out.get(key, (0, when, when))
        out[key] = (n + 1, min(first, when), max(last, when))
    return out


def assign_observations(
    rows: Sequence[dict[str, Any]],
    known: Mapping[bytes, int],
    pending: Mapping[bytes, int] | None = None,
) -> Observations:
    """Decide which rows to insert and their observation numbers (pure, for tests).

    `known`: the highest stored observation per fingerprint; `pending`: how many redeliveries
    each fingerprint may still absorb (listings of gone sessions)."""
    seen = dict(known)
    available = dict(pending) if pending else {}
    keep: list[dict[str, Any]] = []
    absorbed: list[bytes] = []
    duplicates = 0
    for row in rows:
        fp = row["fingerprint"]
        if row["redelivered"] and available.get(fp, 0) > 0:
            available[fp] -= 1
            absorbed.append(fp)
            continue
        previous = seen.get(fp, 0)
        if previous:
            duplicates += 1
        seen[fp] = previous + 1
        keep.append({**row, "observation": previous + 1})
    return Observations(keep, len(absorbed), duplicates, absorbed)


def split_fingerprints(blob: bytes) -> list[bytes]:
    """A `pending_acks.fingerprints` value as its fingerprints."""
    return [blob[i : i + FINGERPRINT_SIZE] for i in range(0, len(blob), FINGERPRINT_SIZE)]


def pending_counts(listings: Iterable[tuple[int, bytes]]) -> Counter[bytes]:
    """How many redeliveries each fingerprint may absorb, over (batch, fingerprints) listings."""
    counts: Counter[bytes] = Counter()
    for _, blob in listings:
        counts.update(split_fingerprints(blob))
    return counts


def take_absorbed(
    listings: Sequence[tuple[int, bytes]], absorbed: Iterable[bytes]
) -> dict[int, bytes]:
    """Remove one occurrence of each absorbed fingerprint from the listings, in their order;
    return the changed listings (batch → what remains, b"" when nothing does)."""
    remaining = {batch: split_fingerprints(blob) for batch, blob in listings}
    changed: set[int] = set()
    for fp in absorbed:
        for batch, _ in listings:
            if fp in remaining[batch]:
                remaining[batch].remove(fp)
                changed.add(batch)
                break
    return {batch: b"".join(remaining[batch]) for batch in changed}


def holders_listing(
    listings: Iterable[tuple[int, bytes]], fingerprints: Collection[bytes]
) -> set[int]:
    """The holders (first item) whose listing contains any of `fingerprints`."""
    wanted = set(fingerprints)
    return {holder for holder, blob in listings if not wanted.isdisjoint(split_fingerprints(blob))}


def listing_of(rows: Sequence[dict[str, Any]]) -> bytes:
    """This batch's own listing: the fingerprint of every delivery it took."""
    return b"".join(row["fingerprint"] for row in rows)


def _is_fingerprint_race(exc: BaseException) -> bool:
    return getattr(exc, "constraint_name", None) == "ux_events_fingerprint"


# Every column a batch writes, in one order (commit_seq is set by the writer, id by the database).
COLUMNS = tuple(c.name for c in events.columns if c.name not in ("id", "commit_seq"))
KNOWN_FINGERPRINTS = (
    "SELECT fingerprint, max(observation) FROM events "
    "WHERE fingerprint = ANY($1::bytea[]) GROUP BY fingerprint"
)
_PG_TRANSACTION_ID = "SELECT pg_current_xact_id()::text::bigint"
# The distinct routing keys (models.routing_keys), kept in the batch's own transaction; sorted
# keys, so two writers lock the rows in one order.
_PG_ROUTING_KEYS = (
    "INSERT INTO routing_keys (routing_key, events, first_seen, last_seen) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (routing_key) DO UPDATE SET "
    "events = routing_keys.events + EXCLUDED.events, "
    "first_seen = least(routing_keys.first_seen, EXCLUDED.first_seen), "
    "last_seen = greatest(routing_keys.last_seen, EXCLUDED.last_seen)"
)
_PG_INSERT = (
    f"INSERT INTO events ({', '.join(COLUMNS)}, commit_seq) "  # noqa: S608 - fixed column names
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 2))})"
)
_PG_CLEAR = "DELETE FROM pending_acks WHERE batch = ANY($1::bigint[])"
_PG_EXPIRE = "DELETE FROM pending_acks WHERE created_at < $1"
_PG_RETRIED = "SELECT stored, skipped, duplicates FROM pending_acks WHERE batch = $1"
_PG_RELEASED = (
    "SELECT batch, fingerprints FROM pending_acks WHERE holder = ANY($1::bigint[]) "
    "ORDER BY batch FOR UPDATE"
)
_PG_RELIST = "UPDATE pending_acks SET fingerprints = $2 WHERE batch = $1"
_PG_LIST = (
    "INSERT INTO pending_acks (batch, holder, created_at, fingerprints, stored, skipped, "
    "duplicates) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
_PG_LISTINGS = "SELECT holder, fingerprints FROM pending_acks WHERE holder <> $1"


class PostgresBatchWriter:
    """Batches through asyncpg itself, in its own transaction: it encodes the rows in C, where
    SQLAlchemy's per-row parameter processing would run in Python on the recorder's loop."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def store(
        self, rows: Sequence[dict[str, Any]], ledger: Ledger | None = None
    ) -> BatchResult:
        if not rows:
            return BatchResult(0, 0, 0)
        for attempt in range(_UNIQUE_RACE_ATTEMPTS):
            try:
                return await self._store(rows, ledger)
            except Exception as exc:
                # Another recorder committed the same fingerprint's next observation between
                # our lookup and our insert: the transaction rolled back, look again.
                if not _is_fingerprint_race(exc) or attempt == _UNIQUE_RACE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _store(self, rows: Sequence[dict[str, Any]], ledger: Ledger | None) -> BatchResult:
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            async with driver.transaction():
                if ledger is not None:
                    if ledger.clear:
                        await driver.execute(_PG_CLEAR, list(ledger.clear))
                    if ledger.retry:
                        found = await driver.fetchrow(_PG_RETRIED, ledger.batch)
                        if found is not None:  # the earlier attempt committed after all
                            stored, skipped, duplicates = found
                            return BatchResult(stored, skipped, duplicates, (ledger.batch,))
                listings: list[tuple[int, bytes]] = []
                if ledger is not None and ledger.released and any(r["redelivered"] for r in rows):
                    locked = await driver.fetch(_PG_RELEASED, list(ledger.released))
                    listings = [(int(batch), bytes(blob)) for batch, blob in locked]
                fingerprints = list({row["fingerprint"] for row in rows})
                found_known = await driver.fetch(KNOWN_FINGERPRINTS, fingerprints)
                known = {bytes(fp): int(observation) for fp, observation in found_known}
                decided = assign_observations(rows, known, pending_counts(listings))
                if decided.keep:
                    seq = await driver.fetchval(_PG_TRANSACTION_ID)  # this batch's commit_seq
                    params = [(*(row.get(name) for name in COLUMNS), seq) for row in decided.keep]
                    await driver.executemany(_PG_INSERT, params)
                    await driver.executemany(
                        _PG_ROUTING_KEYS,
                        [(k, *v) for k, v in sorted(routing_key_counts(decided.keep).items())],
                    )
                result = BatchResult(len(decided.keep), decided.skipped, decided.duplicates)
                if ledger is None:
                    return result
                for batch, blob in take_absorbed(listings, decided.absorbed).items():
                    if blob:
                        await driver.execute(_PG_RELIST, batch, blob)
                    else:
                        await driver.execute(_PG_CLEAR, [batch])
                if ledger.expire_before is not None:
                    await driver.execute(_PG_EXPIRE, ledger.expire_before)
                await driver.execute(
                    _PG_LIST,
                    ledger.batch,
                    ledger.holder,
                    dt.datetime.now(dt.UTC),
                    listing_of(rows),
                    result.stored,
                    result.skipped_redeliveries,
                    result.duplicates,
                )
                return BatchResult(
                    result.stored, result.skipped_redeliveries, result.duplicates, (ledger.batch,)
                )

    async def pending_holders(self, fingerprints: Collection[bytes], exclude: int) -> set[int]:
        """Sessions other than `exclude` whose pending listings contain any of `fingerprints`."""
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            found = await driver.fetch(_PG_LISTINGS, exclude)
        return holders_listing(((int(h), bytes(b)) for h, b in found), fingerprints)

    async def clear_pending(
        self, batches: Sequence[int], expire_before: dt.datetime | None = None
    ) -> None:
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            async with driver.transaction():
                if batches:
                    await driver.execute(_PG_CLEAR, list(batches))
                if expire_before is not None:
                    await driver.execute(_PG_EXPIRE, expire_before)

    async def close(self) -> None:
        """Nothing of its own to release (the engine belongs to the store)."""
