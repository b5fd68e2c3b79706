"""Replaying a stored message: plan it, check it, publish it, account for it.

`plan` says what a replay would do — the target (the default one a dead letter proposes, or
the one asked for), whether the allowlist admits it and, if not, the entry to add, the bytes
that would be sent — and refuses what cannot be sent faithfully (a body stored cut, a row
stored without its property bytes). `replay` writes the ledger row first (state publishing,
and the one-in-flight claim), publishes with confirms and `mandatory`, then records the
outcome; the audit log gets the request and the outcome. A process that stops between the
publish and the ledger's update leaves the row publishing: `reconcile` (a runtime task) ends
it as delivered when the tap recorded the replayed message, else as unknown — it may have
arrived, and its replay id tells a duplicate.

The message sent is the stored one byte for byte — the raw property bytes, the body — plus the
headers `x-eventscope-replay-id`, `x-eventscope-original-id` and `x-eventscope-replay-count`
(backend/amqp_wire.py `with_headers`). A seed-style `dlq.<key>` wrapper replays its
`originalEvent` (compact JSON) with the wrapper's properties, to `<key>`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from eventscope.backend.amqp_wire import with_headers
from eventscope.backend.failures import dlq_wrapper, header_text
from eventscope.backend.replay_publisher import REPLAY_ID_HEADER, Outcome, ReplayPublisher
from eventscope.backend.replay_targets import (
    Allowlist,
    Proposal,
    Target,
    default_allowlist,
    proposed_targets,
)
from eventscope.backend.store.engine import utc
from eventscope.backend.store.models import events
from eventscope.backend.store.paging import Cursor
from eventscope.backend.store.replays import DELIVERED, UNKNOWN, Discarded, InFlight
from eventscope.backend.trace import role_of
from eventscope.backend.waiting import sleep_unless_stopped

if TYPE_CHECKING:
    from eventscope.backend.settings import Settings
    from eventscope.backend.store.eventstore import EventStore

log = logging.getLogger(__name__)

ORIGINAL_ID_HEADER = "x-eventscope-original-id"
REPLAY_COUNT_HEADER = "x-eventscope-replay-count"
OWN_HEADERS = (REPLAY_ID_HEADER, ORIGINAL_ID_HEADER, REPLAY_COUNT_HEADER)
STALE_AFTER = dt.timedelta(minutes=5)  # a replay publishing this long: its process stopped
RECONCILE_EVERY = 30.0
OBSERVED_WINDOW = dt.timedelta(minutes=10)  # where the tap's copy of a replay is looked for
MAX_HEADER_VALUE = 4096
WATCH_FOR = dt.timedelta(days=7)  # how long a delivered replay is watched for failing again
OUTCOMES_EVERY = 2.0
OUTCOME_PAGE = 500


class ReplayRefused(Exception):
    """The replay cannot be done as asked; the text says why (and what to change)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay of one stored message would do."""

    event_id: int
    dead_letter: bool  # a dead letter (not a retry copy, not an ordinary event)
    proposal: Proposal
    target: Target | None
    allowed: bool
    add_entry: str | None  # the allowlist entry that would admit the target
    refusal: str | None  # why it cannot be replayed (None: it can, if allowed)
    notes: tuple[str, ...]
    body: bytes | None = field(repr=False)
    raw_properties: bytes | None = field(repr=False)
    original_id: str
    replay_count: int
    edited: bool

    @property
    def ready(self) -> bool:
        return self.refusal is None and self.allowed and self.target is not None

    @property
    def why_not(self) -> str | None:
        if self.refusal:
            return self.refusal
        if self.target is None:
            return "no target: name one (exchange and routing key, or a queue)"
        if not self.allowed:
            return self.target.not_allowed
        return None


def allowlist_of(settings: Settings) -> Allowlist:
    """EVENTSCOPE_REPLAY_TARGETS, else the recorded exchanges minus dead-letter ones."""
    return Allowlist(settings.replay_targets or default_allowlist(settings.exchanges))


class Replayer:
    def __init__(
        self, store: EventStore, settings: Settings, publisher: ReplayPublisher | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.allowlist = allowlist_of(settings)
        self.publisher = publisher or ReplayPublisher(settings.amqp_url)
        self._outcome_cursor: Cursor | None = None
        self.in_flight: set[str] = set()  # replay ids this process is publishing: not stale

    async def _row(self, event_id: int) -> dict[str, Any] | None:
        return await self.store.events.get(event_id)

    async def plan(
        self,
        event_id: int,
        *,
        row: Mapping[str, Any] | None = None,
        target: Target | None = None,
        body: bytes | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> ReplayPlan | None:
        """What replaying `event_id` would do (its stored `row`, when already read); None
        when there is no such event."""
        row = row if row is not None else await self._row(event_id)
        if row is None:
            return None
        count = await self.store.replays.replay_count(event_id)
        return plan_for(row, self.allowlist, count, target=target, body=body, headers=headers)

    async def replay(
        self,
        event_id: int,
        *,
        actor: str,
        role: str | None,
        reason: str | None,
        client: str | None = None,
        target: Target | None = None,
        body: bytes | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replay one stored message; returns its ledger entry. ReplayRefused (and nothing
        sent) when it cannot be replayed as asked or one is in flight."""
        row = await self._row(event_id)
        if row is None:
            raise ReplayRefused(f"no event {event_id}", 404)
        plan = await self.plan(event_id, row=row, target=target, body=body, headers=headers)
        assert plan is not None
        if plan.dead_letter:
            held = await self.store.dead_letters.held_copies([row])
            if event_id in held:
                raise ReplayRefused(
                    f"eventscope holds this dead letter as event {held[event_id]} (taken from "
                    "its owned queue): replay that one",
                    409,
                )
        if not plan.ready:
            await self._audit(actor, role, client, reason, event_id, plan, "refused", plan.why_not)
            raise ReplayRefused(plan.why_not or "cannot replay", 409)
        assert plan.target is not None and plan.body is not None
        replay_id = uuid.uuid4().hex
        try:
            raw = replay_properties(plan, replay_id)
        except ValueError as exc:
            raise ReplayRefused(f"the headers cannot be sent: {exc}", 422) from None
        entry = {
            "replay_id": replay_id,
            "event_id": event_id,
            "original_id": plan.original_id[:1024],
            "dead_letter": plan.dead_letter,
            "target_kind": plan.target.kind,
            "target_name": plan.target.name,
            "routing_key": plan.target.routing_key,
            "edited": plan.edited,
            "replay_count": plan.replay_count,
            "actor": actor,
            "role": role,
            "reason": reason,
        }
        try:
            await self.store.replays.begin(entry, dead_letter=plan.dead_letter)
        except InFlight as exc:
            raise ReplayRefused(str(exc), 409) from None
        except Discarded:
            raise ReplayRefused(
                f"dead letter {event_id} is discarded: restore it first", 409
            ) from None
        self.in_flight.add(replay_id)
        try:
            await self._audit(
                actor, role, client, reason, event_id, plan, "requested", None, replay_id
            )
            outcome = await self.publisher.publish(
                replay_id, plan.target.publish_exchange, plan.target.routing_key, plan.body, raw
            )
            return await self._finish(replay_id, outcome, actor, role, client, reason, plan)
        finally:
            self.in_flight.discard(replay_id)

    async def _finish(
        self,
        replay_id: str,
        outcome: Outcome,
        actor: str,
        role: str | None,
        client: str | None,
        reason: str | None,
        plan: ReplayPlan,
    ) -> dict[str, Any]:
        finished = await self.store.replays.finish(replay_id, outcome.state, outcome.result)
        entry = finished or await self.store.replays.entry(replay_id)
        assert entry is not None
        await self._audit(
            actor,
            role,
            client,
            reason,
            plan.event_id,
            plan,
            entry["state"],
            entry["result"],
            replay_id,
        )
        return entry

    async def _audit(
        self,
        actor: str,
        role: str | None,
        client: str | None,
        reason: str | None,
        event_id: int,
        plan: ReplayPlan,
        result: str,
        note: str | None,
        replay_id: str | None = None,
    ) -> None:
        where = plan.target.label if plan.target else "no target"
        details: dict[str, Any] = {"event_id": event_id, "edited": plan.edited}
        if replay_id:
            details["replay_id"] = replay_id
        if note:
            details["note"] = note
        await self.store.audit.record(
            actor=actor,
            role=role,
            action="replay",
            result=result,
            target=f"event {event_id} → {where}",
            reason=reason,
            client=client,
            details=details,
        )

    async def discard(
        self,
        event_id: int,
        *,
        actor: str,
        role: str | None,
        reason: str | None,
        client: str | None = None,
    ) -> None:
        """Archive a dead letter (restorable). ReplayRefused when it is no dead letter, is
        being replayed, or was replayed or discarded already."""
        row = await self._row(event_id)
        if row is None:
            raise ReplayRefused(f"no event {event_id}", 404)
        if not is_dead_letter(row):
            raise ReplayRefused(f"event {event_id} is not a dead letter", 409)
        if not await self.store.replays.discard(event_id, actor, reason):
            raise ReplayRefused(f"dead letter {event_id} is being replayed or was handled", 409)
        await self._audit_state("discard", event_id, actor, role, reason, client)

    async def restore(
        self,
        event_id: int,
        *,
        actor: str,
        role: str | None,
        reason: str | None,
        client: str | None = None,
    ) -> None:
        if not await self.store.replays.restore(event_id):
            raise ReplayRefused(f"dead letter {event_id} is not discarded", 409)
        await self._audit_state("restore", event_id, actor, role, reason, client)

    async def _audit_state(
        self,
        action: str,
        event_id: int,
        actor: str,
        role: str | None,
        reason: str | None,
        client: str | None,
    ) -> None:
        await self.store.audit.record(
            actor=actor,
            role=role,
            action=action,
            result="ok",
            target=f"event {event_id}",
            reason=reason,
            client=client,
        )

    async def reconcile_once(self, now: dt.datetime | None = None) -> int:
        """End the replays a stopped process left publishing; returns how many."""
        now = now or dt.datetime.now(dt.UTC)
        stuck = [
            e
            for e in await self.store.replays.publishing_since(now - STALE_AFTER)
            if e["replay_id"] not in self.in_flight  # still ours: its outcome is coming
        ]
        for entry in stuck:
            seen = await self._observed(entry)
            if seen is not None:
                state, result = (
                    DELIVERED,
                    (
                        f"eventscope stopped before the ledger said so; the tap recorded it as "
                        f"event {seen}"
                    ),
                )
            else:
                state, result = (
                    UNKNOWN,
                    (
                        "eventscope stopped between the publish and its confirmation: it may have "
                        f"arrived; a copy would carry {REPLAY_ID_HEADER} {entry['replay_id']}"
                    ),
                )
            if await self.store.replays.finish(entry["replay_id"], state, result):
                await self.store.audit.record(
                    actor="eventscope",
                    action="replay",
                    result=state,
                    target=f"event {entry['event_id']} → {entry['target_kind']} "
                    f"{entry['target_name']}",
                    details={"replay_id": entry["replay_id"], "note": result},
                )
        return len(stuck)

    async def _observed(self, entry: Mapping[str, Any]) -> int | None:
        """The id of a recorded message carrying this replay's id, if the tap saw one."""
        since = utc(entry["requested_at"])
        query = (
            select(events.c.id, events.c.headers)
            .where(
                events.c.received_at >= since - dt.timedelta(seconds=5),
                events.c.received_at <= since + OBSERVED_WINDOW,
                events.c.headers.contains(entry["replay_id"]),
            )
            .order_by(events.c.id)
            .limit(20)
        )
        async with self.store.engine.connect() as conn:
            for row in await conn.execute(query):
                if replay_id_of(row.headers) == entry["replay_id"]:
                    return int(row.id)
        return None

    async def run_reconcile(self, stop: asyncio.Event) -> None:
        """The runtime task: reconcile now and then (first right away: after a restart)."""
        while not stop.is_set():
            try:
                await self.reconcile_once()
            except Exception:  # the database is down: try again later
                log.exception("reconciling replays failed; retrying")
            await sleep_unless_stopped(stop, RECONCILE_EVERY)

    async def outcomes_once(self, now: dt.datetime | None = None) -> int:
        """Link the dead letters that are delivered replays failing again to their replay;
        returns how many were linked. Reads only while a delivered replay is watched."""
        now = now or dt.datetime.now(dt.UTC)
        oldest = await self.store.replays.watched_since(now - WATCH_FOR)
        if oldest is None:
            self._outcome_cursor = None
            return 0
        linked = 0
        while True:
            rows = await self.store.replays.dead_letters_after(
                self._outcome_cursor, utc(oldest) - dt.timedelta(seconds=5), OUTCOME_PAGE
            )
            for row in rows:
                replay_id = replay_id_of(row["headers"]) if is_dead_letter(row) else None
                if replay_id and await self.store.replays.mark_failed_again(
                    replay_id, int(row["id"])
                ):
                    linked += 1
            if rows:
                self._outcome_cursor = Cursor(int(rows[-1]["commit_seq"]), int(rows[-1]["id"]))
            if len(rows) < OUTCOME_PAGE:
                return linked

    async def run_outcomes(self, stop: asyncio.Event) -> None:
        """The runtime task: a replayed message that dies again is linked to its attempt."""
        while not stop.is_set():
            try:
                await self.outcomes_once()
            except Exception:
                log.exception("following replay outcomes failed; retrying")
            await sleep_unless_stopped(stop, OUTCOMES_EVERY)

    async def close(self) -> None:
        await self.publisher.close()


def replay_id_of(headers_json: str | None) -> str | None:
    """The replay id a recorded message carries (it is a replay, or a dead letter of one)."""
    return header_text(headers_json, (REPLAY_ID_HEADER,))


def is_dead_letter(row: Mapping[str, Any]) -> bool:
    return row.get("dead_letter") is not None and role_of(row) == "dead_letter"


def plan_for(
    row: Mapping[str, Any],
    allowlist: Allowlist,
    earlier_replays: int,
    *,
    target: Target | None = None,
    body: bytes | None = None,
    headers: Mapping[str, Any] | None = None,
) -> ReplayPlan:
    """Pure: the plan for one stored row (see `Replayer.plan`)."""
    dead = is_dead_letter(row)
    proposal = proposed_targets(row)
    chosen = target or proposal.default
    notes: list[str] = list(proposal.notes)
    refusal: str | None = None
    stored_body: bytes | None = row.get("body")
    send = stored_body
    if row.get("dead_letter") == "dlq-key" and body is None:
        wrapper = dlq_wrapper(stored_body or b"")
        if wrapper.original_event is None:
            refusal = f"the dlq wrapper holds no original event to replay ({wrapper.malformed})"
        else:
            try:
                send = json.dumps(
                    wrapper.original_event, separators=(",", ":"), ensure_ascii=False
                ).encode("utf-8")
                notes.append("the wrapper's originalEvent is sent, as compact JSON")
            except (ValueError, RecursionError) as exc:  # a lone surrogate, nesting too deep
                refusal = (
                    "the wrapper's originalEvent cannot be written back as JSON "
                    f"({type(exc).__name__}); edit the body to replay"
                )
    if body is not None:
        send = body
    elif row.get("body_truncated"):
        refusal = refusal or (
            "the body was stored cut (over EVENTSCOPE_MAX_BODY_BYTES): a replay would "
            "publish part of it; edit the body to replay"
        )
    elif stored_body is None:
        refusal = refusal or "the body was not stored (the row was stored reduced)"
    raw = row.get("raw_properties")
    if raw is None:
        refusal = refusal or "the property bytes were not stored (a row from before migration 0003)"
    if headers:
        bad = [name for name in headers if name.lower() in OWN_HEADERS]
        if bad:
            refusal = refusal or f"{bad[0]} is set by eventscope itself"
    if chosen is not None and chosen.kind == "queue":
        notes.append(
            f"sent through the default exchange: it arrives at queue {chosen.name} with "
            f"the queue's name as its routing key, and only that queue's consumers see it"
        )
    count = max(earlier_replays, _int_header(row.get("headers"), REPLAY_COUNT_HEADER)) + 1
    allowed = chosen is not None and allowlist.allows(chosen)
    return ReplayPlan(
        event_id=int(row["id"]),
        dead_letter=dead,
        proposal=proposal,
        target=chosen,
        allowed=allowed,
        add_entry=None if allowed or chosen is None else chosen.entry,
        refusal=refusal,
        notes=tuple(notes),
        body=send,
        raw_properties=_with_edits(raw, headers) if raw is not None and headers else raw,
        original_id=original_id_of(row),
        replay_count=count,
        edited=body is not None or bool(headers),
    )


def _with_edits(raw: bytes, headers: Mapping[str, Any]) -> bytes:
    for name, value in headers.items():
        if not isinstance(value, str | int | bool) or (
            isinstance(value, str) and len(value) > MAX_HEADER_VALUE
        ):
            raise ReplayRefused(f"header {name!r}: give text, an integer or true/false", 422)
    try:
        return with_headers(raw, {name: value for name, value in headers.items()}, replace=True)
    except ValueError as exc:
        raise ReplayRefused(f"the headers cannot be sent: {exc}", 422) from None


def replay_properties(plan: ReplayPlan, replay_id: str) -> bytes:
    """The plan's property bytes with the replay headers (each present once)."""
    assert plan.raw_properties is not None
    return with_headers(
        plan.raw_properties,
        {
            REPLAY_ID_HEADER: replay_id,
            ORIGINAL_ID_HEADER: plan.original_id[:1024],
            REPLAY_COUNT_HEADER: plan.replay_count,
        },
        replace=True,
    )


def original_id_of(row: Mapping[str, Any]) -> str:
    """The original message's id: carried over from an earlier replay, else its event id,
    else its message id, else eventscope's row id."""
    carried = header_text(row.get("headers"), (ORIGINAL_ID_HEADER,))
    for value in (carried, row.get("event_id"), row.get("message_id")):
        if isinstance(value, str) and value:
            return value
    return f"eventscope:{row['id']}"


def _int_header(headers_json: str | None, name: str) -> int:
    text = header_text(headers_json, (name,))
    if text is not None and text.isascii() and text.isdigit() and len(text) < 10:
        return int(text)
    return 0
