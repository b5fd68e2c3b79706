"""One filter language for pages, the API, the live socket and export.

Parameters (query-string names; different parameters combine with AND):

- `routing_key` — AMQP topic patterns (`*` one word, `#` zero or more), repeatable, OR-ed;
  `routing_key_exact` — literal keys (no wildcard meaning), repeatable, OR-ed with the patterns
- `exchange`, `type`, `correlation_id`, `causation_id`, `aggregate_type`, `aggregate_id`,
  `source`, `trace_id`, `message_id` — exact values (one each)
- `header` — `name:value` (split at the first colon), compared with the value's plain string
  form; repeatable, all must hold
- `field` — `path:value` on the JSON body (`data.orderId:order_42`, array items by index);
  repeatable; needs another indexed filter or a time range, and scans a bounded number of rows
- `dead_letter` — `true` or `false`
- `since`, `until` — on the received time: ISO 8601 (UTC when no offset) or a relative age
  (`30s`, `15m`, `2h`, `7d`, `2w`)
- `q` — full text over body and headers, web-search syntax (backend/search_query.py)

A value is never interpreted as SQL `LIKE` syntax. A parameter that cannot be parsed is a
`FilterError` naming it and why (a 400 in the API, a message beside the filter bar in a page).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eventscope.backend.search_query import SearchQuery, parse_search
from eventscope.backend.topic import TopicPattern

MAX_VALUE_CHARS = 4096
MAX_REPEATS = 20
EXACT = (
    "exchange",
    "type",
    "correlation_id",
    "causation_id",
    "aggregate_type",
    "aggregate_id",
    "source",
    "trace_id",
    "message_id",
)
REPEATABLE = ("routing_key", "routing_key_exact", "header", "field")
PARAMETERS = (*REPEATABLE[:2], *EXACT, "header", "field", "dead_letter", "since", "until", "q")
_AGE = re.compile(r"^(\d{1,9})\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class FilterError(ValueError):
    """A parameter that cannot be parsed: which one, and why."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


@dataclass(frozen=True)
class EventFilter:
    routing_keys: tuple[TopicPattern, ...] = ()
    routing_keys_exact: tuple[str, ...] = ()
    exact: tuple[tuple[str, str], ...] = ()  # (parameter, value) for the EXACT names
    headers: tuple[tuple[str, str], ...] = ()
    fields: tuple[tuple[tuple[str, ...], str], ...] = ()
    dead_letter: bool | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    q: SearchQuery | None = None
    raw: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # as given, for URLs

    @property
    def empty(self) -> bool:
        return not self.raw

    def value(self, name: str) -> str | None:
        """One exact parameter's value, if given."""
        return next((v for k, v in self.exact if k == name), None)

    @property
    def indexed(self) -> bool:
        """Something narrows the rows through an index (what a `field` scan needs)."""
        return bool(
            self.routing_keys
            or self.routing_keys_exact
            or self.exact
            or self.since
            or self.until
            or self.q
            or self.dead_letter
        )

    def query_items(self) -> list[tuple[str, str]]:
        """The filter as query-string pairs, in the order given (to build URLs)."""
        return list(self.raw)

    def without(self, parameter: str, value: str) -> list[tuple[str, str]]:
        """The query pairs of this filter minus one value: what removing a chip links to."""
        return [(k, v) for k, v in self.raw if (k, v) != (parameter, value)]


def multi(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Query pairs as name → values (what `parse_filter` takes)."""
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def parse_filter(
    params: Mapping[str, Sequence[str]],
    *,
    now: dt.datetime | None = None,
    ignore: Iterable[str] = (),
) -> EventFilter:
    """Parse query parameters (name → values). `ignore` names parameters the caller handles
    itself (`limit`, `before`, …); any other unknown name is an error, so a typo never
    silently returns everything."""
    now = now or dt.datetime.now(dt.UTC)
    skip = set(ignore)
    raw: list[tuple[str, str]] = []
    for name, values in params.items():
        if name in skip:
            continue
        if name not in PARAMETERS:
            close = difflib.get_close_matches(name, PARAMETERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FilterError(name, f"not a filter{hint}")
        given = [v for v in values if v != ""]  # an empty box in a form means "no filter"
        if len(given) > (MAX_REPEATS if name in REPEATABLE else 1):
            raise FilterError(name, "give it once" if name not in REPEATABLE else "too many")
        for value in given:
            if len(value) > MAX_VALUE_CHARS:
                raise FilterError(name, f"at most {MAX_VALUE_CHARS} characters")
            raw.append((name, value))
    result = EventFilter(raw=tuple(raw))
    for name, value in raw:
        result = _apply(result, name, value, now)
    if result.since and result.until and result.since > result.until:
        raise FilterError("since", "is later than until")
    if result.fields and not result.indexed:
        raise FilterError(
            "field", "needs another filter that narrows the events (e.g. type) or since/until"
        )
    return result


def _apply(f: EventFilter, name: str, value: str, now: dt.datetime) -> EventFilter:
    if name == "routing_key":
        try:
            return replace(f, routing_keys=(*f.routing_keys, TopicPattern.parse(value)))
        except ValueError as exc:
            raise FilterError(name, str(exc)) from None
    if name == "routing_key_exact":
        return replace(f, routing_keys_exact=(*f.routing_keys_exact, value))
    if name in EXACT:
        return replace(f, exact=(*f.exact, (name, value)))
    if name == "header":
        header, sep, wanted = value.partition(":")
        if not sep or not header:
            raise FilterError(name, "expected name:value, e.g. x-tenant:acme")
        return replace(f, headers=(*f.headers, (header, wanted)))
    if name == "field":
        path, sep, wanted = value.partition(":")
        parts = tuple(path.split("."))
        if not sep or not path or "" in parts:
            raise FilterError(name, "expected path:value, e.g. data.orderId:order_42")
        return replace(f, fields=(*f.fields, (parts, wanted)))
    if name == "dead_letter":
        lowered = value.strip().lower()
        if lowered not in {"true", "false"}:
            raise FilterError(name, "true or false")
        return replace(f, dead_letter=lowered == "true")
    if name == "since":
        return replace(f, since=parse_when(name, value, now))
    if name == "until":
        return replace(f, until=parse_when(name, value, now))
    if name == "q":
        try:
            return replace(f, q=parse_search(value))
        except ValueError as exc:
            raise FilterError(name, str(exc)) from None
    raise FilterError(name, "not a filter")  # unreachable: PARAMETERS was checked


def parse_when(name: str, value: str, now: dt.datetime) -> dt.datetime:
    """ISO 8601 (UTC when no offset) or an age such as `15m` (that long before `now`)."""
    text = value.strip()
    age = _AGE.match(text.lower())
    if age:
        seconds = int(age.group(1)) * _UNIT_SECONDS[age.group(2)]
        try:
            return now - dt.timedelta(seconds=seconds)
        except OverflowError:
            raise FilterError(name, f"{text} reaches before year 1") from None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise FilterError(
            name, f"{text[:40]!r} is not a time (ISO 8601 like 2026-12-01T10:00Z, or 15m, 2h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise FilterError(name, f"{text[:40]!r} is outside years 1–9999 in UTC") from None


def plain_string(value: Any) -> str:
    """How a header or body value compares with a filter's text: strings as they are, true /
    false / null and numbers as JSON writes them."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


def lookup(document: Any, path: Sequence[str]) -> tuple[bool, Any]:
    """(found, value) at a dotted path in parsed JSON; list items by decimal index."""
    current = document
    for part in path:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current
