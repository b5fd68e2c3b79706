"""Finding events: the filter language (backend/filters.py) answered from indexes.

- Exact ids compare the 64-bit key and the display text (`envelope.id_key`, `id_text`), so the
  indexes answer them and a prefix or look-alike never matches.
- Routing-key wildcards are matched (backend/topic.py) against the table of distinct routing
  keys, then answered by the routing-key index with the keys that matched.
- `q` goes through the full-text index (SQLite FTS5, Postgres tsvector), filled behind ingest
  by the search indexer (backend/search_index.py). With another indexed filter, each candidate
  row is checked against its own words (a probe by row id); alone, on SQLite, the text index
  leads, read newest first by row id, which is commit order there (store/paging.py), so a
  common word answers a page without collecting all its matches.
- `header` and `field` cannot be indexed in general: rows that pass the indexed filters are read
  in commit order and checked here, at most `SCAN_LIMIT` rows per page; a page that stopped
  early says so and where to continue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    column,
    false,
    func,
    select,
    table,
    text,
    true,
)

from eventscope.backend.envelope import aggregate_key, id_key, id_text
from eventscope.backend.filter_match import content_matches
from eventscope.backend.filters import EventFilter
from eventscope.backend.redaction import Redactor
from eventscope.backend.search_query import fts5_match, tsquery_terms
from eventscope.backend.store.models import SUMMARY_COLUMNS, events, routing_keys
from eventscope.backend.store.paging import (
    NEWEST_FIRST,
    OLDEST_FIRST,
    Cursor,
    Page,
    after,
    before,
)
from eventscope.backend.topic import any_matches

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

SCAN_LIMIT = 20_000  # rows read per page for header/field filters
SCAN_CHUNK = 500
MAX_MATCHING_KEYS = 10_000
COUNT_CAP = 10_000
_FTS = table("events_fts", column("rowid"))
_FTS_MATCH = "events_fts MATCH :fts_match"
_COLUMNS_BY_FILTER = {
    "exchange": events.c.exchange,
    "causation_id": events.c.causation_id,
}
_KEYED = {  # filter → (key column, text column)
    "type": (events.c.event_type_key, events.c.event_type),
    "correlation_id": (events.c.correlation_key, events.c.correlation_id),
    "message_id": (events.c.message_id_key, events.c.message_id),
    "source": (events.c.source_key, events.c.source),
    "trace_id": (events.c.trace_key, events.c.trace_id),
}


@dataclass(frozen=True)
class SearchPage:
    """A page of matches; `scanned_out` when a header/field scan stopped at its bound before
    the page was full (`page.older` then continues the scan)."""

    page: Page
    scanned_out: bool = False
    scanned: int = 0


class EventSearch:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def matching_keys(self, f: EventFilter) -> list[str] | None:
        """The routing keys the filter's patterns and literal keys select (None: no routing
        key filter). Patterns are matched against every distinct key seen."""
        if not f.routing_keys and not f.routing_keys_exact:
            return None
        keys = set(f.routing_keys_exact)
        literal = [p for p in f.routing_keys if p.is_literal]
        keys.update(p.text for p in literal)
        wild = [p for p in f.routing_keys if not p.is_literal]
        if wild:
            async with self.store.engine.connect() as conn:
                result = await conn.stream(select(routing_keys.c.routing_key))
                async for (key,) in result:
                    if any_matches(wild, key):
                        keys.add(key)
                        if len(keys) > MAX_MATCHING_KEYS:
                            break
        return sorted(keys)

    def text_leads(self, f: EventFilter) -> bool:
        """SQLite, `q` with nothing else an index narrows: read the text index newest first."""
        narrowed = f.routing_keys or f.routing_keys_exact or f.exact or f.dead_letter
        return self.store.is_sqlite and f.q is not None and not narrowed

    async def conditions(
        self, f: EventFilter, *, with_text: bool = True
    ) -> list[ColumnElement[bool]]:
        """The SQL conditions of every indexed part of the filter (`with_text=False`: all but
        `q`, for a query the text index leads)."""
        where: list[ColumnElement[bool]] = []
        keys = await self.matching_keys(f)
        if keys is not None:
            where.append(events.c.routing_key.in_(keys) if keys else false())
        for name, value in f.exact:
            if name in _KEYED:
                key_column, text_column = _KEYED[name]
                where += [key_column == id_key(value), text_column == id_text(value)]
            elif name in _COLUMNS_BY_FILTER:
                where.append(_COLUMNS_BY_FILTER[name] == id_text(value))
        kind, ident = f.value("aggregate_type"), f.value("aggregate_id")
        if ident is not None and kind is not None:
            where += [
                events.c.aggregate_key == aggregate_key(kind, ident),
                events.c.aggregate_type == id_text(kind),
                events.c.aggregate_id == id_text(ident),
            ]
        elif ident is not None:
            where.append(events.c.aggregate_id == id_text(ident))
        elif kind is not None:
            where.append(events.c.aggregate_type == id_text(kind))
        if f.dead_letter is not None:
            column = events.c.dead_letter
            where.append(column.is_not(None) if f.dead_letter else column.is_(None))
        if f.since is not None:
            where.append(events.c.received_at >= f.since)
        if f.until is not None:
            where.append(events.c.received_at <= f.until)
        if f.q is not None and with_text:
            where.append(self._text_matches(f))
        return where

    def _text_matches(self, f: EventFilter) -> Any:
        assert f.q is not None
        if self.store.is_sqlite:  # a probe of this row's own words
            return text(
                "EXISTS (SELECT 1 FROM events_fts WHERE events_fts MATCH :fts_match "
                "AND events_fts.rowid = events.id)"
            ).bindparams(fts_match=fts5_match(f.q))
        return events.c.id.in_(self._ts_matches(f))

    def _ts_matches(self, f: EventFilter) -> Any:
        assert f.q is not None
        include, exclude = tsquery_terms(f.q)
        query = " && ".join(f"phraseto_tsquery('simple', :inc{i})" for i in range(len(include)))
        for i in range(len(exclude)):
            query = f"({query}) && !!phraseto_tsquery('simple', :exc{i})"
        statement = text(f"SELECT event_id FROM event_search WHERE doc @@ ({query})")  # noqa: S608 - only bind names
        params = {f"inc{i}": v for i, v in enumerate(include)}
        params.update({f"exc{i}": v for i, v in enumerate(exclude)})
        return statement.bindparams(*(bindparam(k, v) for k, v in params.items()))

    async def page(
        self,
        f: EventFilter,
        limit: int,
        *,
        older_than: Cursor | None = None,
        newer_than: Cursor | None = None,
        mask: Redactor | None = None,
    ) -> SearchPage:
        """Matching summaries, shown newest first, keyset paged like `store.events.page`."""
        newest_first = newer_than is None
        position = older_than if newest_first else newer_than
        if self.text_leads(f) and not f.headers and not f.fields:
            rows = await self._all(
                self._text_led(f, await self.conditions(f, with_text=False))
                .where(*_fts_position(position, newest_first))
                .order_by(_FTS.c.rowid.desc() if newest_first else _FTS.c.rowid.asc())
                .limit(limit)
            )
            return SearchPage(
                Page.of(rows, limit, newest_first=newest_first, more_newer=older_than is not None)
            )
        where = await self.conditions(f)
        if not f.headers and not f.fields:
            query = select(*SUMMARY_COLUMNS).where(and_(true(), *where)).limit(limit)
            if position is not None:
                query = query.where(before(position) if newest_first else after(position))
            query = query.order_by(*(NEWEST_FIRST if newest_first else OLDEST_FIRST))
            rows = await self._all(query)
            return SearchPage(
                Page.of(rows, limit, newest_first=newest_first, more_newer=older_than is not None)
            )
        return await self._scan(f, where, limit, position, newest_first, mask)

    async def _scan(
        self,
        f: EventFilter,
        where: list[ColumnElement[bool]],
        limit: int,
        position: Cursor | None,
        newest_first: bool,
        mask: Redactor | None,
    ) -> SearchPage:
        """Read candidates in order, keep those whose headers and body fields match."""
        found: list[dict[str, Any]] = []
        scanned = 0
        last: Cursor | None = position
        columns = (*SUMMARY_COLUMNS, events.c.headers, events.c.body, events.c.body_kind)
        while len(found) < limit and scanned < SCAN_LIMIT:
            query = select(*columns).where(and_(true(), *where)).limit(SCAN_CHUNK)
            if last is not None:
                query = query.where(before(last) if newest_first else after(last))
            query = query.order_by(*(NEWEST_FIRST if newest_first else OLDEST_FIRST))
            chunk = await self._all(query)
            for row in chunk:
                scanned += 1
                last = Cursor.of(row)
                if content_matches(f, row, mask, None):
                    found.append(_summary(row))
                    if len(found) == limit:
                        break
            if len(chunk) < SCAN_CHUNK:
                break
        out_of_budget = len(found) < limit and scanned >= SCAN_LIMIT
        page = Page.of(found, limit, newest_first=newest_first, more_newer=position is not None)
        if out_of_budget and last is not None:  # continue from where the scan stopped
            page = (
                Page(page.rows, last, page.newer)
                if newest_first
                else Page(page.rows, page.older, last)
            )
        return SearchPage(page, out_of_budget, scanned)

    async def count(self, f: EventFilter) -> tuple[int, bool]:
        """How many events match, exactly up to `COUNT_CAP` (then `(COUNT_CAP, True)`: shown
        as "≥ N"). Header and field filters are not counted (a scan): `(-1, True)`."""
        if f.headers or f.fields:
            return -1, True
        if self.text_leads(f):
            led = self._text_led(f, await self.conditions(f, with_text=False), events.c.id)
            capped = led.limit(COUNT_CAP + 1).subquery()
        else:
            where = await self.conditions(f)
            capped = select(events.c.id).where(and_(true(), *where)).limit(COUNT_CAP + 1).subquery()
        async with self.store.engine.connect() as conn:
            n = int(await conn.scalar(select(func.count()).select_from(capped)) or 0)
        return min(n, COUNT_CAP), n > COUNT_CAP

    def _text_led(self, f: EventFilter, where: list[ColumnElement[bool]], *columns: Any) -> Any:
        """Rows joined to the text index's matches (SQLite), the index driving the order."""
        assert f.q is not None
        match = text(_FTS_MATCH).bindparams(fts_match=fts5_match(f.q))
        joined = events.join(_FTS, _FTS.c.rowid == events.c.id)
        return select(*(columns or SUMMARY_COLUMNS)).select_from(joined).where(match, *where)

    async def _all(self, query: Any) -> list[dict[str, Any]]:
        async with self.store.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]


def _fts_position(position: Cursor | None, newest_first: bool) -> list[ColumnElement[bool]]:
    """The cursor as a row-id bound: on SQLite row ids are in commit order."""
    if position is None:
        return []
    return [_FTS.c.rowid < position.id if newest_first else _FTS.c.rowid > position.id]


_SUMMARY_NAMES = tuple(c.name for c in SUMMARY_COLUMNS)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in _SUMMARY_NAMES}
