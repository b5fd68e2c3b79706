"""A dead letter's `x-death` history and first death, read from its stored headers.

Pure and total: headers are bus data anyone can forge, so each reader returns what it could
read plus short problem notes, and never raises. Headers are the typed JSON of
`backend.fieldtable` (the `headers` column).

RabbitMQ writes `x-death` newest first: one table per (queue, reason) with `count`, `time` (an
AMQP timestamp), `exchange` and `routing-keys`; a death that repeats is counted up and moved to
the front. 3.10 sends no `x-last-death-*`, so `x-death[0]` is the latest death. The
`x-first-death-*` headers name the first one; without them the oldest entry is the best guess.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any, Literal

from eventscope.backend.fieldtable import TYPE_NAMES

MAX_HEADERS_CHARS = 4 * 1024 * 1024  # typed JSON read at all (a header frame is far smaller)
MAX_DEATHS = 100  # x-death entries read, newest first
MAX_ROUTING_KEYS = 100  # per entry
MAX_NAME_CHARS = 1024  # queue, exchange, reason, routing key (AMQP names are ≤ 255 bytes)
KNOWN_REASONS = frozenset({"rejected", "expired", "maxlen", "delivery_limit"})
FIRST_DEATH_HEADERS = (
    ("queue", "x-first-death-queue"),
    ("reason", "x-first-death-reason"),
    ("exchange", "x-first-death-exchange"),
)
MISSING: Any = object()
PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "s": str, "b": str, "x": str, "d": str, "T": str, "R": str, "?": str,
    "i": int, "Ti": int, "t": bool, "f": (float, int, str),
    "F": dict, "A": list, "V": type(None),
}  # fmt: skip


@dataclass(frozen=True)
class DeathEntry:
    """One `x-death` table: a queue a message died in, why, how often, when, from where."""

    queue: str | None
    reason: str | None
    count: int | None
    time: dt.datetime | None  # aware, UTC
    exchange: str | None  # "" is the default exchange
    routing_keys: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # fields missing, mistyped, cut or unknown


@dataclass(frozen=True)
class FirstDeath:
    """Where a message first died: from `x-first-death-*`, else the oldest `x-death` entry."""

    queue: str | None
    reason: str | None
    exchange: str | None
    source: Literal["headers", "x-death"]
    problems: tuple[str, ...] = ()


def typed_value(raw: Any, tag: str) -> Any:
    """The value of a typed `[tag, value]` pair with that tag, else `MISSING`."""
    if (
        isinstance(raw, list)
        and len(raw) == 2
        and raw[0] == tag
        and isinstance(raw[1], PYTHON_TYPES[tag])
        and not (tag == "i" and isinstance(raw[1], bool))
    ):
        return raw[1]
    return MISSING


def _kind(raw: Any) -> str:
    """What a typed value is, for a problem note."""
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str):
        tag = raw[0]
        if tag in PYTHON_TYPES and typed_value(raw, tag) is not MISSING:
            return TYPE_NAMES.get(tag, "unknown")
    return "malformed"


def headers_table(headers_json: str | None) -> tuple[dict[str, Any], str | None]:
    text: object = headers_json  # typed str, but a caller may hand over anything
    if not text:
        return {}, None
    if not isinstance(text, str):
        return {}, "headers are not text"
    if len(text) > MAX_HEADERS_CHARS:
        return {}, f"headers too large to read ({len(text)} characters)"
    try:
        table = json.loads(text)
    except (ValueError, RecursionError):
        return {}, "headers are not readable JSON"
    if not isinstance(table, dict):
        return {}, "headers are not a table"
    return table, None


def _name(table: dict[str, Any], key: str, problems: list[str]) -> str | None:
    """A text field (queue, exchange, reason...), cut to `MAX_NAME_CHARS`."""
    if key not in table:
        problems.append(f"{key} missing")
        return None
    text = typed_value(table[key], "s")
    if text is MISSING:
        problems.append(f"{key} is {_kind(table[key])}, not text")
        return None
    if len(text) > MAX_NAME_CHARS:
        problems.append(f"{key} cut to {MAX_NAME_CHARS} characters")
        return str(text[:MAX_NAME_CHARS])
    return str(text)


def _reason(table: dict[str, Any], key: str, problems: list[str]) -> str | None:
    reason = _name(table, key, problems)
    if reason is not None and reason not in KNOWN_REASONS:
        problems.append(f"{key} {reason!r:.50} is not one RabbitMQ writes")
    return reason


def _count(fields: dict[str, Any], problems: list[str]) -> int | None:
    if "count" not in fields:
        problems.append("count missing")
        return None
    count = typed_value(fields["count"], "i")
    if count is MISSING:
        problems.append(f"count is {_kind(fields['count'])}, not an integer")
        return None
    if count < 1:
        problems.append("count is below 1")
    return int(count)


def _time(fields: dict[str, Any], problems: list[str]) -> dt.datetime | None:
    if "time" not in fields:
        problems.append("time missing")
        return None
    raw = fields["time"]
    if typed_value(raw, "Ti") is not MISSING:
        problems.append("time is out of range")
        return None
    text = typed_value(raw, "T")
    if text is MISSING:
        problems.append(f"time is {_kind(raw)}, not a timestamp")
        return None
    try:
        if len(text) > 64:
            raise ValueError(text)
        when = dt.datetime.fromisoformat(text)
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        problems.append("time is not a valid timestamp")
        return None
    return when


def _routing_keys(fields: dict[str, Any], problems: list[str]) -> tuple[str, ...]:
    if "routing-keys" not in fields:
        problems.append("routing-keys missing")
        return ()
    items = typed_value(fields["routing-keys"], "A")
    if items is MISSING:
        problems.append(f"routing-keys is {_kind(fields['routing-keys'])}, not an array")
        return ()
    if len(items) > MAX_ROUTING_KEYS:
        problems.append(f"{len(items)} routing keys: the first {MAX_ROUTING_KEYS} read")
    keys = [typed_value(item, "s") for item in items[:MAX_ROUTING_KEYS]]
    texts = [str(key[:MAX_NAME_CHARS]) for key in keys if key is not MISSING]
    if len(texts) < len(keys):
        problems.append(f"{len(keys) - len(texts)} routing keys are not text: left out")
    if any(len(key) > MAX_NAME_CHARS for key in keys if key is not MISSING):
        problems.append(f"routing keys cut to {MAX_NAME_CHARS} characters")
    return tuple(texts)


def _entry(fields: dict[str, Any]) -> DeathEntry:
    problems: list[str] = []
    return DeathEntry(
        queue=_name(fields, "queue", problems),
        reason=_reason(fields, "reason", problems),
        count=_count(fields, problems),
        time=_time(fields, problems),
        exchange=_name(fields, "exchange", problems),
        routing_keys=_routing_keys(fields, problems),
        problems=tuple(problems),
    )


def _history(table: dict[str, Any]) -> tuple[list[DeathEntry], list[str]]:
    if "x-death" not in table:
        return [], []
    items = typed_value(table["x-death"], "A")
    if items is MISSING:
        return [], [f"x-death is {_kind(table['x-death'])}, not an array"]
    problems: list[str] = []
    if len(items) > MAX_DEATHS:
        problems.append(f"x-death has {len(items)} entries: the newest {MAX_DEATHS} read")
    entries: list[DeathEntry] = []
    skipped: list[str] = []
    for index, item in enumerate(items[:MAX_DEATHS]):
        fields = typed_value(item, "F")
        if fields is MISSING:
            skipped.append(f"x-death[{index}] ({_kind(item)})")
        else:
            entries.append(_entry(fields))
    if skipped:
        problems.append(f"{len(skipped)} x-death entries are not tables, first {skipped[0]}")
    return entries, problems


def death_history(headers_json: str | None) -> tuple[list[DeathEntry], list[str]]:
    """The `x-death` entries of typed headers, newest first, and what was wrong with the
    header as a whole (not JSON, not an array, too many entries, entries not tables)."""
    if isinstance(headers_json, str):
        entries, problems = _remembered_history(headers_json)
        return list(entries), list(problems)
    table, problem = headers_table(headers_json)
    if problem is not None:
        return [], [problem]
    return _history(table)


# One dead letter's headers are read several times in a row (is it a retry? where did it die?
# its first death?): the last few answers are kept. Entries are frozen; a few keys only, as a
# header can be megabytes of text.
@functools.lru_cache(maxsize=8)
def _remembered_history(headers_json: str) -> tuple[tuple[DeathEntry, ...], tuple[str, ...]]:
    table, problem = headers_table(headers_json)
    if problem is not None:
        return (), (problem,)
    entries, problems = _history(table)
    return tuple(entries), tuple(problems)


def first_death(headers_json: str | None) -> FirstDeath | None:
    """Where the message first died; None when the headers say nothing about it."""
    if isinstance(headers_json, str):
        return _remembered_first_death(headers_json)
    return _first_death(headers_json)


@functools.lru_cache(maxsize=8)
def _remembered_first_death(headers_json: str) -> FirstDeath | None:
    return _first_death(headers_json)


def _first_death(headers_json: str | None) -> FirstDeath | None:
    table, problem = headers_table(headers_json)
    if problem is not None:
        return None
    if any(header in table for _, header in FIRST_DEATH_HEADERS):
        problems: list[str] = []
        queue = _name(table, "x-first-death-queue", problems)
        reason = _reason(table, "x-first-death-reason", problems)
        exchange = _name(table, "x-first-death-exchange", problems)
        return FirstDeath(queue, reason, exchange, "headers", tuple(problems))
    entries, history_problems = _history(table)
    if not entries:
        return None
    oldest = entries[-1]
    return FirstDeath(
        oldest.queue,
        oldest.reason,
        oldest.exchange,
        "x-death",
        (*oldest.problems, *history_problems),
    )
