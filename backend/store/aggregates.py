"""Aggregates in the store: one aggregate's events, exactly matched, and the aggregate catalog.

An aggregate is named by its type and id as a reader gives them (a link, a URL, the API). Its
events are found through `aggregate_key` (a 64-bit hash of the full type and id) *and* the
display type and id compared as text, like every exact id filter (search.py): a hash collision,
a prefix or a look-alike never joins two aggregates. An id whose display form differs from what
was sent (a NUL, more than 1024 characters) is reached with the stored key given explicitly.

The catalog (`aggregates`, one row per aggregate) is written only by the aggregate catalog
(backend/aggregate_catalog.py), in one transaction per batch that also moves
`aggregate_catalog_progress` by compare-and-set, as the type catalog does (types.py). The list
page reads a bounded number of catalog rows through its indexes, never the events.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, or_, select, true

from eventscope.backend.envelope import aggregate_key, id_key, id_text
from eventscope.backend.store.catalogs import FollowsEvents, save_with_progress, start_over
from eventscope.backend.store.events import PG_HORIZON
from eventscope.backend.store.models import aggregate_catalog_progress, aggregates, events
from eventscope.backend.store.paging import OLDEST_FIRST, Cursor

ID_PREFIX_CHARS: Final = 64
COUNT_CAP: Final = 10_000
# What the fold reads of each event (backend/aggregates/history.py, RecordedEvent.from_row).
FOLD_COLUMNS = (
    events.c.id,
    events.c.commit_seq,
    events.c.received_at,
    events.c.body,
    events.c.event_id,
    events.c.event_type,
    events.c.aggregate_type,
    events.c.aggregate_id,
    events.c.aggregate_version,
    events.c.occurred_at,
    events.c.dead_letter,
    events.c.routing_key,
    events.c.body_size,
    events.c.body_truncated,
)
_PENDING = (
    events.c.id,
    events.c.commit_seq,
    events.c.received_at,
    events.c.aggregate_key,
    events.c.aggregate_type,
    events.c.aggregate_id,
    events.c.aggregate_version,
    events.c.event_type,
    events.c.dead_letter,
)
_CATALOG_COLUMNS = tuple(c.name for c in aggregates.columns)
_MAX: Final = "CASE WHEN excluded.{c} IS NOT NULL AND (aggregates.{c} IS NULL OR excluded.{c} > aggregates.{c}) THEN excluded.{c} ELSE aggregates.{c} END"  # noqa: E501
_MIN: Final = "CASE WHEN excluded.{c} < aggregates.{c} THEN excluded.{c} ELSE aggregates.{c} END"
_UPSERT = (
    f"INSERT INTO aggregates ({', '.join(_CATALOG_COLUMNS)}) "  # noqa: S608 - fixed names
    f"VALUES ({', '.join(':' + c for c in _CATALOG_COLUMNS)}) "
    "ON CONFLICT (aggregate_key) DO UPDATE SET "
    "events = aggregates.events + excluded.events, "
    "dead_letters = aggregates.dead_letters + excluded.dead_letters, "
    f"max_version = {_MAX.format(c='max_version')}, "
    f"first_seen = {_MIN.format(c='first_seen')}, "
    f"last_seen = {_MAX.format(c='last_seen')}, "
    # Batches are counted in commit order: a batch's last event is the newest.
    "last_event_id = excluded.last_event_id, last_event_type = excluded.last_event_type"
)
_CURSOR = re.compile(r"^(-?\d{1,20})(?:_(-?\d{1,20}))?$")


@dataclass(frozen=True)
class AggregateRef:
    """One aggregate as a reader names it: its type (None: events without a type), its id, and
    its key (computed from both unless given: ids whose stored form differs from what was sent
    are reached by their stored key)."""

    aggregate_type: str | None
    aggregate_id: str
    key: int

    @classmethod
    def of(
        cls, aggregate_type: str | None, aggregate_id: str, key: int | None = None
    ) -> AggregateRef:
        found = aggregate_key(aggregate_type, aggregate_id) if key is None else key
        assert found is not None  # an id is given
        return cls(aggregate_type, aggregate_id, found)

    def conditions(self) -> list[ColumnElement[bool]]:
        """The exact match: key, type and id (display forms) all equal."""
        kind = id_text(self.aggregate_type)
        return [
            events.c.aggregate_key == self.key,
            events.c.aggregate_type.is_(None) if kind is None else events.c.aggregate_type == kind,
            events.c.aggregate_id == id_text(self.aggregate_id),
        ]

    def owns(self, row: dict[str, Any]) -> bool:
        """Whether a stored row belongs to this aggregate (the same match, in memory)."""
        return (
            row.get("aggregate_key") == self.key
            and row.get("aggregate_type") == id_text(self.aggregate_type)
            and row.get("aggregate_id") == id_text(self.aggregate_id)
        )


@dataclass(frozen=True)
class CatalogQuery:
    """Which aggregates the list shows: of one type, whose id starts with `prefix` (then in id
    order, else newest first), last seen in a time range; `before` continues a page."""

    aggregate_type: str | None = None
    prefix: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before: str | None = None
    limit: int = 100


@dataclass(frozen=True)
class CatalogPage:
    rows: list[dict[str, Any]]
    next_before: str | None  # the cursor of the next page
    total: int  # matching aggregates, exactly up to COUNT_CAP
    capped: bool


@dataclass
class CatalogWrite:
    """One batch's counts per aggregate (whole rows, added to the stored ones)."""

    rows: list[dict[str, Any]]


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """The range of `id_prefix` values that start with `prefix` in byte order (the catalog's
    collation): [prefix, prefix with its last character incremented); None when that
    character is the last of its plane block (the caller checks the prefix itself)."""
    head = prefix[:ID_PREFIX_CHARS]
    code = ord(head[-1]) + 1
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return head, None
    return head, head[:-1] + chr(code)


class AggregateQueries(FollowsEvents):
    progress_table = aggregate_catalog_progress
    pending_columns = _PENDING

    # --- one aggregate's events -----------------------------------------------------------

    async def horizon(self) -> int:
        """A commit sequence number below which every event is committed and visible to any
        later read: on Postgres the oldest transaction still running (PG_HORIZON), on SQLite
        (one writer, commit order is sequence order) past the newest. Read it *before* the
        rows it bounds."""
        async with self.store.engine.connect() as conn:
            if self.store.is_sqlite:
                newest = await conn.scalar(select(func.max(events.c.commit_seq)))
                return int(newest or 0) + 1
            return int(await conn.scalar(select(PG_HORIZON)) or 0)

    async def rows(
        self, ref: AggregateRef, *, from_seq: int = 0, limit: int
    ) -> list[dict[str, Any]]:
        """The aggregate's events committed at or after `from_seq`, in commit order, at most
        `limit` (bodies included: what the fold reads)."""
        query = select(*FOLD_COLUMNS).where(*ref.conditions())
        if from_seq > 0:
            query = query.where(events.c.commit_seq >= from_seq)
        query = query.order_by(*OLDEST_FIRST).limit(limit)
        async with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    # --- the catalog: writing, behind ingest ----------------------------------------------

    async def save(self, write: CatalogWrite, start: Cursor, end: Cursor) -> bool:
        """Add one batch's counts and move the progress from `start` to `end`, in one
        transaction; False (nothing written) when the progress is no longer at `start`."""
        rows = sorted(write.rows, key=lambda r: r["aggregate_key"])  # one lock order for all
        return await save_with_progress(
            self.store, aggregate_catalog_progress, start, end, [(_UPSERT, rows)]
        )

    async def reset(self) -> None:
        """Forget the catalog and count every event again (store/catalogs.py)."""
        await start_over(self.store, (aggregates,), aggregate_catalog_progress)

    # --- the catalog: reading -------------------------------------------------------------

    async def one(self, key: int) -> dict[str, Any] | None:
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(select(aggregates).where(aggregates.c.aggregate_key == key))
            ).first()
        return dict(row._mapping) if row else None

    async def page(self, q: CatalogQuery) -> CatalogPage:
        """A page of the catalog: newest first, or in id order when searching by prefix;
        keyset-paged, with a count capped at COUNT_CAP."""
        where = self._filters(q)
        by_prefix = bool(q.prefix)
        order: tuple[ColumnElement[Any], ...]
        if by_prefix:
            order = (aggregates.c.id_prefix, aggregates.c.aggregate_key)
        else:
            order = (aggregates.c.last_seen.desc(), aggregates.c.aggregate_key.desc())
        query = select(aggregates).where(and_(true(), *where))
        async with self.store.engine.connect() as conn:
            if q.before:
                query = query.where(await self._continue(conn, q.before, by_prefix))
            found = [
                dict(r._mapping)
                for r in await conn.execute(query.order_by(*order).limit(q.limit + 1))
            ]
            capped = select(aggregates.c.aggregate_key).where(and_(true(), *where))
            total = await conn.scalar(
                select(func.count()).select_from(capped.limit(COUNT_CAP + 1).subquery())
            )
        rows = found[: q.limit]
        next_before = None
        if len(found) > q.limit:
            last = rows[-1]
            next_before = (
                str(last["aggregate_key"])
                if by_prefix
                else f"{_micros(last['last_seen'])}_{last['aggregate_key']}"
            )
        count = int(total or 0)
        return CatalogPage(rows, next_before, min(count, COUNT_CAP), count > COUNT_CAP)

    def _filters(self, q: CatalogQuery) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if q.aggregate_type is not None:
            kind = id_text(q.aggregate_type)
            where += [aggregates.c.type_key == id_key(kind), aggregates.c.aggregate_type == kind]
        if q.since is not None:
            where.append(aggregates.c.last_seen >= q.since)
        if q.until is not None:
            where.append(aggregates.c.last_seen <= q.until)
        if q.prefix:
            prefix = id_text(q.prefix) or ""
            low, high = prefix_bounds(prefix)
            where.append(aggregates.c.id_prefix >= low)
            if high is not None:
                where.append(aggregates.c.id_prefix < high)
            head = prefix[:ID_PREFIX_CHARS]
            where.append(func.substr(aggregates.c.id_prefix, 1, len(head)) == head)
            if len(prefix) > ID_PREFIX_CHARS:
                where.append(func.substr(aggregates.c.aggregate_id, 1, len(prefix)) == prefix)
        return where

    async def _continue(self, conn: Any, cursor: str, by_prefix: bool) -> ColumnElement[bool]:
        """Rows after the page that ended at `cursor`."""
        found = _CURSOR.match(cursor.strip())
        if found is None or (found.group(2) is None) != by_prefix:
            raise ValueError(f"{cursor[:40]!r} is not a cursor of this list")
        if by_prefix:
            key = int(found.group(1))
            prefix = await conn.scalar(
                select(aggregates.c.id_prefix).where(aggregates.c.aggregate_key == key)
            )
            if prefix is None:
                raise ValueError(f"{cursor[:40]!r}: that aggregate is no longer listed")
            return and_(  # (the first bound lets the index start there)
                aggregates.c.id_prefix >= prefix,
                or_(
                    aggregates.c.id_prefix > prefix,
                    and_(aggregates.c.id_prefix == prefix, aggregates.c.aggregate_key > key),
                ),
            )
        try:
            when = dt.datetime(1, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
                microseconds=int(found.group(1))
            )
        except OverflowError:
            raise ValueError(f"{cursor[:40]!r} is out of range") from None
        key = int(found.group(2))
        return and_(
            aggregates.c.last_seen <= when,
            or_(
                aggregates.c.last_seen < when,
                and_(aggregates.c.last_seen == when, aggregates.c.aggregate_key < key),
            ),
        )


def _micros(value: dt.datetime) -> int:
    """A time as microseconds since 0001-01-01 UTC (cursors: exact, and no float rounding)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def catalog_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counts of a batch of events (commit order), one row per aggregate, ready to add."""
    out: dict[int, dict[str, Any]] = {}
    for event in rows:
        key = event["aggregate_key"]
        if key is None or event["aggregate_id"] is None:
            continue
        when = event["received_at"]
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        row = out.get(key)
        if row is None:
            kind, ident = event["aggregate_type"], event["aggregate_id"]
            row = out[key] = {
                "aggregate_key": key,
                "aggregate_type": kind,
                "aggregate_id": ident,
                "type_key": id_key(kind),
                "id_prefix": ident[:ID_PREFIX_CHARS],
                "events": 0,
                "dead_letters": 0,
                "max_version": None,
                "first_seen": when,
                "last_seen": when,
                "first_event_id": event["id"],
                "last_event_id": event["id"],
                "last_event_type": None,
            }
        row["events"] += 1
        version = event["aggregate_version"]
        if event["dead_letter"] is not None:
            row["dead_letters"] += 1
        elif version is not None and (row["max_version"] is None or version > row["max_version"]):
            row["max_version"] = version
        row["first_seen"] = min(row["first_seen"], when)
        row["last_seen"] = max(row["last_seen"], when)
        row["last_event_id"] = event["id"]
        row["last_event_type"] = event["event_type"]
    return list(out.values())
