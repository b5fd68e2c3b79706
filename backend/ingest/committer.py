"""Commit a batch whatever it holds: retry what time fixes, isolate what it never will.

Two kinds of failure look alike from the outside. A database that is down, full or busy fails
every batch until it recovers: the batch is kept and retried with backoff, never split, never
reduced. A database that answers but refuses this batch (a row it cannot index, a value it
cannot store) fails it forever: retrying would stop every event behind it. Then the batch is
split in halves until the refused row stands alone; the rest commits, and that row is stored in
a reduced form (delivery fields, raw body and raw property bytes, `problem` saying why) so
nothing is lost. Which kind it is: the error's class first, then whether the database still
answers a trivial query.

Each part of a batch is written under its own key (`pending_acks.batch`, see
backend/store/writer.py), kept while that part is retried: a commit that succeeded but whose
reply was lost (the connection dropped during COMMIT) is found on the retry, not stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eventscope.backend.store.writer import BatchResult
from eventscope.backend.waiting import next_backoff, sleep_unless_stopped

log = logging.getLogger(__name__)

# Postgres SQLSTATE classes a retry can cure: connection exception, insufficient resources
# (disk full), operator intervention (shutdown), system error, transaction rollback (deadlock).
_TRANSIENT_SQLSTATE_CLASSES = {"08", "53", "57", "58", "40"}

# store(rows, batch, retry): write `rows` as the part keyed `batch`; `retry` when an earlier
# attempt under the same key may have committed.
Store = Callable[[Sequence[dict[str, Any]], int, bool], Awaitable[BatchResult]]
Ping = Callable[[], Awaitable[bool]]


def new_batch_key() -> int:
    """A random key for one part of a batch (positive, fits a signed 64-bit column)."""
    return secrets.randbits(62) + 1


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """True when the failure says the database cannot work right now (not: refuses this)."""
    for cause in _causes(exc):
        if isinstance(cause, OSError | ConnectionError | TimeoutError | sqlite3.OperationalError):
            return True
        if getattr(cause, "connection_invalidated", False):
            return True
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(state, str) and state[:2] in _TRANSIENT_SQLSTATE_CLASSES:
            return True
        if type(cause).__module__.startswith("asyncpg") and "Connection" in type(cause).__name__:
            return True
    return False


def _ascii(value: Any) -> str:
    return str(value or "").encode("ascii", "backslashreplace").decode("ascii")[:1024]


_CLEARED = (
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
    "dead_letter",
    "originals",
    "event_type_key",
    "correlation_key",
    "aggregate_key",
    "message_id_key",
)


def reduced_forms(row: dict[str, Any], error: BaseException) -> list[dict[str, Any]]:
    """Safer and safer versions of a refused row: first without anything extracted (raw body
    and property bytes kept), then without the body too."""
    reason = f"{type(error).__name__}: {error}".replace("\x00", "\\x00")[:300]
    reduced = {
        **row,
        **dict.fromkeys(_CLEARED),
        "exchange": _ascii(row.get("exchange")),
        "routing_key": _ascii(row.get("routing_key")),
        "body_kind": "binary",
        "properties": "{}",
        "headers": "{}",
        "problem": f"stored reduced: the database refused the full row ({reason}); "
        "the body and the raw property bytes are kept",
    }
    bare = {
        **reduced,
        "body": b"",
        "body_truncated": True,
        "problem": f"stored reduced: the database refused the row even reduced ({reason}); "
        "only the delivery fields and raw property bytes are kept",
    }
    return [reduced, bare]


@dataclass
class CommitFailure:
    """The last failure, for the status bar."""

    message: str
    transient: bool


class Committer:
    """`await committer.commit(rows, stop)` stores every row (or returns None once `stop` is
    set, leaving the uncommitted rest to be redelivered)."""

    def __init__(
        self,
        store: Store,
        ping: Ping,
        on_error: Callable[[CommitFailure | None], None] = lambda failure: None,
    ) -> None:
        self.store = store
        self.ping = ping
        self.on_error = on_error
        self.reduced_rows = 0

    async def commit(
        self, rows: Sequence[dict[str, Any]], stop: asyncio.Event, store: Store | None = None
    ) -> BatchResult | None:
        """`store` overrides the committer's own for this batch (the recorder passes one that
        knows the batch's session)."""
        write = store or self.store
        pending: deque[tuple[Sequence[dict[str, Any]], int]] = deque([(rows, new_batch_key())])
        tried: set[int] = set()
        stored = skipped = duplicates = 0
        batches: list[int] = []
        backoff = 0.2
        while pending:
            part, key = pending[0]
            retry = key in tried
            tried.add(key)
            try:
                result = await write(part, key, retry)
            except Exception as exc:
                if stop.is_set():
                    return None
                transient = is_transient(exc) or not await self.ping()
                self.on_error(CommitFailure(f"{type(exc).__name__}: {exc}"[:300], transient))
                if transient:
                    log.warning("commit failed, retrying in %.1fs: %s", backoff, exc)
                elif len(part) > 1:
                    middle = len(part) // 2
                    pending.popleft()
                    pending.extendleft(
                        ((part[middle:], new_batch_key()), (part[:middle], new_batch_key()))
                    )
                    continue
                else:
                    reduced = await self._store_reduced(write, part[0], exc, key)
                    if reduced is not None:
                        pending.popleft()
                        stored += reduced.stored
                        skipped += reduced.skipped_redeliveries
                        duplicates += reduced.duplicates
                        batches.extend(reduced.batches)
                        continue
                if await sleep_unless_stopped(stop, backoff):
                    return None
                backoff = next_backoff(backoff)
                continue
            pending.popleft()
            stored += result.stored
            skipped += result.skipped_redeliveries
            duplicates += result.duplicates
            batches.extend(result.batches)
            backoff = 0.2
        self.on_error(None)
        return BatchResult(stored, skipped, duplicates, tuple(batches))

    async def _store_reduced(
        self, write: Store, row: dict[str, Any], error: Exception, key: int
    ) -> BatchResult | None:
        for form in reduced_forms(row, error):
            try:
                # The same key, as a retry: should an earlier form have committed unseen, it
                # is found instead of stored again.
                result = await write([form], key, True)
            except Exception as exc:
                log.warning("reduced row refused too: %s", exc)
                continue
            self.reduced_rows += 1
            log.error(
                "the database refused a row (%s); stored it reduced: %s",
                error,
                form["problem"],
            )
            return result
        return None
