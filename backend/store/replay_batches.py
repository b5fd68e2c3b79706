"""Bulk replays as the store keeps them (backend/replay_bulk.py moves them).

A batch is one operator action over many stored messages: its row in `replay_batches` (who,
why, the selection in words, the target if one was named, counts, state), and its messages in
`replay_batch_items`, numbered in the order they are replayed — written once, while the
selection is read, so the batch is bounded to what matched when it started and the worker
holds one chunk at a time, whatever the size. Each chunk's ledger rows carry the batch id; a
worker that resumes after a crash skips the messages that already have one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from eventscope.backend.envelope import db_text
from eventscope.backend.store.engine import as_dicts
from eventscope.backend.store.models import replay_batch_items, replay_batches, replays

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

COLLECTING, RUNNING, CANCELLING = "collecting", "running", "cancelling"
FINISHED, CANCELLED, FAILED = "finished", "cancelled", "failed"
ACTIVE = (COLLECTING, RUNNING, CANCELLING)
LEASE = dt.timedelta(seconds=60)  # a batch whose worker was silent this long may be taken


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ReplayBatches:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def create(self, batch: dict[str, Any]) -> None:
        row = {
            **batch,
            "actor": db_text(batch["actor"], 200) or "?",
            "reason": db_text(batch.get("reason"), 2000),
            "selection": db_text(batch.get("selection"), 2000),
            "state": COLLECTING,
            "total": 0,
            "done": 0,
            "delivered": 0,
            "failed": 0,
            "skipped": 0,
            "created_at": _now(),
        }
        async with self.store.engine.begin() as conn:
            await conn.execute(insert(replay_batches), [row])

    async def add_items(self, batch_id: str, start: int, event_ids: Sequence[int]) -> None:
        """Append messages numbered from `start` (the batch's total so far) and count them."""
        if not event_ids:
            return
        async with self.store.engine.begin() as conn:
            await conn.execute(
                insert(replay_batch_items),
                [
                    {"batch_id": batch_id, "seq": start + n, "event_id": event_id}
                    for n, event_id in enumerate(event_ids)
                ],
            )
            await conn.execute(
                update(replay_batches)
                .where(replay_batches.c.batch_id == batch_id)
                .values(total=start + len(event_ids))
            )

    async def lease(self, batch_id: str, owner: str) -> bool:
        """Take or renew the batch for `owner`: free, already `owner`'s, or its holder silent
        for LEASE (it stopped). Two processes never carry one batch at once."""
        now = _now()
        async with self.store.engine.begin() as conn:
            taken = await conn.execute(
                update(replay_batches)
                .where(
                    replay_batches.c.batch_id == batch_id,
                    or_(
                        replay_batches.c.owner.is_(None),
                        replay_batches.c.owner == owner,
                        replay_batches.c.leased_at < now - LEASE,
                    ),
                )
                .values(owner=owner, leased_at=now)
            )
            return bool(taken.rowcount)

    async def clear_items(self, batch_id: str) -> None:
        async with self.store.engine.begin() as conn:
            await conn.execute(
                delete(replay_batch_items).where(replay_batch_items.c.batch_id == batch_id)
            )
            await conn.execute(
                update(replay_batches).where(replay_batches.c.batch_id == batch_id).values(total=0)
            )

    async def items(self, batch_id: str, from_seq: int, limit: int) -> list[int]:
        query = (
            select(replay_batch_items.c.event_id)
            .where(replay_batch_items.c.batch_id == batch_id, replay_batch_items.c.seq >= from_seq)
            .order_by(replay_batch_items.c.seq)
            .limit(limit)
        )
        async with self.store.engine.connect() as conn:
            return [int(r[0]) for r in await conn.execute(query)]

    async def already_replayed(self, batch_id: str, event_ids: Sequence[int]) -> set[int]:
        """Which of these messages this batch has a ledger row for (a resumed batch skips
        them: a crash after their publish must not publish them twice)."""
        query = select(replays.c.event_id).where(
            replays.c.batch_id == batch_id, replays.c.event_id.in_(list(event_ids))
        )
        async with self.store.engine.connect() as conn:
            return {int(r[0]) for r in await conn.execute(query)}

    async def set_state(self, batch_id: str, state: str, *, only_from: Sequence[str] = ()) -> bool:
        """Move the batch to `state` (from one of `only_from`, when given); True if it moved."""
        query = update(replay_batches).where(replay_batches.c.batch_id == batch_id)
        if only_from:
            query = query.where(replay_batches.c.state.in_(list(only_from)))
        values: dict[str, Any] = {"state": state}
        if state in (FINISHED, CANCELLED, FAILED):
            values["finished_at"] = _now()
        async with self.store.engine.begin() as conn:
            return bool((await conn.execute(query.values(**values))).rowcount)

    def progress(
        self, batch_id: str, done: int, delivered: int, failed: int, skipped: int
    ) -> Callable[[AsyncConnection], Awaitable[None]]:
        """The counts' move, run in the transaction that records the chunk's outcomes."""

        async def move(conn: AsyncConnection) -> None:
            await conn.execute(
                update(replay_batches)
                .where(replay_batches.c.batch_id == batch_id)
                .values(
                    done=replay_batches.c.done + done,
                    delivered=replay_batches.c.delivered + delivered,
                    failed=replay_batches.c.failed + failed,
                    skipped=replay_batches.c.skipped + skipped,
                )
            )

        return move

    async def get(self, batch_id: str) -> dict[str, Any] | None:
        async with self.store.engine.connect() as conn:
            rows = as_dicts(
                await conn.execute(
                    select(replay_batches).where(replay_batches.c.batch_id == batch_id)
                )
            )
        return rows[0] if rows else None

    async def active(self) -> list[dict[str, Any]]:
        """Batches a worker should carry on (oldest first)."""
        query = (
            select(replay_batches)
            .where(replay_batches.c.state.in_(ACTIVE))
            .order_by(replay_batches.c.id)
        )
        async with self.store.engine.connect() as conn:
            return as_dicts(await conn.execute(query))

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        query = select(replay_batches).order_by(replay_batches.c.id.desc()).limit(limit)
        async with self.store.engine.connect() as conn:
            return as_dicts(await conn.execute(query))

    async def count_items(self, batch_id: str) -> int:
        query = (
            select(func.count())
            .select_from(replay_batch_items)
            .where(replay_batch_items.c.batch_id == batch_id)
        )
        async with self.store.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
