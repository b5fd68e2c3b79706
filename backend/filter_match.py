"""The filter language evaluated on rows in memory: what the live view uses for new rows.

Pages and the API answer filters from the database (backend/store/search.py); the live view
gets each batch of new rows from the change feed and keeps, per subscriber, those its filter
selects — the same rules, row by row. Parts that need more than a row's summary (`q`, `header`,
`field`) are checked on the row's content, fetched once per batch for the rows still in question.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from eventscope.backend.envelope import aggregate_key, id_key, id_text
from eventscope.backend.fieldtable import plain
from eventscope.backend.filters import EventFilter, lookup, plain_string
from eventscope.backend.redaction import Redactor
from eventscope.backend.search_query import SearchQuery
from eventscope.backend.search_text import search_text
from eventscope.backend.topic import any_matches

_KEYED = {
    "type": ("event_type_key", "event_type"),
    "correlation_id": ("correlation_key", "correlation_id"),
    "message_id": ("message_id_key", "message_id"),
    "source": ("source_key", "source"),
    "trace_id": ("trace_key", "trace_id"),
}
_TEXT = {"exchange": "exchange", "causation_id": "causation_id"}


def needs_content(f: EventFilter) -> bool:
    """The filter looks into headers or the body, not only at a row's summary."""
    return bool(f.q or f.headers or f.fields)


def summary_matches(f: EventFilter, row: dict[str, Any]) -> bool:
    """Every part of the filter a row's summary can answer (routing key, ids, time, ...)."""
    key = row.get("routing_key") or ""
    if (f.routing_keys or f.routing_keys_exact) and not (
        key in f.routing_keys_exact or any_matches(f.routing_keys, key)
    ):
        return False
    for name, value in f.exact:
        if name in _KEYED:
            key_column, text_column = _KEYED[name]
            if row.get(key_column) != id_key(value) or row.get(text_column) != id_text(value):
                return False
        elif name in _TEXT and row.get(_TEXT[name]) != id_text(value):
            return False
    kind, ident = f.value("aggregate_type"), f.value("aggregate_id")
    if ident is not None and kind is not None:
        if row.get("aggregate_key") != aggregate_key(kind, ident):
            return False
    elif (ident is not None and row.get("aggregate_id") != id_text(ident)) or (
        kind is not None and row.get("aggregate_type") != id_text(kind)
    ):
        return False
    if f.dead_letter is not None and (row.get("dead_letter") is not None) != f.dead_letter:
        return False
    received = _utc(row.get("received_at"))
    if f.since is not None and (received is None or received < f.since):
        return False
    return not (f.until is not None and (received is None or received > f.until))


def _utc(value: Any) -> dt.datetime | None:
    """SQLite hands datetimes back naive; everything stored is UTC."""
    if not isinstance(value, dt.datetime):
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def words_match(query: SearchQuery, words: str) -> bool:
    """The search syntax on an event's indexed words: every included word or phrase present,
    no excluded one."""
    padded = f" {words} "

    def present(phrase: tuple[str, ...]) -> bool:
        return f" {' '.join(phrase)} " in padded

    return all(present(t.words) for t in query.include) and not any(
        present(t.words) for t in query.exclude
    )


def content_matches(
    f: EventFilter, row: dict[str, Any], mask: Redactor | None, index_mask: Redactor | None
) -> bool:
    """The `q`, `header` and `field` parts on a row with its headers and body. `mask` is the
    reader's (a viewer compares masked values, so a filter never confirms a secret);
    `index_mask` is what the full-text index holds (always masked); None skips `q` (the
    database already answered it)."""
    checks_q = f.q is not None and index_mask is not None
    if checks_q and not words_match(f.q, search_text(row, index_mask)):  # type: ignore[arg-type]
        return False
    if f.headers:
        try:
            table = json.loads(row.get("headers") or "{}")
        except ValueError:
            return False
        if mask is not None:
            table = mask.tagged(table)
        for name, wanted in f.headers:
            if name not in table or plain_string(plain(table[name])) != wanted:
                return False
    if f.fields:
        if row.get("body_kind") != "json":
            return False
        try:
            document = json.loads(bytes(row.get("body") or b""))
        except (ValueError, RecursionError):
            return False
        if mask is not None:
            document = mask.data(document)
        for path, wanted in f.fields:
            found, value = lookup(document, path)
            if not found or isinstance(value, dict | list) or plain_string(value) != wanted:
                return False
    return True
