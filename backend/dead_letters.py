"""Dead letters as `/dlq` shows them: what each recorded one says about its failure, and the
groups of failures of one kind.

A dead letter is a recorded event that RabbitMQ dead-lettered (it carries `x-death`) and that
is not a TTL retry copy back on a working exchange (backend/trace.py `role_of`), or a message of
the seed's convention, published under `dlq.<routing key>` with `{originalEvent, error,
retries}`. Its failure is where it died (queue, reason: the newest `x-death` entry, which is
what RabbitMQ 3.10 offers instead of `x-last-death-*`), what it was sent as (exchange, routing
key) and the error text (the headers named in `error_headers`; the wrapper's `error`). Groups
are keyed by `failure_fingerprint`, so "order 41 not found" and "order 42 not found" from one
queue are one group. All of it is bus data: a forged or malformed `x-death` or wrapper is shown
with its problems, never trusted beyond display.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventscope.backend.failures import (
    DEFAULT_ERROR_HEADERS,
    dlq_wrapper,
    error_text,
    failure_fingerprint,
    normalise_error,
)
from eventscope.backend.store.engine import utc
from eventscope.backend.trace import role_of
from eventscope.backend.xdeath import death_history

DLQ_PREFIX = "dlq."  # the seed's convention (backend/envelope.py `dead_letter_kind`)
MAX_GROUP_IDS = 1000  # members listed per group (the count is exact)


@dataclass(frozen=True)
class Failure:
    """One dead letter's failure, as far as its headers and body tell."""

    row_id: int
    kind: str  # "x-death" (RabbitMQ) or "dlq-key" (the seed's convention)
    queue: str | None  # where it died (x-death); None for the convention
    reason: str | None  # rejected, expired, maxlen, delivery_limit; "published" for dlq.<key>
    exchange: str | None  # what it was sent to before it failed ("" the default exchange)
    routing_key: str | None  # ... and under which key
    error: str | None
    deaths: int | None  # times it died in that queue (x-death count), or the wrapper's retries
    received_at: dt.datetime
    problems: tuple[str, ...] = ()  # a forged or malformed x-death or wrapper, said plainly
    held_in: str | None = None  # the owned dead-letter queue eventscope took it from

    @functools.cached_property
    def fingerprint(self) -> str:
        return failure_fingerprint(self.queue, self.reason, self.routing_key, self.error)


def failure_of(
    row: Mapping[str, Any], error_headers: Sequence[str] = DEFAULT_ERROR_HEADERS
) -> Failure | None:
    """The failure a recorded row describes; None when it is no dead letter (an ordinary
    event, or a TTL retry copy back on a working exchange)."""
    kind = row.get("dead_letter")
    if kind is None or role_of(row) != "dead_letter":
        return None
    headers = row.get("headers")
    error = error_text(headers, error_headers)
    if kind == "x-death":
        entries, problems = death_history(headers)
        latest = entries[0] if entries else None
        keys = latest.routing_keys if latest is not None else ()
        return Failure(
            row_id=int(row["id"]),
            kind="x-death",
            queue=latest.queue if latest else None,
            reason=latest.reason if latest else None,
            exchange=latest.exchange if latest else None,
            routing_key=keys[0] if keys else None,
            error=error,
            deaths=latest.count if latest else None,
            received_at=utc(row["received_at"]),
            problems=(*problems, *(latest.problems if latest else ("no x-death entry",))),
            held_in=row.get("captured_from"),
        )
    routing_key = str(row.get("routing_key") or "")
    body = row.get("body")
    wrapper = dlq_wrapper(body) if body is not None else None
    notes: tuple[str, ...] = (
        ("the body is too large to read here",)
        if wrapper is None
        else ((wrapper.malformed,) if wrapper.malformed else ())
    )
    return Failure(
        row_id=int(row["id"]),
        kind="dlq-key",
        queue=None,
        reason="published",
        exchange=row.get("exchange"),
        routing_key=routing_key[len(DLQ_PREFIX) :]
        if routing_key.startswith(DLQ_PREFIX)
        else routing_key,
        error=(wrapper.error if wrapper is not None and wrapper.error else None) or error,
        deaths=wrapper.retries if wrapper is not None else None,
        received_at=utc(row["received_at"]),
        problems=notes,
        held_in=row.get("captured_from"),
    )


@dataclass
class FailureGroup:
    """Failures of one kind: one queue (or the convention), reason, routing key and error
    text with ids and numbers normalised."""

    fingerprint: str
    queue: str | None
    reason: str | None
    routing_key: str | None
    error: str | None  # normalised: `<n>`, `<uuid>`, ... where the members differ
    sample: Failure  # the newest member
    count: int = 0
    oldest: dt.datetime | None = None
    newest: dt.datetime | None = None
    malformed: int = 0  # members whose x-death or wrapper has problems
    kinds: set[str] = field(default_factory=set)
    ids: list[int] = field(default_factory=list)  # newest first, at most MAX_GROUP_IDS


def group_failures(failures: Iterable[Failure]) -> list[FailureGroup]:
    """Groups by fingerprint, the group seen most recently first (members in the order given:
    newest first)."""
    groups: dict[str, FailureGroup] = {}
    for failure in failures:
        key = failure.fingerprint
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(
                fingerprint=key,
                queue=failure.queue,
                reason=failure.reason,
                routing_key=failure.routing_key,
                error=normalise_error(failure.error) if failure.error else None,
                sample=failure,
            )
        group.count += 1
        at = failure.received_at
        group.oldest = at if group.oldest is None else min(group.oldest, at)
        group.newest = at if group.newest is None else max(group.newest, at)
        group.malformed += bool(failure.problems)
        group.kinds.add(failure.kind)
        if len(group.ids) < MAX_GROUP_IDS:
            group.ids.append(failure.row_id)
    return sorted(groups.values(), key=lambda g: (g.newest, g.count), reverse=True)


def failures_and_groups(
    rows: Iterable[Mapping[str, Any]], error_headers: Sequence[str] = DEFAULT_ERROR_HEADERS
) -> tuple[list[Failure], list[FailureGroup]]:
    """Each row's failure (rows that are none left out) and their groups: what /dlq shows."""
    failures = [f for r in rows if (f := failure_of(r, error_headers)) is not None]
    return failures, group_failures(failures)
