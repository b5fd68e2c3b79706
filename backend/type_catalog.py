"""The event type catalog: every event type seen, with counts, a sample and its shape, kept
behind ingest.

The types page must answer at once on a store of millions of events, so it never groups the
events table: this runtime task follows the stored events in commit order (woken by the
recorder's commits, polling otherwise) and keeps one row per type up to date (per routing key
for events without a type): count, first and last seen, the routing keys it came on, the
newest sample, the merged shape (backend/shapes.py) and events per minute for the rate chart.
When an event's shape differs from the merged shape of the type's events before it (a field
added, removed, or of a new type), the change is flagged with that event, once. Dead letters
(RabbitMQ's `x-death` copies and `dlq.*` wrappers) are left out: a failure is not a shape
change. Like the search indexer it gives way to ingest: while the recorder drains a backlog it
waits, and catching up it takes at most half a core.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from eventscope.backend.behind_ingest import CatalogFollower
from eventscope.backend.envelope import parse_json_object
from eventscope.backend.payload_sample import sample
from eventscope.backend.shapes import (
    EMPTY,
    Change,
    Shape,
    change_data,
    covers,
    diff,
    from_data,
    merge,
    of_body,
    to_data,
)
from eventscope.backend.store.engine import utc
from eventscope.backend.store.types import CatalogWrite

log = logging.getLogger(__name__)

BATCH = 500
YIELD_EVERY_BYTES = 64 * 1024  # of bodies read (an event counts 1000 more): then the loop runs
CAUGHT_UP_EVERY = 1.0  # seconds: the least time between two small batches
MAX_ROUTING_KEYS = 20  # listed per type; events on further keys are counted together
RECENT_CHANGES = 5  # kept on the type's row for the page; all are in type_shape_changes
MAX_CHANGES = 50  # listed per flagged event
RATE_MINUTES = 60  # the span of the rate chart
KEEP_MINUTES = RATE_MINUTES + 15  # rate buckets older than this are pruned
PRUNE_EVERY = 60.0  # seconds
_ROUTING_KEY_HASH = b"eventscope:routing-key"


def routing_key_group(routing_key: str) -> int:
    """The catalog key of the events without a type on one routing key: a keyed hash, so it
    can never equal a type's key (the hash of its name) except by 64-bit chance."""
    raw = routing_key.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(raw, digest_size=8, key=_ROUTING_KEY_HASH).digest()
    return int.from_bytes(digest, "big", signed=True)


def group_of(row: dict[str, Any]) -> tuple[int, str, str]:
    """(catalog key, kind, name) of a stored event: its type, else its routing key."""
    if row["event_type_key"] is not None and row["event_type"] is not None:
        return int(row["event_type_key"]), "type", row["event_type"]
    routing_key = row["routing_key"] or ""
    return routing_key_group(routing_key), "routing_key", routing_key


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))  # any database takes it


def _loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except (ValueError, RecursionError):
        return default


@dataclass
class TypeState:
    """One catalog row while a batch is counted into it."""

    row: dict[str, Any]
    shape: Shape
    routes: dict[str, int]
    recent: list[dict[str, Any]]
    changes: list[dict[str, Any]] = field(default_factory=list)  # new change records
    newest: tuple[dict[str, Any], str, Any] | None = None  # (event, body kind, document)

    @classmethod
    def of(cls, stored: dict[str, Any] | None, key: int, kind: str, name: str) -> TypeState:
        if stored is None:
            row: dict[str, Any] = {
                "type_key": key,
                "kind": kind,
                "name": name,
                "events": 0,
                "first_seen": None,
                "last_seen": None,
                "first_event_id": None,
                "last_event_id": None,
                "sample_event_id": None,
                "sample": None,
                "other_routing_keys": 0,
                "changes": 0,
                "last_change_at": None,
            }
            return cls(row, EMPTY, {}, [])
        routes = _loads(stored["routing_keys"], [])
        return cls(
            dict(stored),
            from_data(_loads(stored["shape"], None)),
            {str(k): int(n) for k, n in routes if isinstance(n, int)},
            list(_loads(stored["recent_changes"], []))[:RECENT_CHANGES],
        )

    def add(self, event: dict[str, Any], when: dt.datetime) -> None:
        row = self.row
        row["events"] += 1
        if row["first_seen"] is None:
            row["first_seen"], row["first_event_id"] = when, event["id"]
        row["first_seen"] = min(utc(row["first_seen"]), when)
        row["last_seen"] = max(utc(row["last_seen"] or when), when)
        row["last_event_id"] = event["id"]
        key = event["routing_key"]
        if key in self.routes or len(self.routes) < MAX_ROUTING_KEYS:
            self.routes[key] = self.routes.get(key, 0) + 1
        else:
            row["other_routing_keys"] += 1
        try:
            self._read_body(event, when)
        except Exception:  # a body nobody foresaw: counted, its shape not read
            log.exception("type catalog: cannot read the shape of event %s", event["id"])

    def _read_body(self, event: dict[str, Any], when: dt.datetime) -> None:
        body = event["body"]
        if body is None or event["body_truncated"]:
            return  # too large to read, or stored cut: counted, shape unknown
        kind, document = event["body_kind"], None
        if kind == "json":
            kind, document = parse_json_object(bytes(body))
        shape = of_body(kind, document)
        if not self.shape:
            self.shape = shape  # the first event with a body is the baseline
        elif shape != self.shape and not covers(self.shape, shape):  # equal: the common case
            found = diff(self.shape, shape)
            if found:
                self._flag(event, when, found)
            self.shape = merge(self.shape, shape)
        if kind in ("json", "text"):
            self.newest = (event, kind, document)

    def _flag(self, event: dict[str, Any], when: dt.datetime, changes: list[Change]) -> None:
        listed = [change_data(c) for c in changes[:MAX_CHANGES]]
        more = len(changes) - len(listed)
        entry = {"event_id": event["id"], "at": when.isoformat(), "changes": listed, "more": more}
        self.recent = [entry, *self.recent][:RECENT_CHANGES]
        self.changes.append(
            {
                "type_key": self.row["type_key"],
                "event_id": event["id"],
                "at": when,
                "changes": _dumps({"changes": listed, "more": more}),
            }
        )
        self.row["changes"] += 1
        self.row["last_change_at"] = when

    def finish(self) -> dict[str, Any]:
        """The row to store."""
        row = self.row
        if self.newest is not None:
            event, kind, document = self.newest
            row["sample"] = _dumps(sample(kind, document, bytes(event["body"])))
            row["sample_event_id"] = event["id"]
        busiest = sorted(self.routes.items(), key=lambda kv: (-kv[1], kv[0]))
        row["routing_keys"] = _dumps([[k, n] for k, n in busiest])
        row["shape"] = _dumps(to_data(self.shape))
        row["recent_changes"] = _dumps(self.recent)
        for name in ("first_seen", "last_seen", "last_change_at"):
            if row[name] is not None:
                row[name] = utc(row[name])
        return row


class TypeCatalog(CatalogFollower):
    name = "type catalog"
    tables = "types"
    batch = BATCH
    # Caught up, each type's row is rewritten at most once a second, so a steady stream of
    # small commits does not churn the catalog's rows.
    caught_up_every = CAUGHT_UP_EVERY
    _pruned_at = 0.0  # when the last batch pruned old rate buckets (clock time)

    async def count(self, rows: list[dict[str, Any]]) -> CatalogWrite:
        return await self._count(rows)

    def saved(self, counts: CatalogWrite) -> None:
        if counts.prune_before is not None:
            self._pruned_at = self.clock()

    async def _count(self, rows: list[dict[str, Any]]) -> CatalogWrite:
        now = self.clock()
        oldest_minute = int(now // 60) - KEEP_MINUTES
        counted = [(group_of(r), r) for r in rows if r["dead_letter"] is None]
        known = await self.store.types.known([key for (key, _, _), _ in counted])
        states: dict[int, TypeState] = {}
        write = CatalogWrite()
        since_yield = 0
        for (key, kind, name), event in counted:
            state = states.get(key)
            if state is None:
                state = states[key] = TypeState.of(known.get(key), key, kind, name)
            when = utc(event["received_at"])
            state.add(event, when)
            minute = int(when.timestamp() // 60)
            if minute >= oldest_minute:
                write.buckets[(key, minute)] = write.buckets.get((key, minute), 0) + 1
            since_yield += len(event.get("body") or b"") + 1000
            if since_yield >= YIELD_EVERY_BYTES:  # let the recorder and the pages run
                await asyncio.sleep(0)
                since_yield = 0
        for state in states.values():
            write.types.append(state.finish())
            write.changes.extend(state.changes)
        if now - self._pruned_at >= PRUNE_EVERY:
            write.prune_before = oldest_minute
        return write
