"""Bulk replays: a selection of stored messages replayed in the background, throttled,
cancellable, resumable, in constant memory.

A selection is explicit ids, one failure group (its fingerprint under a filter), or everything
a filter matches — dead letters nobody acted on, or any events. `start` records the batch and
returns at once; the runtime task `run` then (1) collects the selection into
`replay_batch_items`, only rows committed before the action started (so the batch is bounded
to what matched then), page by page; (2) replays it in chunks: each chunk's ledger rows are
written in one transaction, its messages published on the confirming channel, `WINDOW`
outstanding confirms at a time, their outcomes and the batch's progress written
in one transaction, at most `EVENTSCOPE_REPLAY_RATE` messages per second. A cancel is seen
between chunks. A process that stops mid-batch carries on at restart from the progress it
wrote; messages of the interrupted chunk that already have a ledger row are not published
again (the reconcile task ends their rows). The audit log gets the action and its end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from eventscope.backend.dead_letters import failure_of
from eventscope.backend.filters import EventFilter, multi, parse_filter
from eventscope.backend.replay import (
    Replayer,
    ReplayRefused,
    is_dead_letter,
    plan_for,
    replay_properties,
)
from eventscope.backend.replay_publisher import Outcome, Send
from eventscope.backend.replay_targets import Target
from eventscope.backend.store.dead_letters import WRAPPER_BODY
from eventscope.backend.store.engine import as_dicts, utc
from eventscope.backend.store.models import events, replays
from eventscope.backend.store.paging import Cursor
from eventscope.backend.store.replay_batches import (
    CANCELLED,
    CANCELLING,
    COLLECTING,
    FINISHED,
    RUNNING,
)
from eventscope.backend.waiting import sleep_unless_stopped

if TYPE_CHECKING:
    from eventscope.backend.settings import Settings
    from eventscope.backend.store.eventstore import EventStore

log = logging.getLogger(__name__)

CHUNK = 500  # messages per ledger transaction
WINDOW = 100  # outstanding publisher confirms at most
COLLECT_PAGE = 500
PREVIEW_SCAN = 10_000  # rows a preview reads before it says "at least"
IDLE = 1.0


# What planning and sending a stored message read of it.
_REPLAYED = (
    events.c.id,
    events.c.exchange,
    events.c.routing_key,
    events.c.dead_letter,
    events.c.headers,
    events.c.body,
    events.c.body_truncated,
    events.c.raw_properties,
    events.c.event_id,
    events.c.message_id,
)


@dataclass(frozen=True)
class Selection:
    """Which stored messages a bulk replay takes."""

    ids: tuple[int, ...] = ()  # explicit ids (a selection on a page); else the filter's rows
    filter: EventFilter = dataclasses.field(default_factory=EventFilter)
    fingerprint: str | None = None  # one failure group of the filter's dead letters
    dead_letters: bool = True  # only unresolved dead letters; False: any matching event

    def describe(self) -> str:
        if self.ids:
            return f"{len(self.ids)} selected"
        what = "dead letters" if self.dead_letters else "events"
        query = "&".join(f"{k}={v}" for k, v in self.filter.query_items())
        group = f" of group {self.fingerprint}" if self.fingerprint else ""
        return f"{what}{group}" + (f" matching {query}" if query else "")


@dataclass(frozen=True)
class Chunk:
    """One chunk, claimed in the ledger and ready to send."""

    size: int  # messages of the batch it covers
    sends: list[Send]
    refused: int
    skipped: int


@dataclass(frozen=True)
class BulkPreview:
    count: int
    at_least: bool  # more may match than were read for the preview
    targets: list[tuple[str, int, bool]]  # target label, messages, allowed
    refusals: list[tuple[str, int]]  # why messages would not be replayed, how many
    add_entries: list[str]  # allowlist entries that would admit the refused targets


class BulkReplays:
    def __init__(self, store: EventStore, replayer: Replayer, settings: Settings) -> None:
        self.store = store
        self.replayer = replayer
        self.settings = settings
        self.rate = settings.replay_rate
        self.owner = uuid.uuid4().hex  # this worker, in the batches' leases
        self._wake = asyncio.Event()

    # -- the selection ---------------------------------------------------------------------

    async def _selected(
        self, selection: Selection, until: Cursor | None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The selection's rows, newest first, in pages (id, dead_letter, headers...)."""
        if selection.ids:
            ids = sorted(set(selection.ids))
            for start in range(0, len(ids), COLLECT_PAGE):
                rows = await self._headers(ids[start : start + COLLECT_PAGE])
                yield [r for r in rows if _chosen(r, selection, self.settings)]
            return
        wanted = (
            dataclasses.replace(selection.filter, dead_letter=True)
            if selection.dead_letters
            else selection.filter
        )
        older = until
        while True:
            found = await self.store.search.page(wanted, COLLECT_PAGE, older_than=older)
            rows = await self._headers([int(r["id"]) for r in found.page.rows])
            yield [r for r in rows if _chosen(r, selection, self.settings)]
            older = found.page.older
            if older is None:
                return

    async def _headers(self, ids: list[int]) -> list[dict[str, Any]]:
        """What choosing a row reads: kind, place, headers, state (newest first)."""
        if not ids:
            return []
        query = select(
            events.c.id,
            events.c.exchange,
            events.c.routing_key,
            events.c.dead_letter,
            events.c.headers,
            events.c.received_at,
            events.c.body_size,
            events.c.captured_from,
            events.c.message_id_key,
            WRAPPER_BODY,  # a dlq.<key> wrapper's error is part of its group, as on /dlq
        ).where(events.c.id.in_(ids))
        async with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
        states = await self.store.replays.states(ids)
        held = await self.store.dead_letters.held_copies(rows)
        for row in rows:
            row["state"] = states.get(int(row["id"]))
            row["held_as"] = held.get(int(row["id"]))  # the owned copy is replayed, not this
        rows.sort(key=lambda r: int(r["id"]), reverse=True)
        return rows

    async def preview(self, selection: Selection, target: Target | None = None) -> BulkPreview:
        """How many, where to, whether allowed — read over at most PREVIEW_SCAN rows."""
        count = 0
        at_least = False
        targets: dict[str, list[Any]] = {}
        refusals: dict[str, int] = {}
        entries: set[str] = set()
        async for page in self._selected(selection, None):
            rows = page[: PREVIEW_SCAN - count]
            if len(rows) < len(page):  # more match than the preview reads
                at_least = True
            full = await self._rows([int(r["id"]) for r in rows])
            for row in full:
                plan = plan_for(row, self.replayer.allowlist, 0, target=target)
                count += 1
                label = plan.target.label if plan.target else "no target"
                slot = targets.setdefault(label, [0, plan.allowed])
                slot[0] += 1
                if plan.why_not:
                    key = plan.why_not if plan.refusal else "target not allowed"
                    refusals[key] = refusals.get(key, 0) + 1
                if plan.add_entry:
                    entries.add(plan.add_entry)
            if at_least:
                break
        return BulkPreview(
            count,
            at_least,
            sorted(((k, v[0], v[1]) for k, v in targets.items()), key=lambda t: -t[1])[:20],
            sorted(refusals.items(), key=lambda kv: -kv[1])[:10],
            sorted(entries)[:20],
        )

    async def _rows(self, ids: list[int]) -> list[dict[str, Any]]:
        """What planning and sending read of one chunk's rows (bodies, property bytes)."""
        if not ids:
            return []
        async with self.store.engine.connect() as conn:
            found = await conn.execute(select(*_REPLAYED).where(events.c.id.in_(ids)))
            rows = as_dicts(found)
        order = {event_id: n for n, event_id in enumerate(ids)}
        rows.sort(key=lambda r: order.get(int(r["id"]), 0))
        return rows

    # -- actions -----------------------------------------------------------------------------

    async def start(
        self,
        selection: Selection,
        *,
        actor: str,
        role: str | None,
        reason: str | None,
        client: str | None = None,
        target: Target | None = None,
    ) -> str:
        """Record the batch and wake the worker; returns the batch id. A reason is required."""
        if not reason or not reason.strip():
            raise ReplayRefused("a bulk replay needs a reason", 422)
        if target is not None and not self.replayer.allowlist.allows(target):
            raise ReplayRefused(target.not_allowed, 409)
        until, _ = await self.store.events.position()
        batch_id = uuid.uuid4().hex
        await self.store.replay_batches.create(
            {
                "batch_id": batch_id,
                "actor": actor,
                "role": role,
                "reason": reason.strip(),
                "selection": selection.describe(),
                "ids": ",".join(str(i) for i in selection.ids) if selection.ids else None,
                "filter": json.dumps(selection.filter.query_items()),
                "fingerprint": selection.fingerprint,
                "dead_letters": selection.dead_letters,
                "until_seq": until.seq if until else 0,
                "until_id": until.id if until else 0,
                "target_kind": target.kind if target else None,
                "target_name": target.name if target else None,
                "routing_key": target.routing_key if target else None,
                "rate": self.rate,
            }
        )
        await self.store.audit.record(
            actor=actor,
            role=role,
            action="replay-bulk",
            result="requested",
            target=selection.describe() + (f" → {target.label}" if target else ""),
            reason=reason,
            client=client,
            details={"batch_id": batch_id},
        )
        self._wake.set()
        return batch_id

    async def cancel(
        self, batch_id: str, *, actor: str, role: str | None, client: str | None = None
    ) -> bool:
        moved = await self.store.replay_batches.set_state(
            batch_id, CANCELLING, only_from=(COLLECTING, RUNNING)
        )
        if moved:
            await self.store.audit.record(
                actor=actor,
                role=role,
                action="replay-bulk",
                result="cancel",
                target=f"batch {batch_id}",
                client=client,
            )
            self._wake.set()
        return moved

    # -- the worker --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, only: str | None = None) -> None:
        """The runtime task: carry every active batch forward, oldest first (`only`: that one,
        as `eventscope replay` does). A batch is carried by one process at a time (a lease
        renewed every chunk); in read-only mode nothing is published."""
        while not stop.is_set():
            try:
                for batch in await self.store.replay_batches.active():
                    if stop.is_set() or self.settings.read_only:
                        break
                    if only is not None and batch["batch_id"] != only:
                        continue
                    if await self.store.replay_batches.lease(batch["batch_id"], self.owner):
                        await self._carry(batch, stop)
            except Exception:
                log.exception("bulk replay failed; retrying")
            if not self._wake.is_set():
                await _wait_either(stop, self._wake, IDLE)
            self._wake.clear()

    async def _carry(self, batch: dict[str, Any], stop: asyncio.Event) -> None:
        batch_id = batch["batch_id"]
        if batch["state"] == COLLECTING:
            await self._collect(batch)
            batch = await self.store.replay_batches.get(batch_id) or batch
        if batch["state"] == CANCELLING:
            await self._end(batch, CANCELLED)
            return
        if batch["state"] == RUNNING:
            await self._replay(batch, stop)

    async def _collect(self, batch: dict[str, Any]) -> None:
        selection = selection_of(batch)
        until = Cursor(int(batch["until_seq"]), int(batch["until_id"]) + 1)
        total = await self.store.replay_batches.count_items(batch["batch_id"])
        if total:  # a collection that stopped half way: start it again
            log.warning("bulk replay %s: collecting again after a stop", batch["batch_id"])
            await self.store.replay_batches.clear_items(batch["batch_id"])
        total = 0
        async for rows in self._selected(selection, until):
            ids = [int(r["id"]) for r in rows]
            await self.store.replay_batches.add_items(batch["batch_id"], total, ids)
            total += len(ids)
            current = await self.store.replay_batches.get(batch["batch_id"])
            if current is None or current["state"] != COLLECTING:
                return
        await self.store.replay_batches.set_state(
            batch["batch_id"], RUNNING, only_from=(COLLECTING,)
        )

    async def _replay(self, batch: dict[str, Any], stop: asyncio.Event) -> None:
        """Chunk after chunk, two stages deep: while one chunk is published and its outcomes
        written, the next one is read, planned and claimed in the ledger. Outcomes (and the
        progress they carry) are written in chunk order, so `done` always counts a prefix."""
        batch_id = batch["batch_id"]
        target = (
            Target(batch["target_kind"], batch["target_name"], batch["routing_key"] or "")
            if batch["target_kind"]
            else None
        )
        seq = int(batch["done"])
        rate = float(batch["rate"]) if batch["rate"] is not None else self.rate
        size = CHUNK if rate <= 0 else max(1, min(CHUNK, int(rate)))  # bursts of ≤ 1 s
        started = time.monotonic()
        sent = 0
        previous: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                current = await self.store.replay_batches.get(batch_id)
                if current is None:
                    return
                if current["state"] == CANCELLING:
                    await _settled(previous)
                    previous = None
                    await self._end(current, CANCELLED)
                    return
                ids = await self.store.replay_batches.items(batch_id, seq, size)
                if not ids:
                    await _settled(previous)
                    previous = None
                    await self._end(current, FINISHED)
                    return
                chunk = await self._prepare(batch, ids, target)  # while `previous` is sent
                sending = asyncio.create_task(self._send(batch_id, chunk, previous))
                await _settled(previous)  # at most two chunks claimed and not yet sent
                previous = sending
                if not await self.store.replay_batches.lease(batch_id, self.owner):
                    log.warning("bulk replay %s: taken over by another process", batch_id)
                    return
                seq += len(ids)
                sent += len(chunk.sends) + chunk.refused
                if rate > 0:  # throttle: no faster than `rate` messages per second on average
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await sleep_unless_stopped(stop, ahead)
        finally:
            await _settled(previous)

    async def _prepare(self, batch: dict[str, Any], ids: list[int], target: Target | None) -> Chunk:
        """Read, plan and claim one chunk: its ledger rows are written (publishing) before
        anything is sent; refused messages get a ledger row saying why."""
        batch_id = batch["batch_id"]
        done_before = await self.store.replay_batches.already_replayed(batch_id, ids)
        rows = await self._rows([i for i in ids if i not in done_before])
        states = await self.store.replays.states([int(r["id"]) for r in rows])
        counts = await self._earlier_counts([int(r["id"]) for r in rows])
        entries: list[dict[str, Any]] = []
        sends: list[Send] = []
        refused: list[tuple[dict[str, Any], str, Target | None]] = []
        skipped = len(ids) - len(rows)  # replayed before a restart, or no longer stored
        for row in rows:
            event_id = int(row["id"])
            if batch["dead_letters"] and states.get(event_id) is not None:
                skipped += 1  # acted on since it was selected
                continue
            try:
                plan = plan_for(
                    row, self.replayer.allowlist, counts.get(event_id, 0), target=target
                )
            except ReplayRefused as exc:
                refused.append((row, str(exc), target))
                continue
            if not plan.ready or plan.target is None or plan.body is None:
                refused.append((row, plan.why_not or "cannot replay", plan.target))
                continue
            replay_id = uuid.uuid4().hex
            try:
                properties = replay_properties(plan, replay_id)
            except ValueError as exc:  # stored property bytes that cannot be sent again
                refused.append((row, f"the properties cannot be sent: {exc}", plan.target))
                continue
            entries.append(
                {
                    "replay_id": replay_id,
                    "event_id": event_id,
                    "original_id": plan.original_id[:1024],
                    "dead_letter": plan.dead_letter,
                    "target_kind": plan.target.kind,
                    "target_name": plan.target.name,
                    "routing_key": plan.target.routing_key,
                    "edited": False,
                    "replay_count": plan.replay_count,
                    "actor": batch["actor"],
                    "role": batch["role"],
                    "reason": batch["reason"],
                    "batch_id": batch_id,
                }
            )
            sends.append(
                (
                    replay_id,
                    plan.target.publish_exchange,
                    plan.target.routing_key,
                    plan.body,
                    properties,
                )
            )
        await self.store.replays.refused(
            [_refused_entry(row, why, batch, where) for row, why, where in refused]
        )
        claimed = await self.store.replays.begin_many(entries)
        self.replayer.in_flight.update(claimed)  # not stale while this process sends them
        skipped += len(entries) - len(claimed)
        return Chunk(len(ids), [s for s in sends if s[0] in claimed], len(refused), skipped)

    async def _send(self, batch_id: str, chunk: Chunk, previous: asyncio.Task[None] | None) -> None:
        """Publish one chunk (one window of outstanding confirms), then — after the previous
        chunk's — write its outcomes and the batch's progress in one transaction."""
        outcomes: list[Outcome] = []
        try:
            for start in range(0, len(chunk.sends), WINDOW):
                outcomes += await self.replayer.publisher.publish_many(
                    chunk.sends[start : start + WINDOW]
                )
        except Exception as exc:  # not sent, or not known: reconcile has the ledger rows
            log.exception("bulk replay %s: a chunk could not be published", batch_id)
            unknown = Outcome("unknown", f"the publish stopped ({type(exc).__name__}): it may "
                              "have arrived")  # fmt: skip
            outcomes += [unknown] * (len(chunk.sends) - len(outcomes))
        try:
            await _settled(previous)  # outcomes are written in chunk order
        except Exception:
            log.exception("bulk replay %s: the chunk before failed", batch_id)
        delivered = sum(o.state == "delivered" for o in outcomes)
        failed = len(outcomes) - delivered + chunk.refused
        try:
            await self.store.replays.finish_many(
                [(s[0], o.state, o.result) for s, o in zip(chunk.sends, outcomes, strict=True)],
                self.store.replay_batches.progress(
                    batch_id, chunk.size, delivered, failed, chunk.skipped
                ),
            )
        finally:
            self.replayer.in_flight.difference_update(s[0] for s in chunk.sends)

    async def _earlier_counts(self, ids: list[int]) -> dict[int, int]:
        if not ids:
            return {}
        query = (
            select(replays.c.event_id, func.count())
            .where(replays.c.event_id.in_(ids), replays.c.replay_count > 0)
            .group_by(replays.c.event_id)
        )
        async with self.store.engine.connect() as conn:
            return {int(r[0]): int(r[1]) for r in await conn.execute(query)}

    async def _end(self, batch: dict[str, Any], state: str) -> None:
        if not await self.store.replay_batches.set_state(
            batch["batch_id"], state, only_from=(COLLECTING, RUNNING, CANCELLING)
        ):
            return
        final = await self.store.replay_batches.get(batch["batch_id"]) or batch
        await self.store.audit.record(
            actor=batch["actor"],
            role=batch["role"],
            action="replay-bulk",
            result=state,
            target=str(final["selection"]),
            reason=batch["reason"],
            details={
                "batch_id": batch["batch_id"],
                "total": final["total"],
                "delivered": final["delivered"],
                "failed": final["failed"],
                "skipped": final["skipped"],
            },
        )


def selection_of(batch: Mapping[str, Any]) -> Selection:
    """The selection a stored batch was started with (relative times read as of its start)."""
    ids = tuple(int(i) for i in str(batch.get("ids") or "").split(",") if i)
    pairs = json.loads(batch.get("filter") or "[]")
    return Selection(
        ids=ids,
        filter=parse_filter(
            multi((str(k), str(v)) for k, v in pairs), now=utc(batch["created_at"])
        ),
        fingerprint=batch.get("fingerprint"),
        dead_letters=bool(batch.get("dead_letters")),
    )


def _chosen(row: Mapping[str, Any], selection: Selection, settings: Settings) -> bool:
    """Whether a row of the selection's rows is replayed: unresolved dead letters of the
    group, or any row when the selection is of events."""
    if not selection.dead_letters:
        return True
    if row.get("state") is not None or row.get("held_as") or not is_dead_letter(row):
        return False
    if selection.fingerprint is None:
        return True
    failure = failure_of(row, settings.error_headers)
    return failure is not None and failure.fingerprint == selection.fingerprint


def _refused_entry(
    row: Mapping[str, Any], why: str, batch: Mapping[str, Any], target: Target | None
) -> dict[str, Any]:
    """A ledger row for a message the batch did not publish (replay count 0: not a replay)."""
    return {
        "replay_id": uuid.uuid4().hex,
        "event_id": int(row["id"]),
        "original_id": str(row.get("event_id") or row.get("message_id") or row["id"])[:1024],
        "dead_letter": is_dead_letter(row),
        "target_kind": target.kind if target else "exchange",
        "target_name": target.name if target else "",
        "routing_key": target.routing_key if target else "",
        "edited": False,
        "replay_count": 0,
        "actor": batch["actor"],
        "role": batch["role"],
        "reason": batch["reason"],
        "batch_id": batch["batch_id"],
        "result": f"not replayed: {why}",
    }


async def _settled(task: asyncio.Task[None] | None) -> None:
    """Wait for a chunk's publish and outcomes (they must be written before the next's)."""
    if task is not None:
        await task


async def _wait_either(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
