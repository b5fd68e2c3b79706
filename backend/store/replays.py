"""The replay ledger and the dead letters' states, as the store keeps them (backend/replay.py
moves them).

Every change is one transaction: a replay starts with its ledger row (`publishing`), its
in-flight row (the primary key refuses a second replay of the same message) and the dead
letter's state `replaying`; it ends with the ledger's outcome, the in-flight row deleted and
the state `replayed` (delivered) or no state (failed, unknown: unresolved again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from eventscope.backend.envelope import db_text
from eventscope.backend.store.engine import as_dicts
from eventscope.backend.store.models import dead_letter_states, events, replay_inflight, replays
from eventscope.backend.store.paging import OLDEST_FIRST, Cursor, after

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

PUBLISHING, DELIVERED, FAILED, UNKNOWN = "publishing", "delivered", "failed", "unknown"
REPLAYING, REPLAYED, DISCARDED = "replaying", "replayed", "discarded"
IN_CHUNKS = 500


class InFlight(Exception):
    """A replay of this message is already in flight."""


class Discarded(Exception):
    """The dead letter is discarded: restore it before replaying it."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ReplayLedger:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def begin(self, entry: dict[str, Any], *, dead_letter: bool, claim: bool = True) -> None:
        """Write the ledger row (state publishing) and claim the message; InFlight when a
        replay of it is already in flight, Discarded when the dead letter is discarded (both
        checked in this transaction). A new event (`claim=False`) claims nothing."""
        row = {
            **entry,
            "actor": db_text(entry["actor"], 200) or "?",
            "reason": db_text(entry.get("reason"), 2000),
            "state": PUBLISHING,
            "requested_at": entry.get("requested_at") or _now(),
        }
        try:
            async with self.store.engine.begin() as conn:
                if dead_letter:
                    current = await _current_states(conn, [row["event_id"]])
                    prior = current.get(row["event_id"])
                    if prior == DISCARDED:
                        raise Discarded(f"dead letter {row['event_id']} is discarded")
                if claim:
                    await conn.execute(
                        insert(replay_inflight),
                        [{"event_id": row["event_id"], "replay_id": row["replay_id"]}],
                    )
                await conn.execute(insert(replays), [row])
                if dead_letter:
                    await _set_state(
                        conn, row["event_id"], REPLAYING, row["replay_id"], row, prior=prior
                    )
        except IntegrityError:
            raise InFlight(f"a replay of event {row['event_id']} is in flight") from None

    async def begin_many(self, entries: list[dict[str, Any]]) -> set[str]:
        """`begin` for a chunk of a bulk replay, in one transaction; returns the replay ids
        claimed (a message with a replay in flight, or discarded meanwhile, is left out).
        Should a single replay claim one between the check and the insert, the chunk is
        claimed one message at a time instead."""
        if not entries:
            return set()
        now = _now()
        rows = [
            {
                **e,
                "actor": db_text(e["actor"], 200) or "?",
                "reason": db_text(e.get("reason"), 2000),
                "state": PUBLISHING,
                "requested_at": now,
            }
            for e in entries
        ]
        try:
            async with self.store.engine.begin() as conn:
                ids = [int(r["event_id"]) for r in rows]
                busy = {
                    int(r[0])
                    for r in await conn.execute(
                        select(replay_inflight.c.event_id).where(
                            replay_inflight.c.event_id.in_(ids)
                        )
                    )
                }
                current = await _current_states(conn, ids)
                rows = [
                    r
                    for r in rows
                    if int(r["event_id"]) not in busy
                    and not (r["dead_letter"] and current.get(int(r["event_id"])) == DISCARDED)
                ]
                if not rows:
                    return set()
                await conn.execute(
                    insert(replay_inflight),
                    [{"event_id": r["event_id"], "replay_id": r["replay_id"]} for r in rows],
                )
                await conn.execute(insert(replays), rows)
                dead = [r for r in rows if r["dead_letter"]]
                if dead:
                    await conn.execute(
                        delete(dead_letter_states).where(
                            dead_letter_states.c.event_id.in_([r["event_id"] for r in dead])
                        )
                    )
                    await conn.execute(
                        insert(dead_letter_states),
                        [_state_row(r["event_id"], REPLAYING, r["replay_id"], r,
                                    _prior(current.get(int(r["event_id"])))) for r in dead],
                    )  # fmt: skip
                return {r["replay_id"] for r in rows}
        except IntegrityError:  # claimed meanwhile by a single replay: one at a time
            claimed: set[str] = set()
            for r in rows:
                try:
                    await self.begin(r, dead_letter=bool(r["dead_letter"]))
                    claimed.add(r["replay_id"])
                except (InFlight, Discarded):
                    continue
            return claimed

    async def finish(self, replay_id: str, state: str, result: str | None) -> dict[str, Any] | None:
        """Record the outcome; only a replay still publishing moves (a reconcile and a late
        confirmation never both win). Returns the ledger row, or None if it had moved."""
        async with self.store.engine.begin() as conn:
            moved = await conn.execute(
                update(replays)
                .where(replays.c.replay_id == replay_id, replays.c.state == PUBLISHING)
                .values(state=state, result=db_text(result, 2000), finished_at=_now())
            )
            if not moved.rowcount:
                return None
            entry = as_dicts(
                await conn.execute(select(replays).where(replays.c.replay_id == replay_id))
            )[0]
            await _ended(conn, [replay_id], [replay_id] if state == DELIVERED else [])
            return entry

    async def finish_many(
        self,
        outcomes: list[tuple[str, str, str | None]],
        progress: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> None:
        """`finish` for a chunk: (replay id, state, result) each, in one transaction with
        `progress` (the bulk replay's counts move with its ledger rows)."""
        if not outcomes and progress is None:
            return
        now = _now()
        async with self.store.engine.begin() as conn:
            by_outcome: dict[tuple[str, str | None], list[str]] = {}
            for rid, state, result in outcomes:  # most share one: "delivered, confirmed"
                by_outcome.setdefault((state, db_text(result, 2000)), []).append(rid)
            for (state, result), rids in by_outcome.items():
                for start in range(0, len(rids), IN_CHUNKS):
                    await conn.execute(
                        update(replays)
                        .where(
                            replays.c.replay_id.in_(rids[start : start + IN_CHUNKS]),
                            replays.c.state == PUBLISHING,
                        )
                        .values(state=state, result=result, finished_at=now)
                    )
            if progress is not None:
                await progress(conn)
            delivered = [o[0] for o in outcomes if o[1] == DELIVERED]
            await _ended(conn, [o[0] for o in outcomes], delivered)

    async def refused(self, entries: list[dict[str, Any]]) -> None:
        """Ledger rows for messages a bulk replay did not publish, saying why (state failed)."""
        if not entries:
            return
        now = _now()
        rows = [
            {
                **e,
                "actor": db_text(e["actor"], 200) or "?",
                "reason": db_text(e.get("reason"), 2000),
                "result": db_text(e.get("result"), 2000),
                "state": FAILED,
                "requested_at": now,
                "finished_at": now,
            }
            for e in entries
        ]
        async with self.store.engine.begin() as conn:
            await conn.execute(insert(replays), rows)

    async def publishing_since(self, before: dt.datetime) -> list[dict[str, Any]]:
        """Replays still `publishing` that started before `before`: their process stopped."""
        query = (
            select(replays)
            .where(replays.c.state == PUBLISHING, replays.c.requested_at < before)
            .order_by(replays.c.id)
            .limit(1000)
        )
        async with self.store.engine.connect() as conn:
            return as_dicts(await conn.execute(query))

    async def mark_failed_again(self, replay_id: str, dead_letter_id: int) -> bool:
        """The replayed message came back as a dead letter; True when the ledger knew it."""
        async with self.store.engine.begin() as conn:
            moved = await conn.execute(
                update(replays)
                .where(replays.c.replay_id == replay_id, replays.c.failed_again_id.is_(None))
                .values(failed_again_id=dead_letter_id)
            )
            return bool(moved.rowcount)

    async def watched_since(self, horizon: dt.datetime) -> dt.datetime | None:
        """When the oldest delivered replay since `horizon` that has not failed again was
        asked for: dead letters from then on may be it failing again."""
        query = select(func.min(replays.c.requested_at)).where(
            replays.c.state == DELIVERED,
            replays.c.failed_again_id.is_(None),
            replays.c.requested_at >= horizon,
        )
        async with self.store.engine.connect() as conn:
            oldest: dt.datetime | None = (await conn.execute(query)).scalar()
        return oldest

    async def dead_letters_after(
        self, cursor: Cursor | None, since: dt.datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Dead letters in commit order after `cursor` (from the start: received since
        `since`), with their headers, through the dead-letter index."""
        query = (
            select(
                events.c.id,
                events.c.commit_seq,
                events.c.headers,
                events.c.exchange,
                events.c.routing_key,
                events.c.dead_letter,
                events.c.captured_from,
            )
            .where(events.c.dead_letter.is_not(None))
            .order_by(*OLDEST_FIRST)
            .limit(limit)
        )
        query = query.where(after(cursor)) if cursor else query.where(events.c.received_at >= since)
        async with self.store.engine.connect() as conn:
            return as_dicts(await conn.execute(query))

    async def entry(self, replay_id: str) -> dict[str, Any] | None:
        async with self.store.engine.connect() as conn:
            rows = as_dicts(
                await conn.execute(select(replays).where(replays.c.replay_id == replay_id))
            )
        return rows[0] if rows else None

    async def entries(
        self,
        limit: int,
        before: int | None = None,
        event_id: int | None = None,
        batch_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, keyset paged by ledger id; one message's replays with `event_id`, one
        bulk replay's with `batch_id`."""
        query = select(replays).order_by(replays.c.id.desc()).limit(limit)
        if batch_id is not None:
            query = query.where(replays.c.batch_id == batch_id)
        if before is not None:
            query = query.where(replays.c.id < before)
        if event_id is not None:
            query = query.where(replays.c.event_id == event_id)
        async with self.store.engine.connect() as conn:
            return as_dicts(await conn.execute(query))

    async def replay_count(self, event_id: int) -> int:
        query = select(func.count()).select_from(replays).where(replays.c.event_id == event_id)
        async with self.store.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def states(self, event_ids: Collection[int]) -> dict[int, dict[str, Any]]:
        """What was done about each of these dead letters (absent: unresolved)."""
        out: dict[int, dict[str, Any]] = {}
        ids = sorted(set(event_ids))
        async with self.store.engine.connect() as conn:
            for start in range(0, len(ids), IN_CHUNKS):
                chunk = ids[start : start + IN_CHUNKS]
                query = select(dead_letter_states).where(dead_letter_states.c.event_id.in_(chunk))
                for row in as_dicts(await conn.execute(query)):
                    out[int(row["event_id"])] = row
        return out

    async def discard(self, event_id: int, actor: str, reason: str | None) -> bool:
        """Archive an unresolved dead letter; False when it is being replayed or was handled."""
        async with self.store.engine.begin() as conn:
            current = (
                await conn.execute(
                    select(dead_letter_states.c.state).where(
                        dead_letter_states.c.event_id == event_id
                    )
                )
            ).scalar()
            if current is not None:
                return False
            await _set_state(conn, event_id, DISCARDED, None, {"actor": actor, "reason": reason})
            return True

    async def restore(self, event_id: int) -> bool:
        """A discarded dead letter is unresolved again; False when it was not discarded."""
        async with self.store.engine.begin() as conn:
            gone = await conn.execute(
                delete(dead_letter_states).where(
                    dead_letter_states.c.event_id == event_id,
                    dead_letter_states.c.state == DISCARDED,
                )
            )
            return bool(gone.rowcount)


async def _set_state(
    conn: AsyncConnection,
    event_id: int,
    state: str,
    replay_id: str | None,
    why: dict[str, Any],
    *,
    prior: str | None = None,
) -> None:
    await conn.execute(delete(dead_letter_states).where(dead_letter_states.c.event_id == event_id))
    await conn.execute(
        insert(dead_letter_states), [_state_row(event_id, state, replay_id, why, _prior(prior))]
    )


def _prior(state: str | None) -> str | None:
    """What a dead letter goes back to when a replay of it fails: replayed stays replayed."""
    return REPLAYED if state == REPLAYED else None


def _state_row(
    event_id: int, state: str, replay_id: str | None, why: dict[str, Any], prior: str | None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "state": state,
        "prior": prior,
        "replay_id": replay_id,
        "actor": db_text(why.get("actor"), 200),
        "reason": db_text(why.get("reason"), 2000),
        "changed_at": _now(),
    }


async def _current_states(conn: AsyncConnection, event_ids: list[int]) -> dict[int, str]:
    found = await conn.execute(
        select(dead_letter_states.c.event_id, dead_letter_states.c.state).where(
            dead_letter_states.c.event_id.in_(event_ids)
        )
    )
    return {int(r[0]): str(r[1]) for r in found}


async def _ended(conn: AsyncConnection, replay_ids: list[str], delivered: list[str]) -> None:
    """Replays ended: their claims go; their dead letters are replayed (delivered), back to
    what they were before (a replayed one stays replayed), or unresolved."""
    for start in range(0, len(replay_ids), IN_CHUNKS):
        chunk = replay_ids[start : start + IN_CHUNKS]
        await conn.execute(delete(replay_inflight).where(replay_inflight.c.replay_id.in_(chunk)))
        done = [r for r in chunk if r in set(delivered)]
        other = [r for r in chunk if r not in set(delivered)]
        if done:
            await conn.execute(
                update(dead_letter_states)
                .where(dead_letter_states.c.replay_id.in_(done))
                .values(state=REPLAYED, prior=None, changed_at=_now())
            )
        if other:
            mine = dead_letter_states.c.replay_id.in_(other)
            await conn.execute(  # first: the restore below clears `prior`
                delete(dead_letter_states).where(mine, dead_letter_states.c.prior.is_(None))
            )
            await conn.execute(
                update(dead_letter_states)
                .where(mine, dead_letter_states.c.prior.is_not(None))
                .values(state=dead_letter_states.c.prior, prior=None, changed_at=_now())
            )
