"""One correlation's events, for traces: pages in event-time order, an exact summary, the
causes a page names, and the list of recent correlations.

Matching is exact: the correlation index's 64-bit key of the full id *and* the display text
(`envelope.id_key`, `id_text`), so a prefix or a look-alike never joins another trace.

Order and paging. A trace is read in event time — occurred-at, else received-at — then commit
order: `(coalesce(occurred_at, received_at), commit_seq, id)`, keyset-paged on that triple
(`TraceCursor`). No index holds that order; the correlation index (`correlation_key,
commit_seq, id`) finds the correlation's rows and the database sorts them, keeping only the
page (a top-N sort: memory for one page, time linear in the correlation's size). Paging by
commit order through the index would stop early, but events do not commit in the order they
happened (retries, other producers, dead letters arriving late), and a waterfall in the wrong
order misleads; for the sizes a trace has (10,000 events) the sort costs milliseconds.

The summary (count, first and last time, services, dead letters, retries) is exact: aggregate
SQL over the same rows, grouped by service. Recent correlations are the distinct ids among the
newest `scan` events the filter selects, each summarised over at most `cap` of its rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

from eventscope.backend.envelope import id_key, id_text
from eventscope.backend.filters import EventFilter
from eventscope.backend.store.correlations import DEATH_HEADERS, EVENT_AT
from eventscope.backend.store.engine import as_dicts
from eventscope.backend.store.models import (
    SUMMARY_COLUMNS,
    correlation_catalog_progress,
    correlation_services,
    events,
)
from eventscope.backend.store.paging import MAX_ROW_ID, NEWEST_FIRST, OLDEST_FIRST, Cursor
from eventscope.backend.trace import role_of

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

MAX_PAGE = 1000
MAX_SERVICES = 1000  # services listed in a summary (the total is always counted)
MAX_DEATHS_READ = 2_000  # x-death rows read to tell retries from dead letters
MAX_CAUSES = 500  # causation ids looked up beyond a page
RECENT_SCAN = 2000  # newest matching events the correlation list looks at
RECENT_CAP = 1000  # rows summarised per listed correlation (the trace counts them all)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_CURSOR = re.compile(r"^(-?\d{1,18})_(\d{1,19})-(\d{1,19})$")

TRACE_COLUMNS = (*SUMMARY_COLUMNS, EVENT_AT.label("event_at"), DEATH_HEADERS.label("death_headers"))


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands datetimes back naive; everything stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(frozen=True, order=True)
class TraceCursor:
    """A position in a trace: after every row whose (event time, commit_seq, id) is <= this.
    Written `"<µs since 1970>_<seq>-<id>"`."""

    at: dt.datetime
    seq: int
    id: int

    def __str__(self) -> str:
        return f"{(self.at - _EPOCH) // _MICROSECOND}_{self.seq}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> TraceCursor:
        """Raises ValueError with a message a user can act on."""
        found = _CURSOR.match(text.strip())
        if found is None:
            raise ValueError(f"{text[:40]!r} is not a trace cursor (expected <µs>_<seq>-<id>)")
        micros, seq, row = (int(g) for g in found.groups())
        if seq > MAX_ROW_ID or row > MAX_ROW_ID:
            raise ValueError(f"{text[:40]!r} is out of range")
        try:
            at = _EPOCH + dt.timedelta(microseconds=micros)
        except OverflowError:
            raise ValueError(f"{text[:40]!r} is out of range") from None
        return cls(at, seq, row)

    @classmethod
    def of(cls, row: dict[str, Any]) -> TraceCursor:
        at = utc(row["event_at"])
        assert at is not None
        return cls(at, int(row["commit_seq"]), int(row["id"]))


@dataclass(frozen=True)
class Service:
    source: str | None
    events: int
    first_at: dt.datetime | None


@dataclass(frozen=True)
class TraceSummary:
    """What a correlation holds. Exact unless `capped` (then counted over its first `cap`
    rows in commit order, and `events` is a lower bound)."""

    events: int
    first_at: dt.datetime | None
    last_at: dt.datetime | None
    services: tuple[Service, ...]  # in order of first appearance, at most MAX_SERVICES
    services_total: int
    dead_letters: int  # failures: x-death copies that are not retries, and dlq.<key> wrappers
    retries: int  # x-death copies back on a working exchange after a TTL
    capped: bool = False
    newest: Cursor | None = None  # the correlation's newest row in commit order

    @property
    def duration(self) -> dt.timedelta:
        if self.first_at is None or self.last_at is None:
            return dt.timedelta(0)
        return self.last_at - self.first_at


EMPTY = TraceSummary(0, None, None, (), 0, 0, 0)


@dataclass(frozen=True)
class TracePage:
    """One page of a trace, in event-time order, with what building it needs."""

    summary: TraceSummary
    rows: list[dict[str, Any]]
    next: TraceCursor | None  # pass as `after` for the next page
    previous_at: dt.datetime | None  # the time of the row just before this page
    outside: list[dict[str, Any]] = field(default_factory=list)  # causes beyond this page


@dataclass(frozen=True)
class Correlation:
    """One entry of the recent correlations list."""

    correlation_id: str
    summary: TraceSummary
    last_seen: dt.datetime | None = None


def matching(correlation: str) -> list[ColumnElement[bool]]:
    """Exactly this correlation id: the indexed key of the whole value and its display text."""
    return [
        events.c.correlation_key == id_key(correlation),
        events.c.correlation_id == id_text(correlation),
    ]


class TraceQueries:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def summary(self, correlation: str) -> TraceSummary:
        """The exact summary of one correlation (EMPTY when no event carries it)."""
        return (await self.page(correlation, 0)).summary

    async def page(
        self, correlation: str, limit: int, after: TraceCursor | None = None
    ) -> TracePage:
        """The exact summary and `limit` events after `after` in event-time order, with the
        events beyond the page that its rows name as cause or original.

        One statement (one snapshot) reads the correlation catalog's rows, the events committed
        since its progress, the newest event and the page's positions (a range of the
        event-time index); a second fetches the page's full rows. A key the catalog cannot
        vouch for (two ids share it) is summarised by reading its events (`_page_by_scan`)."""
        limit = max(0, min(limit, MAX_PAGE))
        key, ident = id_key(correlation), id_text(correlation)
        if key is None or ident is None:
            return TracePage(EMPTY, [], None, None)
        async with self.store.engine.connect() as conn:
            params: dict[str, Any] = {"key": key, "ident": ident, "limit_1": limit + 1}
            if after is not None:
                params |= {"after_at": self._time(after.at), "after_seq": after.seq}
                params["after_id"] = after.id
            statement = _catalogued(limit > 0, after is not None)
            found = as_dicts(await conn.execute(statement, params))
            by_kind: dict[str, list[dict[str, Any]]] = {}
            for row in found:
                by_kind.setdefault(row["kind"], []).append(row)
            counted = by_kind["kc"][0]
            if counted["ref_seq"]:  # another id (or service name) shares these keys
                return await self._page_by_scan(conn, correlation, limit, after)
            deaths = [int(r["ref_id"]) for r in by_kind.get("x", [])]
            summary = _merged_summary(
                by_kind, await self._retries(conn, deaths), len(deaths) >= MAX_DEATHS_READ
            )
            if not summary.events:
                return TracePage(EMPTY, [], None, None)
            positions = sorted(  # (a compound SELECT promises no order across its arms)
                by_kind.get("p", []),
                key=lambda r: (_sortable(r["first_at"]), r["ref_seq"], r["ref_id"]),
            )
            more = len(positions) > limit
            page_ids = [int(r["ref_id"]) for r in positions[:limit]]
            full = await self._rows(conn, page_ids)
            rows = [full[i] for i in page_ids if i in full]
            outside = await self._causes(conn, key, ident, rows) if (more or after) else []
        return TracePage(
            summary,
            rows,
            TraceCursor.of(rows[-1]) if more and rows else None,
            after.at if after is not None else None,
            outside,
        )

    async def _causes(
        self, conn: AsyncConnection, key: int, ident: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The correlation's events beyond this page that its rows name: causes (by event id,
        then message id) and the originals of its dead-letter copies. Names found on the page
        need nothing; the rest are looked up by message id through its index first, and only
        what is still missing by event id among the correlation's events."""
        on_page = {r["id"] for r in rows}
        known = {r.get("event_id") for r in rows} | {r.get("message_id") for r in rows}
        wanted = {r["causation_id"] for r in rows if r.get("causation_id")}
        wanted |= {r["event_id"] for r in rows if r.get("dead_letter") and r.get("event_id")}
        wanted -= known
        if not wanted:
            return []
        names = sorted(wanted)[:MAX_CAUSES]
        mine = matching_stored(key, ident)
        by_message = select(events.c.id).where(
            events.c.message_id_key.in_(sorted({k for n in names if (k := id_key(n)) is not None})),
            events.c.message_id.in_(names),
            *mine,
        )
        found = {int(r["id"]) for r in await _all(conn, by_message.limit(MAX_CAUSES))}
        extra = await self._rows(conn, sorted(found - on_page))
        seen = {r.get("message_id") for r in extra.values()} | {
            r.get("event_id") for r in extra.values()
        }
        missing = [n for n in names if n not in seen]
        if missing:  # (orphans end up here: a cause never recorded is looked for once)
            by_event = select(events.c.id).where(events.c.event_id.in_(missing), *mine)
            more = {int(r["id"]) for r in await _all(conn, by_event.limit(MAX_CAUSES))}
            extra.update(await self._rows(conn, sorted(more - on_page - set(extra))))
        return list(extra.values())[:MAX_CAUSES]

    async def _page_by_scan(
        self,
        conn: AsyncConnection,
        correlation: str,
        limit: int,
        after: TraceCursor | None,
    ) -> TracePage:
        """`page` for a key the catalog cannot vouch for: one statement reads the
        correlation's rows once (a CTE: times, services, ids) and answers everything from it;
        a second fetches the page's full rows by primary key."""
        found = await _all(conn, self._scan(matching(correlation), limit, after))
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for row in found:
            by_kind.setdefault(row["kind"], []).append(row)
        if not by_kind.get("t") or not by_kind["t"][0]["n"]:
            return TracePage(EMPTY, [], None, None)
        positions = sorted(
            by_kind.get("p", []),
            key=lambda r: (_sortable(r["first_at"]), r["ref_seq"], r["ref_id"]),
        )
        more = len(positions) > limit
        page_ids = [int(r["ref_id"]) for r in positions[:limit]]
        cause_ids = [int(r["ref_id"]) for r in by_kind.get("c", [])]
        full = await self._rows(conn, [*page_ids, *cause_ids])
        deaths = [int(r["ref_id"]) for r in by_kind.get("x", [])]
        retries = await self._retries(conn, deaths)
        summary = _summary_of(by_kind, retries, len(deaths) >= MAX_DEATHS_READ)
        rows = [full[i] for i in page_ids if i in full]
        return TracePage(
            summary,
            rows,
            TraceCursor.of(rows[-1]) if more and rows else None,
            after.at if after is not None else None,
            [full[i] for i in cause_ids if i in full] if (more or after) else [],
        )

    def _scan(self, where: list[ColumnElement[bool]], limit: int, after: TraceCursor | None) -> Any:
        """The one-pass statement of `page`: rows of kind t (totals), g (per service), p (page
        positions), n (newest in commit order), x (x-death copies), c (causes off the page)."""
        c = (
            select(
                events.c.id,
                events.c.commit_seq,
                EVENT_AT.label("at"),
                events.c.source,
                events.c.dead_letter,
                events.c.event_id,
                events.c.message_id,
                events.c.causation_id,
            )
            .where(*where)
            .cte("c")
        )
        page = select(
            c.c.id, c.c.commit_seq, c.c.at, c.c.event_id, c.c.causation_id, c.c.dead_letter
        )
        if after is not None:
            at = bindparam("after_at", self._time(after.at), type_=events.c.received_at.type)
            page = page.where(
                or_(
                    c.c.at > at,
                    and_(
                        c.c.at == at,
                        or_(
                            c.c.commit_seq > after.seq,
                            and_(c.c.commit_seq == after.seq, c.c.id > after.id),
                        ),
                    ),
                )
            )
        p = page.order_by(c.c.at, c.c.commit_seq, c.c.id).limit(limit + 1).cte("p")
        x_death = case((c.c.dead_letter == "x-death", 1), else_=0)
        totals = select(
            *_columns(
                "t",
                n=func.count(),
                first_at=func.min(c.c.at),
                last_at=func.max(c.c.at),
                dead=func.count(c.c.dead_letter),
                x_deaths=func.sum(x_death),
                ref_id=func.count(func.distinct(c.c.source)),
                ref_seq=func.max(case((c.c.source.is_(None), 1), else_=0)),
            )
        )
        groups = (
            select(
                *_columns(
                    "g",
                    source=c.c.source,
                    n=func.count(),
                    first_at=func.min(c.c.at),
                    last_at=func.max(c.c.at),
                    dead=func.count(c.c.dead_letter),
                    x_deaths=func.sum(x_death),
                )
            )
            .group_by(c.c.source)
            .order_by(func.min(c.c.at), c.c.source)
            .limit(MAX_SERVICES)
        )

        def ids(kind: str, query: Select[Any]) -> Select[Any]:
            inner = query.subquery()
            return select(*_columns(kind, ref_id=inner.c.id, ref_seq=inner.c.commit_seq))

        newest = (
            select(c.c.id, c.c.commit_seq).order_by(c.c.commit_seq.desc(), c.c.id.desc()).limit(1)
        )
        deaths = (
            select(c.c.id, c.c.commit_seq)
            .where(c.c.dead_letter == "x-death")
            .limit(MAX_DEATHS_READ)
        )
        named = select(p.c.causation_id).where(p.c.causation_id.is_not(None))
        copied = select(p.c.event_id).where(p.c.dead_letter.is_not(None), p.c.event_id.is_not(None))
        causes = (
            select(c.c.id, c.c.commit_seq)
            .where(
                or_(
                    c.c.event_id.in_(named.scalar_subquery()),
                    c.c.message_id.in_(named.scalar_subquery()),
                    c.c.event_id.in_(copied.scalar_subquery()),
                ),
                c.c.id.not_in(select(p.c.id).scalar_subquery()),
            )
            .limit(MAX_CAUSES)
        )
        positions = select(*_columns("p", first_at=p.c.at, ref_id=p.c.id, ref_seq=p.c.commit_seq))
        arms = [totals, _arm(groups), ids("n", newest), ids("x", deaths)]
        if limit:
            arms += [positions, ids("c", causes)]
        return union_all(*arms)

    async def _rows(self, conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        query = select(*TRACE_COLUMNS).where(events.c.id.in_(sorted(set(ids))))
        return {row["id"]: row for row in await _all(conn, query)}

    async def _retries(self, conn: AsyncConnection, ids: list[int]) -> int:
        """How many of these x-death copies are retries (their headers decide)."""
        retries = 0
        for start in range(0, len(ids), 1000):
            query = select(
                events.c.exchange, events.c.routing_key, DEATH_HEADERS.label("death_headers")
            ).where(events.c.id.in_(ids[start : start + 1000]))
            for row in await _all(conn, query):
                retries += role_of({**row, "dead_letter": "x-death"}) == "retry"
        return retries

    def _time(self, value: dt.datetime) -> dt.datetime:
        """A bound time as the dialect stores it (SQLite: naive UTC text)."""
        return value.astimezone(dt.UTC).replace(tzinfo=None) if self.store.is_sqlite else value

    async def recent(
        self,
        f: EventFilter | None = None,
        *,
        limit: int = 50,
        scan: int = RECENT_SCAN,
        cap: int = RECENT_CAP,
    ) -> list[Correlation]:
        """Correlations among the newest `scan` events the filter selects, newest activity
        first, each with its exact summary from the correlation catalog; a key the catalog
        cannot vouch for is summarised over at most `cap` of its rows (`summary.capped` past
        that)."""
        async with self.store.engine.connect() as conn:
            candidates = await self._recent_ids(conn, f, scan)
            chosen = candidates[: max(1, limit)]
            if not chosen:
                return []
            exact = await self._catalogued_summaries(conn, chosen)
            rest = [(i, c) for i, c in enumerate(chosen) if (c[0], c[1]) not in exact]
            arms = [
                grouped(matching_stored(key, text), cap)
                .order_by(None)  # a compound SELECT's arms take no ORDER BY (SQLite)
                .add_columns(literal(i).label("slot"))
                for i, (key, text, _) in rest
            ]
            found: dict[int, list[dict[str, Any]]] = {}
            for start in range(0, len(arms), 100):  # compound SELECT limits (SQLite: 500)
                part = arms[start : start + 100]
                query = union_all(*part) if len(part) > 1 else part[0]
                for row in await _all(conn, query):
                    found.setdefault(int(row["slot"]), []).append(row)
            retries = await self._recent_retries(conn, [c for _, c in rest]) if rest else {}
        out = []
        for i, (key, text, seen) in enumerate(chosen):
            known = exact.get((key, text))
            if known is not None:
                if known.events:
                    out.append(Correlation(text, known, utc(seen)))
                continue
            groups = sorted(found.get(i, []), key=lambda g: _sortable(g["first_at"]))
            if not groups:
                continue
            summary = summarise(groups[:MAX_SERVICES], cap, len(groups))
            tried = retries.get((key, text), 0)
            out.append(
                Correlation(
                    text,
                    TraceSummary(
                        summary.events,
                        summary.first_at,
                        summary.last_at,
                        summary.services,
                        summary.services_total,
                        max(0, summary.dead_letters - tried),
                        tried,
                        summary.capped,
                    ),
                    utc(seen),
                )
            )
        return out

    async def _catalogued_summaries(
        self, conn: AsyncConnection, chosen: Sequence[tuple[int, str, Any]]
    ) -> dict[tuple[int, str], TraceSummary]:
        """Exact summaries of these correlations from the catalog plus the events committed
        since its progress; a key the catalog cannot vouch for (`mixed`, another id) is left
        out. The catalog's rows and its progress are read in one statement (one snapshot):
        the catalog then counted exactly the events up to that progress, and the second
        statement adds every event after it."""
        keys = sorted({key for key, _, _ in chosen})
        wanted = {(key, text) for key, text, _ in chosen}
        cs, progress = correlation_services, correlation_catalog_progress
        counted = as_dicts(
            await conn.execute(
                select(
                    progress.c.commit_seq.label("p_seq"),
                    progress.c.event_id.label("p_id"),
                    *cs.c,
                ).select_from(progress.outerjoin(cs, cs.c.correlation_key.in_(keys)))
            )
        )
        if not counted:
            return {}
        seq, row_id = int(counted[0]["p_seq"]), int(counted[0]["p_id"])
        groups: dict[tuple[int, str], list[dict[str, Any]]] = {pair: [] for pair in wanted}
        retries: dict[tuple[int, str], int] = dict.fromkeys(wanted, 0)
        unsure: set[int] = set()
        for row in counted:
            if row["correlation_key"] is None:
                continue
            pair = (row["correlation_key"], row["correlation_id"])
            if row["mixed"] or pair not in wanted:
                unsure.add(row["correlation_key"])
                continue
            groups[pair].append(row)
            retries[pair] += int(row["retries"])
        since = (
            events.c.correlation_key.in_(keys),
            events.c.commit_seq >= seq,
            or_(events.c.commit_seq > seq, events.c.id > row_id),
        )
        x_death = case((events.c.dead_letter == "x-death", 1), else_=0)
        fresh = select(
            events.c.correlation_key,
            events.c.correlation_id,
            events.c.source,
            func.count().label("events"),
            func.min(EVENT_AT).label("first_at"),
            func.max(EVENT_AT).label("last_at"),
            func.count(events.c.dead_letter).label("dead"),
            func.sum(x_death).label("x_deaths"),
        ).where(*since)
        fresh = fresh.group_by(events.c.correlation_key, events.c.correlation_id, events.c.source)
        for row in await _all(conn, fresh):
            pair = (row["correlation_key"], row["correlation_id"])
            if pair in groups:
                groups[pair].append(row)
        deaths = select(
            events.c.correlation_key,
            events.c.correlation_id,
            events.c.exchange,
            events.c.routing_key,
            DEATH_HEADERS.label("death_headers"),
        ).where(*since, events.c.dead_letter == "x-death")
        for row in await _all(conn, deaths.limit(MAX_DEATHS_READ)):
            pair = (row["correlation_key"], row["correlation_id"])
            if pair in retries and role_of({**row, "dead_letter": "x-death"}) == "retry":
                retries[pair] += 1
        return {
            pair: _summed(rows, retries[pair])
            for pair, rows in groups.items()
            if pair[0] not in unsure
        }

    async def _recent_ids(
        self, conn: AsyncConnection, f: EventFilter | None, scan: int
    ) -> list[tuple[int, str, dt.datetime | None]]:
        """Distinct (key, text) of correlations among the newest matching events, newest
        first, with when each was last seen."""
        if f is not None and (f.headers or f.fields):
            page = await self.store.search.page(f, min(scan, MAX_PAGE))
            rows: Sequence[dict[str, Any]] = page.page.rows
        else:
            where = await self.store.search.conditions(f) if f is not None else []
            query = (
                select(events.c.correlation_key, events.c.correlation_id, events.c.received_at)
                .where(events.c.correlation_key.is_not(None), and_(true(), *where))
                .order_by(*NEWEST_FIRST)
                .limit(scan)
            )
            rows = await _all(conn, query)
        seen: dict[tuple[int, str], dt.datetime | None] = {}
        for row in rows:
            key, text = row["correlation_key"], row["correlation_id"]
            if key is not None and text is not None and (key, text) not in seen:
                seen[(key, text)] = row["received_at"]
        return [(key, text, at) for (key, text), at in seen.items()]

    async def _recent_retries(
        self, conn: AsyncConnection, chosen: Sequence[tuple[int, str, Any]]
    ) -> dict[tuple[int, str], int]:
        wanted = {(key, text) for key, text, _ in chosen}
        query = (
            select(
                events.c.correlation_key,
                events.c.correlation_id,
                events.c.exchange,
                events.c.routing_key,
                DEATH_HEADERS.label("death_headers"),
            )
            .where(
                events.c.correlation_key.in_(sorted({key for key, _ in wanted})),
                events.c.dead_letter == "x-death",
            )
            .limit(MAX_DEATHS_READ)
        )
        counts: dict[tuple[int, str], int] = {}
        for row in await _all(conn, query):
            ident = (row["correlation_key"], row["correlation_id"])
            if ident in wanted and role_of({**row, "dead_letter": "x-death"}) == "retry":
                counts[ident] = counts.get(ident, 0) + 1
        return counts


@functools.cache
def _catalogued(paged: bool, after: bool) -> Any:
    """The one-snapshot statement of `page`, built once per shape (parameters `key`, `ident`,
    `limit_1`, and `after_at`, `after_seq`, `after_id` when continuing): kc (catalog totals,
    and whether it can vouch for this id), k (catalog rows per service), dt and d (the same
    over events committed since the catalog's progress), x (their x-death copies), n (newest
    in commit order), p (the page's positions in event-time order)."""
    cs = correlation_services
    key = bindparam("key", type_=BigInteger)
    ident = bindparam("ident", type_=Text)
    unsure = case((or_(cs.c.mixed, cs.c.correlation_id != ident), 1), else_=0)
    mine = cs.c.correlation_key == key
    catalog_totals = select(
        *_columns(
            "kc",
            n=func.count(),
            first_at=func.min(cs.c.first_at),
            last_at=func.max(cs.c.last_at),
            dead=func.sum(cs.c.dead),
            x_deaths=func.sum(cs.c.events),  # (the events counted, in this arm)
            ref_id=func.sum(cs.c.retries),
            ref_seq=func.coalesce(func.max(unsure), 0),
        )
    ).where(mine)
    catalog_rows = (
        select(
            *_columns(
                "k",
                source=cs.c.source,
                n=cs.c.events,
                first_at=cs.c.first_at,
                last_at=cs.c.last_at,
                dead=cs.c.dead,
                x_deaths=cs.c.x_deaths,
                ref_id=cs.c.retries,
            )
        )
        .where(mine)
        .order_by(cs.c.first_at, cs.c.service_key)
        .limit(MAX_SERVICES)
    )
    progress = correlation_catalog_progress
    seq = select(progress.c.commit_seq).where(progress.c.id == 1).scalar_subquery()
    row_id = select(progress.c.event_id).where(progress.c.id == 1).scalar_subquery()
    since = [
        events.c.correlation_key == key,
        events.c.correlation_id == ident,
        events.c.commit_seq >= seq,
        or_(events.c.commit_seq > seq, events.c.id > row_id),
    ]
    x_death = case((events.c.dead_letter == "x-death", 1), else_=0)
    delta_totals = select(
        *_columns(
            "dt",
            n=func.count(),
            first_at=func.min(EVENT_AT),
            last_at=func.max(EVENT_AT),
            dead=func.count(events.c.dead_letter),
            x_deaths=func.sum(x_death),
        )
    ).where(*since)
    delta_rows = (
        select(
            *_columns(
                "d",
                source=events.c.source,
                n=func.count(),
                first_at=func.min(EVENT_AT),
                last_at=func.max(EVENT_AT),
                dead=func.count(events.c.dead_letter),
                x_deaths=func.sum(x_death),
            )
        )
        .where(*since)
        .group_by(events.c.source)
        .order_by(func.min(EVENT_AT), events.c.source)
        .limit(MAX_SERVICES)
    )

    def ids(kind: str, query: Select[Any]) -> Select[Any]:
        inner = query.subquery()
        return select(*_columns(kind, ref_id=inner.c.id, ref_seq=inner.c.commit_seq))

    deaths = (
        select(events.c.id, events.c.commit_seq)
        .where(*since, events.c.dead_letter == "x-death")
        .limit(MAX_DEATHS_READ)
    )
    newest = (
        select(events.c.id, events.c.commit_seq)
        .where(events.c.correlation_key == key, events.c.correlation_id == ident)
        .order_by(events.c.commit_seq.desc(), events.c.id.desc())
        .limit(1)
    )
    arms = [
        catalog_totals,
        _arm(catalog_rows),
        delta_totals,
        _arm(delta_rows),
        ids("x", deaths),
        ids("n", newest),
    ]
    if paged:
        page = select(events.c.id, events.c.commit_seq, EVENT_AT.label("at")).where(
            events.c.correlation_key == key, events.c.correlation_id == ident
        )
        if after:
            at = bindparam("after_at", type_=events.c.received_at.type)
            last_seq = bindparam("after_seq", type_=BigInteger)
            last_id = bindparam("after_id", type_=BigInteger)
            page = page.where(
                at <= EVENT_AT,  # the bound the event-time index starts from
                or_(
                    at < EVENT_AT,
                    events.c.commit_seq > last_seq,
                    and_(events.c.commit_seq == last_seq, events.c.id > last_id),
                ),
            )
        inner = (
            page.order_by(EVENT_AT, events.c.commit_seq, events.c.id)
            .limit(bindparam("limit_1", type_=BigInteger))
            .subquery()
        )
        arms.append(
            select(
                *_columns("p", first_at=inner.c.at, ref_id=inner.c.id, ref_seq=inner.c.commit_seq)
            )
        )
    return union_all(*arms)


_ARM_TYPES: dict[str, TypeEngine[Any]] = {
    "source": Text(),
    "n": BigInteger(),
    "first_at": events.c.received_at.type,
    "last_at": events.c.received_at.type,
    "dead": BigInteger(),
    "x_deaths": BigInteger(),
    "ref_id": BigInteger(),
    "ref_seq": BigInteger(),
}


def _columns(kind: str, **given: Any) -> list[Any]:
    """The columns every arm of the one-pass statement has, typed NULL where it has none
    (Postgres types a compound SELECT's columns from all its arms)."""
    columns = [literal(kind, String).label("kind")]
    for name, type_ in _ARM_TYPES.items():
        value = given.get(name)
        columns.append((cast(null(), type_) if value is None else value).label(name))
    return columns


def _arm(query: Select[Any]) -> Select[Any]:
    """A compound SELECT's arm with its own ORDER BY / LIMIT (SQLite wants a subquery)."""
    inner = query.subquery()
    return select(*inner.c)


def _summary_of(
    by_kind: dict[str, list[dict[str, Any]]], retries: int, retries_capped: bool
) -> TraceSummary:
    """The summary from the one-pass statement's rows (`retries_capped`: more x-death copies
    than were read, so retries and dead letters are not exact)."""
    total = by_kind["t"][0]
    groups = sorted(
        by_kind.get("g", []), key=lambda g: (_sortable(g["first_at"]), g["source"] or "")
    )
    newest = by_kind.get("n", [])
    return TraceSummary(
        int(total["n"]),
        utc(total["first_at"]),
        utc(total["last_at"]),
        tuple(Service(g["source"], int(g["n"]), utc(g["first_at"])) for g in groups),
        int(total["ref_id"]) + int(total["ref_seq"] or 0),
        int(total["dead"]) - retries,
        retries,
        retries_capped,
        Cursor(int(newest[0]["ref_seq"]), int(newest[0]["ref_id"])) if newest else None,
    )


def _merged_summary(
    by_kind: dict[str, list[dict[str, Any]]], delta_retries: int, retries_capped: bool
) -> TraceSummary:
    """The summary from the catalog's rows plus the events committed since its progress."""
    counted, since = by_kind["kc"][0], by_kind["dt"][0]
    listed, _ = _by_service((*by_kind.get("k", []), *by_kind.get("d", [])), "n")
    firsts = [t for t in (utc(counted["first_at"]), utc(since["first_at"])) if t is not None]
    lasts = [t for t in (utc(counted["last_at"]), utc(since["last_at"])) if t is not None]
    retries = int(counted["ref_id"] or 0) + delta_retries
    catalogued = int(counted["n"] or 0)  # services the catalog holds (all listed up to the cap)
    fresh = sum(1 for g in by_kind.get("d", []) if g["source"] not in _sources_of(by_kind.get("k")))
    newest = by_kind.get("n", [])
    return TraceSummary(
        int(counted["x_deaths"] or 0) + int(since["n"] or 0),
        min(firsts, default=None),
        max(lasts, default=None),
        listed,
        catalogued + fresh,
        int(counted["dead"] or 0) + int(since["dead"] or 0) - retries,
        retries,
        retries_capped,
        Cursor(int(newest[0]["ref_seq"]), int(newest[0]["ref_id"])) if newest else None,
    )


def _summed(rows: Sequence[dict[str, Any]], retries: int) -> TraceSummary:
    """A summary from per-service rows (the catalog's and those since its progress)."""
    listed, total_services = _by_service(rows, "events")
    firsts = [t for r in rows if (t := utc(r["first_at"])) is not None]
    lasts = [t for r in rows if (t := utc(r["last_at"])) is not None]
    dead = sum(int(r["dead"] or 0) for r in rows)
    return TraceSummary(
        sum(int(r["events"]) for r in rows),
        min(firsts, default=None),
        max(lasts, default=None),
        listed,
        total_services,
        max(0, dead - retries),
        retries,
    )


def _by_service(rows: Iterable[dict[str, Any]], count: str) -> tuple[tuple[Service, ...], int]:
    """Per-service rows (the catalog's, those since its progress) merged by service: the
    first MAX_SERVICES by first appearance, and how many services there are."""
    services: dict[str | None, Service] = {}
    for row in rows:
        first, seen = utc(row["first_at"]), services.get(row["source"])
        n = int(row[count]) + (seen.events if seen else 0)
        if seen is not None:
            first = min(seen.first_at, first, key=_sortable)
        services[row["source"]] = Service(row["source"], n, first)
    listed = sorted(services.values(), key=lambda v: (_sortable(v.first_at), v.source or ""))
    return tuple(listed[:MAX_SERVICES]), len(services)


def _sources_of(rows: Sequence[dict[str, Any]] | None) -> set[str | None]:
    return {r["source"] for r in rows or ()}


def matching_stored(key: int, text: str) -> list[ColumnElement[bool]]:
    """A correlation as stored (key and display text), e.g. one found in a recent row."""
    return [events.c.correlation_key == key, events.c.correlation_id == text]


def _capped(where: list[ColumnElement[bool]], cap: int | None) -> Any:
    """The correlation's rows (service, time, dead letter), at most cap + 1 in commit order."""
    inner = select(
        events.c.source,
        EVENT_AT.label("at"),
        events.c.dead_letter,
    ).where(*where)
    if cap is not None:
        inner = inner.order_by(*OLDEST_FIRST).limit(cap + 1)
    return inner.subquery()


def grouped(where: list[ColumnElement[bool]], cap: int | None) -> Select[Any]:
    """Per service: events, first and last time, dead letters (all kinds), x-death copies."""
    rows = _capped(where, cap)
    return (
        select(
            rows.c.source,
            func.count().label("n"),
            func.min(rows.c.at).label("first_at"),
            func.max(rows.c.at).label("last_at"),
            func.count(rows.c.dead_letter).label("dead"),
            func.sum(case((rows.c.dead_letter == "x-death", 1), else_=0)).label("x_deaths"),
        )
        .group_by(rows.c.source)
        .order_by(func.min(rows.c.at), rows.c.source)
    )


def summarise(
    groups: Sequence[dict[str, Any]], cap: int | None, total_groups: int | None = None
) -> TraceSummary:
    """The summary from per-service groups (x-death copies still counted as dead letters)."""
    listed = groups[:MAX_SERVICES]
    count = sum(int(g["n"]) for g in groups)
    firsts = [t for g in groups if (t := utc(g["first_at"])) is not None]
    lasts = [t for g in groups if (t := utc(g["last_at"])) is not None]
    capped = cap is not None and count > cap
    return TraceSummary(
        min(count, cap) if cap is not None else count,
        min(firsts, default=None),
        max(lasts, default=None),
        tuple(Service(g["source"], int(g["n"]), utc(g["first_at"])) for g in listed),
        total_groups if total_groups is not None else len(groups),
        sum(int(g["dead"]) for g in groups),
        0,
        capped,
    )


def _sortable(value: dt.datetime | None) -> dt.datetime:
    return utc(value) or dt.datetime.min.replace(tzinfo=dt.UTC)


async def _all(conn: AsyncConnection, query: Any) -> list[dict[str, Any]]:
    return as_dicts(await conn.execute(query))
