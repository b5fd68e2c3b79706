"""The correlation catalog's table: per correlation and service, what a trace's summary shows.

Written only by the correlation catalog (backend/correlation_catalog.py), one transaction per
batch that also moves `correlation_catalog_progress` by compare-and-set (store/catalogs.py), as
the type and aggregate catalogs do. Read by traces (store/trace.py), which add the events
committed after the progress row, so a summary is exact however far behind the catalog is.

A row is keyed by the correlation's 64-bit key and the service's (0 for events without one).
Keys are hashes: when a second correlation id or service name lands on a key already counted,
the row is marked `mixed` and traces of that key count the events themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import case, func

from eventscope.backend.store.catalogs import FollowsEvents, save_with_progress, start_over
from eventscope.backend.store.models import correlation_catalog_progress, correlation_services
from eventscope.backend.store.models import events as ev
from eventscope.backend.store.paging import Cursor
from eventscope.backend.trace import role_of

# A trace's time for an event: when it occurred, else when it was received.
EVENT_AT = func.coalesce(ev.c.occurred_at, ev.c.received_at)
# Headers are read only where they decide something: x-death copies (retry or dead letter).
DEATH_HEADERS = case((ev.c.dead_letter == "x-death", ev.c.headers), else_=None)

_PENDING = (
    ev.c.id,
    ev.c.commit_seq,
    ev.c.received_at,
    ev.c.correlation_key,
    ev.c.correlation_id,
    ev.c.source_key,
    ev.c.source,
    EVENT_AT.label("event_at"),
    ev.c.dead_letter,
    ev.c.exchange,
    ev.c.routing_key,
    DEATH_HEADERS.label("death_headers"),
)
_COLUMNS = tuple(c.name for c in correlation_services.columns)
_T: Final = "correlation_services"
_UPSERT = (
    f"INSERT INTO {_T} ({', '.join(_COLUMNS)}) "  # noqa: S608 - fixed names
    f"VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    "ON CONFLICT (correlation_key, service_key) DO UPDATE SET "
    f"events = {_T}.events + excluded.events, "
    f"dead = {_T}.dead + excluded.dead, "
    f"x_deaths = {_T}.x_deaths + excluded.x_deaths, "
    f"retries = {_T}.retries + excluded.retries, "
    f"first_at = CASE WHEN excluded.first_at < {_T}.first_at "
    f"THEN excluded.first_at ELSE {_T}.first_at END, "
    f"last_at = CASE WHEN excluded.last_at > {_T}.last_at "
    f"THEN excluded.last_at ELSE {_T}.last_at END, "
    f"mixed = CASE WHEN {_T}.mixed OR excluded.mixed "
    f"OR {_T}.correlation_id <> excluded.correlation_id "
    f"OR COALESCE({_T}.source, '') <> COALESCE(excluded.source, '') "
    f"OR ({_T}.source IS NULL) <> (excluded.source IS NULL) THEN TRUE ELSE FALSE END"
)


class CorrelationCatalogQueries(FollowsEvents):
    progress_table = correlation_catalog_progress
    pending_columns = _PENDING

    async def save(self, rows: Sequence[dict[str, Any]], start: Cursor, end: Cursor) -> bool:
        """Add one batch's counts and move the progress from `start` to `end`, in one
        transaction; False (nothing written) when the progress is no longer at `start`."""
        ordered = sorted(rows, key=lambda r: (r["correlation_key"], r["service_key"]))
        return await save_with_progress(
            self.store, correlation_catalog_progress, start, end, [(_UPSERT, ordered)]
        )

    async def reset(self) -> None:
        """Forget the catalog and count every event again (store/catalogs.py)."""
        await start_over(self.store, (correlation_services,), correlation_catalog_progress)


def service_rows(pending: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A batch of events (commit order) counted per correlation and service, ready to add."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for event in pending:
        key, ident = event["correlation_key"], event["correlation_id"]
        if key is None or ident is None:
            continue
        at = _aware(event["event_at"])
        service = (key, int(event["source_key"] or 0))
        row = out.get(service)
        if row is None:
            row = out[service] = {
                "correlation_key": key,
                "service_key": service[1],
                "correlation_id": ident,
                "source": event["source"],
                "mixed": False,
                "events": 0,
                "first_at": at,
                "last_at": at,
                "dead": 0,
                "x_deaths": 0,
                "retries": 0,
            }
        elif row["correlation_id"] != ident or row["source"] != event["source"]:
            row["mixed"] = True
        row["events"] += 1
        row["first_at"] = min(row["first_at"], at)
        row["last_at"] = max(row["last_at"], at)
        if event["dead_letter"] is not None:
            row["dead"] += 1
        if event["dead_letter"] == "x-death":
            row["x_deaths"] += 1
            row["retries"] += role_of(event) == "retry"
    return list(out.values())


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands datetimes back naive; everything stored is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
