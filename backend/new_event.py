"""Publishing a new event from eventscope (an operator's "produce message", as kafka-ui has it):
to an allowlisted target, with confirms and `mandatory`, in the replay ledger and the audit log
like a replay — so the same questions are answered: who sent what, where, why, and did the
broker take it.

The message is built from what the form or the API gives: body, content type, message id,
correlation id, type, headers; persistent, timestamped now, with `x-eventscope-replay-id` (its
ledger id: a copy recorded by the tap, or a dead letter it becomes, is linked back to it). Its
ledger row names no stored message (`event_id` 0).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pamqp.commands import Basic

from eventscope.backend.replay import ReplayRefused
from eventscope.backend.replay_publisher import REPLAY_ID_HEADER
from eventscope.backend.replay_targets import Target

if TYPE_CHECKING:
    from eventscope.backend.replay import Replayer

NEW_EVENT = 0  # the ledger's event_id for a message that was not stored before
MAX_BODY = 8 * 1024 * 1024
MAX_TEXT = 255  # AMQP short strings: message id, correlation id, type, content type


@dataclass(frozen=True)
class NewEvent:
    target: Target
    body: bytes
    content_type: str | None = "application/json"
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    headers: Mapping[str, Any] | None = None


def properties_of(event: NewEvent, replay_id: str) -> bytes:
    """The content header's property bytes; ReplayRefused (422) for values AMQP cannot carry."""
    for name in ("content_type", "message_id", "correlation_id", "type"):
        value = getattr(event, name)
        if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT:
            raise ReplayRefused(f"{name} is longer than {MAX_TEXT} bytes", 422)
    headers = dict(event.headers or {})
    for name, value in headers.items():
        if name.lower() == REPLAY_ID_HEADER:
            raise ReplayRefused(f"{name} is set by eventscope itself", 422)
        if not isinstance(value, str | int | bool | float) or (
            isinstance(value, float) and (value != value or value in (float("inf"), float("-inf")))
        ):
            raise ReplayRefused(f"header {name!r}: give text, a number or true/false", 422)
    headers[REPLAY_ID_HEADER] = replay_id
    try:
        return bytes(
            Basic.Properties(
                content_type=event.content_type or None,
                delivery_mode=2,
                message_id=event.message_id or None,
                correlation_id=event.correlation_id or None,
                message_type=event.type or None,
                timestamp=dt.datetime.now(dt.UTC).replace(microsecond=0),
                headers=headers,
            ).marshal()
        )
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ReplayRefused(f"the properties cannot be sent: {exc}", 422) from None


async def publish_new(
    replayer: Replayer,
    event: NewEvent,
    *,
    actor: str,
    role: str | None,
    reason: str | None,
    client: str | None = None,
) -> dict[str, Any]:
    """Publish one new event; its ledger entry. ReplayRefused (nothing sent) when the target is
    not allowed or the message cannot be built."""
    if not replayer.allowlist.allows(event.target):
        raise ReplayRefused(event.target.not_allowed, 409)
    if len(event.body) > MAX_BODY:
        raise ReplayRefused(f"the body is larger than {MAX_BODY // (1024 * 1024)} MiB", 422)
    replay_id = uuid.uuid4().hex
    raw = properties_of(event, replay_id)
    store = replayer.store
    await store.replays.begin(
        {
            "replay_id": replay_id,
            "event_id": NEW_EVENT,
            "original_id": (event.message_id or f"new:{replay_id}")[:1024],
            "dead_letter": False,
            "target_kind": event.target.kind,
            "target_name": event.target.name,
            "routing_key": event.target.routing_key,
            "edited": True,
            "replay_count": 1,
            "actor": actor,
            "role": role,
            "reason": reason,
        },
        dead_letter=False,
        claim=False,
    )
    where = event.target.label
    await store.audit.record(
        actor=actor, role=role, action="publish", result="requested", target=where,
        reason=reason, client=client, details={"replay_id": replay_id},
    )  # fmt: skip
    outcome = await replayer.publisher.publish(
        replay_id, event.target.publish_exchange, event.target.routing_key, event.body, raw
    )
    entry = await store.replays.finish(replay_id, outcome.state, outcome.result)
    entry = entry or await store.replays.entry(replay_id)
    assert entry is not None
    await store.audit.record(
        actor=actor, role=role, action="publish", result=entry["state"], target=where,
        reason=reason, client=client, details={"replay_id": replay_id, "note": entry["result"]},
    )  # fmt: skip
    return entry
