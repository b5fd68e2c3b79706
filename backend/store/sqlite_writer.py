"""SQLite batches written by one dedicated thread with its own sqlite3 connection.

Why not the async engine: with aiosqlite every row's parameters are bound on a worker thread
that must win the GIL back from the busy event loop, once per row; the recorder then spends
most of its time in that hand-over. Here a whole batch (look up known fingerprints, insert,
commit) is one call into one thread, rows go in as multi-row INSERTs (one GIL hand-over per
chunk, not per row), and the loop only awaits the result. Same rules as the Postgres writer
(backend/store/writer.py), including the `pending_acks` listing written in the batch's own
transaction; the values stored are the ones SQLAlchemy would store (UTC text timestamps, 0/1
booleans). The batch's `commit_seq` is taken inside the write transaction, which SQLite makes
exclusive: sequence order is commit order (and no other writer can absorb the same listing).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Boolean, DateTime
from sqlalchemy.engine import make_url

from eventscope.backend.store.engine import SQLITE_PRAGMAS
from eventscope.backend.store.models import events
from eventscope.backend.store.writer import (
    COLUMNS,
    BatchResult,
    Ledger,
    assign_observations,
    holders_listing,
    listing_of,
    pending_counts,
    routing_key_counts,
    take_absorbed,
)

T = TypeVar("T")
ROWS_PER_STATEMENT = 100  # ~32 columns x 100 rows stays far below SQLite's variable limit
_ONE_ROW = "(" + ",".join("?" * (len(COLUMNS) + 1)) + ")"
_INSERT = f"INSERT INTO events ({','.join(COLUMNS)},commit_seq) VALUES "  # noqa: S608 - fixed names
_ROUTING_KEYS = (
    "INSERT INTO routing_keys (routing_key, events, first_seen, last_seen) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (routing_key) DO UPDATE SET events = events + excluded.events, "
    "first_seen = min(first_seen, excluded.first_seen), "
    "last_seen = max(last_seen, excluded.last_seen)"
)
_NEXT_SEQ = "SELECT coalesce(max(commit_seq), 0) + 1 FROM events"
_LOOKUP_CHUNK = 500
_RETRIED = "SELECT stored, skipped, duplicates FROM pending_acks WHERE batch = ?"
_RELIST = "UPDATE pending_acks SET fingerprints = ? WHERE batch = ?"
_LIST = (
    "INSERT INTO pending_acks (batch, holder, created_at, fingerprints, stored, skipped, "
    "duplicates) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def sql_value(value: Any) -> Any:
    """A value as SQLAlchemy writes (and reads) it in SQLite: datetimes as naive UTC text,
    booleans as integers; the writer thread, reindex and the catalogs write through sqlite3."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        # SQLAlchemy's own format; strftime would write year 1 as "1", which it cannot read.
        return (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
        )
    if isinstance(value, bool):
        return int(value)
    return value


# Only these columns hold datetimes or booleans; every other value goes to sqlite3 as it is.
_CONVERTED = tuple(
    i for i, name in enumerate(COLUMNS) if isinstance(events.c[name].type, DateTime | Boolean)
)


def _row_values(row: dict[str, Any], seq: int) -> list[Any]:
    values = [row.get(name) for name in COLUMNS]
    for i in _CONVERTED:
        values[i] = sql_value(values[i])
    values.append(seq)
    return values


def sqlite_path(database_url: str) -> str | None:
    """The file behind a SQLite URL, or None for anything else (or in-memory)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return url.database


class SqliteBatchWriter:
    """`await writer.store(rows)`; `close()` when done. Not for use from several processes'
    recorders at once (SQLite has one writer; use Postgres for that)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eventscope-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def store(
        self, rows: Sequence[dict[str, Any]], ledger: Ledger | None = None
    ) -> BatchResult:
        if not rows:
            return BatchResult(0, 0, 0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._store, rows, ledger)

    async def pending_holders(self, fingerprints: Collection[bytes], exclude: int) -> set[int]:
        """Sessions other than `exclude` whose pending listings contain any of `fingerprints`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._pending_holders, fingerprints, exclude
        )

    async def clear_pending(
        self, batches: Sequence[int], expire_before: dt.datetime | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._clear_pending, batches, expire_before)

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(conn)` in the writer thread, in one write transaction: other writers of
        the store (the search indexer) queue behind batches instead of fighting for the lock."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, work)

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._begin()
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return result

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            for pragma in SQLITE_PRAGMAS:
                conn.execute(pragma)
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _begin(self) -> sqlite3.Connection:
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._close()  # a broken connection is replaced on the next try
            raise
        return conn

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            self._close()

    def _store(self, rows: Sequence[dict[str, Any]], ledger: Ledger | None) -> BatchResult:
        conn = self._begin()
        try:
            result = self._write(conn, rows, ledger)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return result

    def _write(
        self, conn: sqlite3.Connection, rows: Sequence[dict[str, Any]], ledger: Ledger | None
    ) -> BatchResult:
        if ledger is not None:
            self._clear(conn, ledger.clear, None)
            if ledger.retry:
                found = conn.execute(_RETRIED, (ledger.batch,)).fetchone()
                if found is not None:  # the earlier attempt committed after all
                    stored, skipped, duplicates = found
                    return BatchResult(stored, skipped, duplicates, (ledger.batch,))
        listings: list[tuple[int, bytes]] = []
        if ledger is not None and ledger.released and any(r["redelivered"] for r in rows):
            listings = self._released(conn, ledger.released)
        known = self._known(conn, list({row["fingerprint"] for row in rows}))
        decided = assign_observations(rows, known, pending_counts(listings))
        seq = conn.execute(_NEXT_SEQ).fetchone()[0]
        keep = decided.keep
        for start in range(0, len(keep), ROWS_PER_STATEMENT):
            chunk = keep[start : start + ROWS_PER_STATEMENT]
            params = [value for row in chunk for value in _row_values(row, seq)]
            conn.execute(_INSERT + ",".join([_ONE_ROW] * len(chunk)), params)
        if keep:
            conn.executemany(
                _ROUTING_KEYS,
                [
                    (key, n, sql_value(first), sql_value(last))
                    for key, (n, first, last) in routing_key_counts(keep).items()
                ],
            )
        if ledger is None:
            return BatchResult(len(keep), decided.skipped, decided.duplicates)
        for batch, blob in take_absorbed(listings, decided.absorbed).items():
            if blob:
                conn.execute(
                    "UPDATE pending_acks SET fingerprints = ? WHERE batch = ?", (blob, batch)
                )
            else:
                conn.execute("DELETE FROM pending_acks WHERE batch = ?", (batch,))
        self._clear(conn, (), ledger.expire_before)
        conn.execute(
            _LIST,
            (
                ledger.batch,
                ledger.holder,
                sql_value(dt.datetime.now(dt.UTC)),
                listing_of(rows),
                len(keep),
                decided.skipped,
                decided.duplicates,
            ),
        )
        return BatchResult(len(keep), decided.skipped, decided.duplicates, (ledger.batch,))

    @staticmethod
    def _released(conn: sqlite3.Connection, holders: frozenset[int]) -> list[tuple[int, bytes]]:
        marks = ",".join("?" * len(holders))
        query = (
            "SELECT batch, fingerprints FROM pending_acks "  # noqa: S608 - only '?' marks
            f"WHERE holder IN ({marks}) ORDER BY batch"
        )
        return [(int(b), bytes(f)) for b, f in conn.execute(query, list(holders))]

    @staticmethod
    def _clear(
        conn: sqlite3.Connection, batches: Sequence[int], expire_before: dt.datetime | None
    ) -> None:
        for start in range(0, len(batches), _LOOKUP_CHUNK):
            chunk = list(batches[start : start + _LOOKUP_CHUNK])
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM pending_acks WHERE batch IN ({marks})", chunk)  # noqa: S608
        if expire_before is not None:
            conn.execute(
                "DELETE FROM pending_acks WHERE created_at < ?", (sql_value(expire_before),)
            )

    def _pending_holders(self, fingerprints: Collection[bytes], exclude: int) -> set[int]:
        conn = self._connection()
        found = conn.execute(
            "SELECT holder, fingerprints FROM pending_acks WHERE holder <> ?", (exclude,)
        ).fetchall()
        return holders_listing(((int(h), bytes(b)) for h, b in found), fingerprints)

    def _clear_pending(self, batches: Sequence[int], expire_before: dt.datetime | None) -> None:
        conn = self._begin()
        try:
            self._clear(conn, batches, expire_before)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _known(conn: sqlite3.Connection, fingerprints: list[bytes]) -> dict[bytes, int]:
        known: dict[bytes, int] = {}
        for start in range(0, len(fingerprints), _LOOKUP_CHUNK):
            chunk = fingerprints[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT fingerprint, max(observation) FROM events "  # noqa: S608 - only '?' marks
                f"WHERE fingerprint IN ({marks}) GROUP BY fingerprint"
            )
            for fp, observation in conn.execute(query, chunk):
                known[bytes(fp)] = int(observation)
        return known
