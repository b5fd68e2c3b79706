"""The dead letters the recorder stored, newest first, for `/dlq` (backend/dead_letters.py
groups them).

Dead letters are a small share of a bus, so the page reads the newest `scan` of them that the
filter selects (the search's filter language, as SQL through the dead-letter index in one
statement; header and field filters through the search's bounded scan) and says when there
were more; headers are read for every one (x-death, error headers), bodies only for the
seed's `dlq.<key>` wrappers and only up to `MAXWRAPPER_BODY`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, null, select

from eventscope.backend.filters import EventFilter
from eventscope.backend.store.engine import as_dicts
from eventscope.backend.store.models import events
from eventscope.backend.store.paging import NEWEST_FIRST, Cursor

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

MAX_SCAN = 2000  # grouped per page load; past that the page says so (see docs/performance.md)
PAGE = 500
MAX_SCANS = 20  # header and field filters: bounded scans per page load
MAXWRAPPER_BODY = 64 * 1024  # a dlq.<key> wrapper read for its error and retries

WRAPPER_BODY = case(
    (
        (events.c.dead_letter == "dlq-key") & (events.c.body_size <= MAXWRAPPER_BODY),
        events.c.body,
    ),
    else_=null(),
).label("body")
# What grouping and the member list read of each dead letter.
_COLUMNS = (
    events.c.id,
    events.c.commit_seq,
    events.c.received_at,
    events.c.exchange,
    events.c.routing_key,
    events.c.dead_letter,
    events.c.event_type,
    events.c.correlation_id,
    events.c.aggregate_type,
    events.c.aggregate_id,
    events.c.aggregate_version,
    events.c.headers,
    events.c.captured_from,
    events.c.message_id_key,
    WRAPPER_BODY,
)
_DETAIL = (
    events.c.id,
    events.c.headers,
    events.c.captured_from,
    events.c.message_id_key,
    WRAPPER_BODY,
)


@dataclass(frozen=True)
class DeadLetterRows:
    rows: list[dict[str, Any]]  # newest first: the summary columns, headers, wrapper bodies
    more: bool  # more dead letters match than were read


class DeadLetterQueries:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def newest(self, f: EventFilter, scan: int = MAX_SCAN) -> DeadLetterRows:
        """The newest `scan` stored dead letters (x-death copies, retries among them, and
        `dlq.` messages) that `f` selects."""
        wanted = replace(f, dead_letter=True)
        if not (f.headers or f.fields):  # the filter is SQL: one statement, newest first
            where = await self.store.search.conditions(wanted)
            query = select(*_COLUMNS).where(*where).order_by(*NEWEST_FIRST).limit(scan + 1)
            async with self.store.engine.connect() as conn:
                newest = as_dicts(await conn.execute(query))
            return DeadLetterRows(newest[:scan], len(newest) > scan)
        rows: list[dict[str, Any]] = []
        older: Cursor | None = None
        more = False
        for _ in range(MAX_SCANS):  # each a bounded scan: a filter matching little stops here
            found = await self.store.search.page(
                wanted, min(PAGE, scan - len(rows)) or 1, older_than=older
            )
            rows += found.page.rows
            older = found.page.older
            if older is None:
                break
            if len(rows) >= scan:
                more = True
                break
        else:
            more = True
        rows = rows[:scan]
        details = await self._details([int(r["id"]) for r in rows])
        return DeadLetterRows([{**r, **details.get(int(r["id"]), {})} for r in rows], more)

    async def held_copies(self, rows: Sequence[Mapping[str, Any]]) -> dict[int, int]:
        """For the tap's copies among `rows` (dead letters, with `exchange`, `routing_key`,
        `headers`, `message_id_key`), the id of the copy eventscope took from an owned queue,
        if it took one: same exchange, routing key and headers (x-death's time and count make
        each death distinct). Looked up through the message id index."""
        taps = [
            r
            for r in rows
            if r.get("captured_from") is None
            and r.get("dead_letter") is not None
            and r.get("message_id_key") is not None
        ]
        if not taps:
            return {}
        keys = sorted({int(r["message_id_key"]) for r in taps})
        owned: dict[tuple[Any, ...], int] = {}
        async with self.store.engine.connect() as conn:
            for start in range(0, len(keys), PAGE):
                query = select(
                    events.c.id, events.c.exchange, events.c.routing_key, events.c.headers
                ).where(
                    events.c.message_id_key.in_(keys[start : start + PAGE]),
                    events.c.captured_from.is_not(None),
                )
                for row in as_dicts(await conn.execute(query)):
                    owned.setdefault(_identity(row), int(row["id"]))
        return {int(r["id"]): owned[_identity(r)] for r in taps if _identity(r) in owned}

    async def _details(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        async with self.store.engine.connect() as conn:
            for start in range(0, len(ids), PAGE):
                query = select(*_DETAIL).where(events.c.id.in_(ids[start : start + PAGE]))
                for row in as_dicts(await conn.execute(query)):
                    out[int(row["id"])] = row
        return out


def _identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row.get("exchange"), row.get("routing_key"), row.get("headers"))
