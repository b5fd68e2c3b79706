"""Reads of recorded events: pages in commit order, one event, its relatives, the feed's rows.

Every list is keyset-paged on the commit-order cursor (paging.py) and has a limit.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text

from eventscope.backend.store.models import SUMMARY_COLUMNS, events
from eventscope.backend.store.paging import (
    MAX_ROW_ID,
    NEWEST_FIRST,
    OLDEST_FIRST,
    Cursor,
    Page,
    after,
    before,
)

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

# On Postgres a row is handed to the feed only once every transaction that could still commit
# a smaller commit_seq has ended: below the oldest transaction id still running.
PG_HORIZON = text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


class EventQueries:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def page(
        self, limit: int, *, older_than: Cursor | None = None, newer_than: Cursor | None = None
    ) -> Page:
        """Summaries (no body), shown newest first: the newest `limit`, or those just older
        than `older_than`, or those just newer than `newer_than`."""
        query = select(*SUMMARY_COLUMNS).limit(limit)
        if newer_than is not None:
            rows = await self._all(query.where(after(newer_than)).order_by(*OLDEST_FIRST))
            return Page.of(rows, limit, newest_first=False, more_newer=False)
        if older_than is not None:
            query = query.where(before(older_than))
        rows = await self._all(query.order_by(*NEWEST_FIRST))
        return Page.of(rows, limit, newest_first=True, more_newer=older_than is not None)

    async def committed_after(
        self, cursor: Cursor, limit: int, *, until: Cursor | None = None
    ) -> list[dict[str, Any]]:
        """Summaries after `cursor` in commit order, oldest first: what the change feed hands
        out. On Postgres only rows no later commit can precede (see `PG_HORIZON`)."""
        query = select(*SUMMARY_COLUMNS).where(after(cursor))
        if until is not None:
            query = query.where(~after(until))
        if not self.store.is_sqlite:
            query = query.where(events.c.commit_seq < PG_HORIZON)
        return await self._all(query.order_by(*OLDEST_FIRST).limit(limit))

    async def held_back_after(self, cursor: Cursor) -> bool:
        """Postgres: rows after `cursor` are committed but not yet handed out, because a
        transaction older than them is still open (`PG_HORIZON`). Never on SQLite."""
        if self.store.is_sqlite:
            return False
        query = select(events.c.id).where(after(cursor), events.c.commit_seq >= PG_HORIZON)
        async with self.store.engine.connect() as conn:
            return (await conn.execute(query.limit(1))).first() is not None

    async def position(self) -> tuple[Cursor, int]:
        """Where the feed starts: the newest handed-out-able cursor and the number of rows."""
        async with self.store.engine.connect() as conn:
            newest = select(events.c.commit_seq, events.c.id).order_by(*NEWEST_FIRST).limit(1)
            if not self.store.is_sqlite:
                newest = newest.where(events.c.commit_seq < PG_HORIZON)
            found = (await conn.execute(newest)).first()
            count = await conn.scalar(select(func.count()).select_from(events))
        cursor = Cursor(int(found[0]), int(found[1])) if found else Cursor(0, 0)
        return cursor, int(count or 0)

    async def count(self) -> int:
        async with self.store.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(events)) or 0)

    async def get(self, event_id: int) -> dict[str, Any] | None:
        """One event with everything stored, or None (also for ids no row can have)."""
        if not 1 <= event_id <= MAX_ROW_ID:
            return None
        rows = await self._all(select(events).where(events.c.id == event_id))
        return rows[0] if rows else None

    async def contents(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Summaries with headers and body for the given rows (what content filters read)."""
        if not ids:
            return {}
        query = select(*SUMMARY_COLUMNS, events.c.headers, events.c.body).where(
            events.c.id.in_(ids)
        )
        return {row["id"]: row for row in await self._all(query)}

    async def cursor_of(self, event_id: int) -> Cursor | None:
        """The cursor of row `event_id` (a bare row id given where a cursor is expected)."""
        if not 1 <= event_id <= MAX_ROW_ID:
            return None
        rows = await self._all(
            select(events.c.commit_seq, events.c.id).where(events.c.id == event_id)
        )
        return Cursor.of(rows[0]) if rows else None

    async def cursor_at(self, when: dt.datetime) -> Cursor | None:
        """Where history stands at `when`: the cursor of the newest event received at or before
        it (ties broken by commit order), or None when nothing is that old. Two lookups on the
        `received_at` index: the latest time, then the rows of that time."""
        async with self.store.engine.connect() as conn:
            latest = await conn.scalar(
                select(func.max(events.c.received_at)).where(events.c.received_at <= when)
            )
            if latest is None:
                return None
            found = (
                await conn.execute(
                    select(events.c.commit_seq, events.c.id)
                    .where(events.c.received_at == latest)
                    .order_by(*NEWEST_FIRST)
                    .limit(1)
                )
            ).first()
        return Cursor(int(found[0]), int(found[1])) if found else None

    async def related(
        self, row: dict[str, Any], limit: int = 20
    ) -> dict[str, list[dict[str, Any]]]:
        """Other observations of the same publish, copies of the message elsewhere (same
        message id and body), other events reusing its message id (id conflicts) — except
        that a seed `dlq.<key>` wrapper keeps its original's message id: between such a
        wrapper and an event that is no dead letter, the other is its `original` (seen from
        the wrapper) or one of its `wrappers` (seen from the event), not a conflict."""
        async with self.store.engine.connect() as conn:
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
                        events.c.dead_letter,
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
        mine = row.get("dead_letter")
        original = [c for c in conflicts if mine == "dlq-key" and c["dead_letter"] is None]
        wrappers = [c for c in conflicts if mine is None and c["dead_letter"] == "dlq-key"]
        conflicts = [c for c in conflicts if c not in original and c not in wrappers]
        return {
            "duplicates": duplicates,
            "copies": copies,
            "id_conflicts": conflicts,
            "original": original,
            "wrappers": wrappers,
        }

    async def neighbours(self, row: dict[str, Any]) -> tuple[int | None, int | None]:
        """The ids just older and just newer than `row` in commit order (prev/next links)."""
        cursor = Cursor.of(row)
        older = await self._all(
            select(events.c.id).where(before(cursor)).order_by(*NEWEST_FIRST).limit(1)
        )
        newer = await self._all(
            select(events.c.id).where(after(cursor)).order_by(*OLDEST_FIRST).limit(1)
        )
        return (older[0]["id"] if older else None, newer[0]["id"] if newer else None)

    async def _all(self, query: Any) -> list[dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]
