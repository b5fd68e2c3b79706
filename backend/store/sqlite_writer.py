"""SQLite batches written by one dedicated thread with its own sqlite3 connection.

Why not the async engine: with aiosqlite every row's parameters are bound on a worker thread
that must win the GIL back from the busy event loop, once per row; the recorder then spends
most of its time in that hand-over. Here a whole batch (look up known fingerprints, insert,
commit) is one call into one thread, rows go in as multi-row INSERTs (one GIL hand-over per
chunk, not per row), and the loop only awaits the result. Same rules as the Postgres writer
(backend/store/writer.py); the values stored are the ones SQLAlchemy would store (UTC text
timestamps, 0/1 booleans). The batch's `commit_seq` is taken inside the write transaction,
which SQLite makes exclusive: sequence order is commit order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Boolean, DateTime
from sqlalchemy.engine import make_url

from eventscope.backend.store.engine import SQLITE_PRAGMAS
from eventscope.backend.store.models import events
from eventscope.backend.store.writer import COLUMNS, BatchResult, assign_observations

ROWS_PER_STATEMENT = 100  # ~32 columns x 100 rows stays far below SQLite's variable limit
_ONE_ROW = "(" + ",".join("?" * (len(COLUMNS) + 1)) + ")"
_INSERT = f"INSERT INTO events ({','.join(COLUMNS)},commit_seq) VALUES "  # noqa: S608 - fixed names
_NEXT_SEQ = "SELECT coalesce(max(commit_seq), 0) + 1 FROM events"
_LOOKUP_CHUNK = 500


def _sql_value(value: Any) -> Any:
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
        values[i] = _sql_value(values[i])
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

    async def store(self, rows: Sequence[dict[str, Any]]) -> BatchResult:
        if not rows:
            return BatchResult(0, 0, 0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._store, rows)

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

    def _store(self, rows: Sequence[dict[str, Any]]) -> BatchResult:
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._close()  # a broken connection is replaced on the next try
            raise
        try:
            known = self._known(conn, list({row["fingerprint"] for row in rows}))
            keep, skipped, duplicates = assign_observations(rows, known)
            seq = conn.execute(_NEXT_SEQ).fetchone()[0]
            for start in range(0, len(keep), ROWS_PER_STATEMENT):
                chunk = keep[start : start + ROWS_PER_STATEMENT]
                params = [value for row in chunk for value in _row_values(row, seq)]
                conn.execute(_INSERT + ",".join([_ONE_ROW] * len(chunk)), params)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._close()
            raise
        return BatchResult(len(keep), skipped, duplicates)

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
