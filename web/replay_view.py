"""Replays as the pages and the API present them: a plan (the preview), a ledger entry with
what became of it, a dead letter's state. Names from the bus (targets, routing keys) are masked
for viewers like every text column."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from eventscope.backend.redaction import Redactor
from eventscope.backend.replay import ReplayPlan, is_dead_letter, replay_id_of
from eventscope.backend.replay_targets import Target
from eventscope.backend.store.engine import utc
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.replays import DELIVERED, DISCARDED, REPLAYED, REPLAYING
from eventscope.web.display import iso
from eventscope.web.event_view import shown

MAX_PREVIEW_BODY = 64 * 1024  # body characters the preview shows


def target_json(target: Target | None, mask: Redactor | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {
        "kind": target.kind,
        "name": shown("exchange", target.name, mask),
        "routing_key": shown("routing_key", target.routing_key, mask),
        "label": shown("exchange", target.label, mask),
    }


def plan_json(plan: ReplayPlan, mask: Redactor | None) -> dict[str, Any]:
    """The preview: how many (one), where, whether it may go there, what would be sent."""
    body = plan.body or b""
    return {
        "event_id": plan.event_id,
        "dead_letter": plan.dead_letter,
        "target": target_json(plan.target, mask),
        "default_target": target_json(plan.proposal.default, mask),
        "original_target": target_json(plan.proposal.original, mask),
        "allowed": plan.allowed,
        "add_entry": shown("exchange", plan.add_entry, mask),
        "ready": plan.ready,
        "refusal": plan.why_not,
        "notes": [shown("note", note, mask) for note in plan.notes],
        "body_size": len(body),
        "edited": plan.edited,
        "original_id": shown("event_id", plan.original_id, mask),
        "replay_count": plan.replay_count,
    }


def body_preview(plan: ReplayPlan) -> str | None:
    """The body a replay sends, as text for the edit box; None when it is not UTF-8 or too
    large to edit here (the box must hold all of it: what it holds is what is sent)."""
    body = plan.body or b""
    if len(body) > MAX_PREVIEW_BODY:
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outcome_of(entry: Mapping[str, Any], settled: dt.datetime) -> str:
    """What became of a replay: publishing, delivered (quiet period running), resolved (it
    was delivered at or before `settled`, now minus the quiet period, and did not come back),
    failed again, failed or unknown."""
    if entry.get("failed_again_id") is not None:
        return "failed again"
    if entry["state"] == DELIVERED:
        finished = entry.get("finished_at")
        if finished is not None and utc(finished) <= settled:
            return "resolved"
    return str(entry["state"])


def entry_json(
    entry: Mapping[str, Any], mask: Redactor | None, settled: dt.datetime
) -> dict[str, Any]:
    target = Target(entry["target_kind"], entry["target_name"], entry["routing_key"])
    return {
        "id": entry["id"],
        "replay_id": entry["replay_id"],
        "event_id": entry["event_id"],
        "original_id": shown("event_id", entry["original_id"], mask),
        "dead_letter": entry["dead_letter"],
        "target": target_json(target, mask),
        "edited": entry["edited"],
        "replay_count": entry["replay_count"],
        "actor": entry["actor"],
        "role": entry["role"],
        "reason": shown("reason", entry["reason"], mask),
        "state": entry["state"],
        "outcome": outcome_of(entry, settled),
        "result": shown("result", entry["result"], mask),
        "requested_at": iso(utc(entry["requested_at"])),
        "finished_at": iso(utc(entry["finished_at"])) if entry["finished_at"] else None,
        "failed_again_id": entry["failed_again_id"],
    }


def state_json(
    state: Mapping[str, Any] | None, latest: Mapping[str, Any] | None, settled: dt.datetime
) -> dict[str, Any]:
    """A dead letter's state: unresolved, replaying, replayed / resolved / failed again (from
    its latest replay), discarded."""
    if state is None:
        return {"state": "unresolved", "handled": False}
    name = str(state["state"])
    shown_as = name
    if name == REPLAYED and latest is not None:
        outcome = outcome_of(latest, settled)
        shown_as = "replayed" if outcome == "delivered" else outcome
    return {
        "state": shown_as,
        "handled": name in (REPLAYED, DISCARDED, REPLAYING),
        "actor": state.get("actor"),
        "reason": state.get("reason"),
        "changed_at": iso(utc(state["changed_at"])),
        "replay_id": state.get("replay_id"),
    }


async def replay_context(
    store: EventStore, row: Mapping[str, Any], mask: Redactor | None, settled: dt.datetime
) -> dict[str, Any]:
    """What the event page shows about replays: this message's replays, a dead letter's
    state, and the replay it is a copy of (it carries a replay id)."""
    event_id = int(row["id"])
    replays = await store.replays.entries(20, event_id=event_id)
    dead = is_dead_letter(row)
    state = (await store.replays.states([event_id])).get(event_id) if dead else None
    held = await store.dead_letters.held_copies([row]) if dead else {}
    replay_id = replay_id_of(row.get("headers"))
    came_from = await store.replays.entry(replay_id) if replay_id else None
    return {
        "replays": [entry_json(e, mask, settled) for e in replays],
        "dl_state": state_json(state, replays[0] if replays else None, settled) if dead else None,
        "replayed_from": entry_json(came_from, mask, settled) if came_from else None,
        "replay_id": replay_id,
        "held_as": held.get(event_id),
    }


def settled_before(quiet_seconds: float) -> dt.datetime:
    """Replays delivered at or before this moment count as resolved (the quiet period)."""
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=quiet_seconds)
