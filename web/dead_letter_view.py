"""Dead letters as the `/dlq` page, its API and the event page present them: groups, members,
and a dead letter's failure and `x-death` history. Error texts are bus data and may carry
secrets: viewers see them masked like any text column."""

from __future__ import annotations

import datetime as dt
from typing import Any

from eventscope.backend.dead_letters import Failure, FailureGroup, failure_of
from eventscope.backend.redaction import Redactor
from eventscope.backend.xdeath import FirstDeath, death_history, first_death
from eventscope.web.display import iso
from eventscope.web.event_view import shown
from eventscope.web.filtering import query
from eventscope.web.type_view import age_text


def ago(now: dt.datetime, then: dt.datetime | None) -> str:
    """How long ago, in the unit a person reads at a glance."""
    return "—" if then is None else age_text(max(0.0, (now - then).total_seconds()))


def group_json(group: FailureGroup, mask: Redactor | None, now: dt.datetime) -> dict[str, Any]:
    return {
        "fingerprint": group.fingerprint,
        "queue": shown("queue", group.queue, mask),
        "reason": group.reason,
        "routing_key": shown("routing_key", group.routing_key, mask),
        "error": shown("error", group.error, mask),
        "count": group.count,
        "oldest": iso(group.oldest),
        "newest": iso(group.newest),
        "oldest_age": ago(now, group.oldest),
        "newest_age": ago(now, group.newest),
        "malformed": group.malformed,
        "kinds": sorted(group.kinds),
        "sample_id": group.sample.row_id,
    }


def failure_json(
    failure: Failure, row: dict[str, Any] | None, mask: Redactor | None
) -> dict[str, Any]:
    row = row or {}
    return {
        "id": failure.row_id,
        "kind": failure.kind,
        "queue": shown("queue", failure.queue, mask),
        "reason": failure.reason,
        "exchange": shown("exchange", failure.exchange, mask),
        "routing_key": shown("routing_key", failure.routing_key, mask),
        "error": shown("error", failure.error, mask),
        "deaths": failure.deaths,
        "received_at": iso(failure.received_at),
        "problems": list(failure.problems),
        "held_in": shown("queue", failure.held_in, mask),
        "event_type": row.get("event_type"),
        "correlation_id": shown("correlation_id", row.get("correlation_id"), mask),
        "aggregate_type": row.get("aggregate_type"),
        "aggregate_id": shown("aggregate_id", row.get("aggregate_id"), mask),
        "aggregate_version": row.get("aggregate_version"),
    }


def death_context(
    row: dict[str, Any], mask: Redactor | None, error_headers: tuple[str, ...]
) -> dict[str, Any] | None:
    """What the event page shows about a dead letter or a retry copy: its failure, the
    `x-death` history as a timeline (newest first) and the first death; None for others."""
    if row.get("dead_letter") is None:
        return None
    failure = failure_of(row, error_headers)
    entries, problems = death_history(row.get("headers"))
    first = first_death(row.get("headers"))
    return {
        "retry": failure is None,
        "failure": failure_json(failure, row, mask) if failure is not None else None,
        "group_query": query([("group", failure.fingerprint)]) if failure is not None else None,
        "history": [
            {
                "time": iso(entry.time) if entry.time else None,
                "queue": shown("queue", entry.queue, mask),
                "reason": entry.reason,
                "count": entry.count,
                "exchange": shown("exchange", entry.exchange, mask),
                "routing_keys": [shown("routing_key", k, mask) for k in entry.routing_keys],
                "problems": list(entry.problems),
            }
            for entry in entries
        ],
        "history_problems": problems,
        "first": _first_shown(first, mask),
    }


def _first_shown(first: FirstDeath | None, mask: Redactor | None) -> dict[str, Any] | None:
    if first is None:
        return None
    return {
        "queue": shown("queue", first.queue, mask),
        "reason": first.reason,
        "exchange": shown("exchange", first.exchange, mask),
        "source": first.source,
    }
