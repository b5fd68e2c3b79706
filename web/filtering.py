"""The filter language (backend/filters.py) as the HTTP layer reads it and links to it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from eventscope.backend.filters import EXACT, EventFilter, FilterError, parse_filter
from eventscope.backend.redaction import Redactor

# Parameters pages, the API and the socket read themselves; everything else is a filter.
OWN_PARAMETERS = ("before", "after", "at", "limit", "format", "wait", "min_count")
CHIP_LABELS = {
    "routing_key": "routing key",
    "routing_key_exact": "routing key =",
    "type": "type",
    "correlation_id": "correlation",
    "causation_id": "causation",
    "aggregate_type": "aggregate type",
    "aggregate_id": "aggregate",
    "source": "source",
    "trace_id": "trace",
    "message_id": "message id",
    "exchange": "exchange",
    "header": "header",
    "field": "field",
    "dead_letter": "dead letter",
    "since": "since",
    "until": "until",
    "q": "text",
}


def filter_from(pairs: Iterable[tuple[str, str]], now: dt.datetime | None = None) -> EventFilter:
    """Query pairs → a filter; raises FilterError naming the parameter."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return parse_filter(grouped, now=now, ignore=OWN_PARAMETERS)


def query(pairs: Iterable[tuple[str, str]], **extra: Any) -> str:
    """A query string of filter pairs plus page parameters (None values left out)."""
    items = list(pairs) + [(k, str(v)) for k, v in extra.items() if v is not None]
    return urlencode(items)


def chips(f: EventFilter) -> list[dict[str, str]]:
    """One removable chip per filter value: its label, value and the URL without it."""
    return [
        {
            "name": name,
            "label": CHIP_LABELS.get(name, name),
            "value": value,
            "without": query(f.without(name, value)),
        }
        for name, value in f.raw
    ]


def form_values(f: EventFilter) -> dict[str, Any]:
    """What the filter bar's fields show: the first value of each parameter, and the others
    of repeatable parameters as hidden fields so a new search keeps them."""
    first: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for name, value in f.raw:
        if name in first:
            extra.append((name, value))
        else:
            first[name] = value
    return {"first": first, "extra": extra}


def refuse_masked_values(f: EventFilter, mask: Redactor | None) -> None:
    """A viewer cannot filter by a value viewers see masked: a match would confirm the secret.
    (`q` searches masked text and `header`/`field` compare masked values: safe by design.)"""
    if mask is None:
        return
    for name, value in f.raw:
        if (name in EXACT or name.startswith("routing_key")) and mask.text(value) != value:
            raise FilterError(name, "this value is masked for viewers; it cannot be searched")


def list_filter(request: Any, mask: Redactor | None, own: tuple[str, ...]) -> EventFilter:
    """The filter of a list page's query string (its `own` parameters left out), refusing
    what a viewer may not look up."""
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in own]
    event_filter = filter_from(pairs)
    refuse_masked_values(event_filter, mask)
    return event_filter


def filter_context(f: EventFilter | None) -> dict[str, Any]:
    """What the filter bar, the chips and the pager links of a page need."""
    pairs = f.query_items() if f is not None else []
    return {
        "filter": f,
        "filter_query": query(pairs),
        "chips": chips(f) if f is not None else [],
        "form": form_values(f) if f is not None else {"first": {}, "extra": []},
        "live_query": query(pairs),
    }
