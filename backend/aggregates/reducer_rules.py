"""Level 2: declarative reducers in a TOML file (`EVENTSCOPE_REDUCERS`), no code.

One table per aggregate type and event type, holding operations applied in this order:

    [Order.OrderPaid]
    merge = "$data"                            # deep-merge a value into the state (or a path)
    set = { status = "paid", paidAt = "$event.timestamp" }
    unset = ["failure", "payment.pending"]
    append = { history = "$meta.event_type" }  # add one element to a list
    increment = { "stats.payments" = 1 }

Paths are dotted (`a.b.c`; a dot inside a key is `\\.`); nested TOML tables are paths too.
A string starting with `$` is a reference: `$event[.path]` (the body), `$data[.path]` (the
event's data, as the default reducer reads it), `$meta.<name>` (what was recorded: see
META_FIELDS); `$$` starts a literal `$`. Everything is checked when the file is loaded: an
invalid file fails at start with the file, the rule's table path and the reason.
The full format, with the seed's Order, is in docs/reducers.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any, Final

from eventscope.backend.aggregates.json_values import (
    KEY_OVERHEAD,
    MAX_PATH_SEGMENTS,
    MISSING,
    Path,
    ValueProblem,
    deep_merge,
    kind_of,
    lookup,
    parse_path,
    path_label,
    remove_at,
    replace_at,
    size_of,
)
from eventscope.backend.aggregates.reducers import (
    Applied,
    Event,
    FoldLimits,
    ReducerConfigError,
    ReducerError,
    State,
    merge_data,
)

OPERATIONS: Final = ("merge", "set", "unset", "append", "increment")
MAX_RULES_FILE_BYTES: Final = 1024 * 1024


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


META_FIELDS: Final[dict[str, Callable[[Event], Any]]] = {
    "event_id": lambda e: e.event_id,
    "event_type": lambda e: e.event_type,
    "aggregate_id": lambda e: e.aggregate_id,
    "aggregate_type": lambda e: e.aggregate_type,
    "version": lambda e: e.version,
    "occurred_at": lambda e: _iso(e.occurred_at),
    "received_at": lambda e: _iso(e.received_at),
    "time": lambda e: _iso(e.time),  # occurred, else received
}


# --- values: constants and references --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A value read from the event when the rule applies."""

    source: str  # "event", "data" or "meta"
    path: Path
    text: str  # as written, for notes

    def resolve(self, event: Event) -> Any:
        if self.source == "meta":
            found = META_FIELDS[self.path[0]](event)
            return MISSING if found is None else found
        root = event.body if self.source == "event" else event.data
        return lookup(root, self.path)


@dataclass(frozen=True, slots=True)
class Template:
    """A constant array or object with references inside."""

    value: Any  # lists and dicts holding constants and Refs

    def resolve(self, event: Event) -> Any:
        return _fill(self.value, event)


def _fill(value: Any, event: Event) -> Any:
    if isinstance(value, Ref):
        return value.resolve(event)
    if isinstance(value, list):
        items = [_fill(v, event) for v in value]
        return MISSING if any(i is MISSING for i in items) else items
    if isinstance(value, dict):
        filled = {k: _fill(v, event) for k, v in value.items()}
        return MISSING if any(v is MISSING for v in filled.values()) else filled
    return value


@dataclass(frozen=True, slots=True)
class Const:
    value: Any

    def resolve(self, event: Event) -> Any:
        return self.value


Expr = Ref | Template | Const


def _has_ref(value: Any) -> bool:
    if isinstance(value, Ref):
        return True
    if isinstance(value, list):
        return any(_has_ref(v) for v in value)
    if isinstance(value, dict):
        return any(_has_ref(v) for v in value.values())
    return False


_REF = re.compile(r"\$(event|data|meta)(?:\.(.+))?", re.S)


def _reference(text: str) -> Ref:
    found = _REF.fullmatch(text)
    if found is None:
        raise ValueError(
            f"unknown reference {text!r} (expected $event.<path>, $data.<path>, "
            "$meta.<name>, or $$ for a literal $)"
        )
    source, rest = found.group(1), found.group(2)
    if source == "meta":
        if rest not in META_FIELDS:
            names = ", ".join(META_FIELDS)
            raise ValueError(f"unknown reference {text!r} ($meta names: {names})")
        return Ref("meta", (rest,), text)
    return Ref(source, parse_path(rest) if rest is not None else (), text)


def _value(raw: Any) -> Any:
    """A TOML value as a constant (JSON) with Refs where strings reference the event."""
    if isinstance(raw, str):
        if raw.startswith("$$"):
            return raw[1:]
        return _reference(raw) if raw.startswith("$") else raw
    if isinstance(raw, bool | int):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError(f"{raw} is not a JSON number")
        return raw
    if isinstance(raw, dt.datetime | dt.date | dt.time):
        return raw.isoformat()  # TOML dates and times become ISO 8601 text
    if isinstance(raw, list):
        return [_value(v) for v in raw]
    if isinstance(raw, dict):
        return {k: _value(v) for k, v in raw.items()}
    raise ValueError(f"unsupported value {raw!r}")


def _expr(raw: Any) -> Expr:
    value = _value(raw)
    if isinstance(value, Ref):
        return value
    return Template(value) if _has_ref(value) else Const(value)


# --- one rule --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """The operations for one (aggregate type, event type), compiled and checked."""

    where: str  # "<file> [Order.OrderPaid]"
    merge: tuple[tuple[Path, Expr], ...] = ()
    set: tuple[tuple[Path, Expr], ...] = ()
    unset: tuple[Path, ...] = ()
    append: tuple[tuple[Path, Expr], ...] = ()
    increment: tuple[tuple[Path, Expr], ...] = ()

    @property
    def label(self) -> str:
        return f"rules {self.where}"

    def apply(self, state: State, size: int, event: Event, limits: FoldLimits) -> Applied:
        notes: list[str] = []
        for path, expr in self.merge:
            value = _resolve(expr, event, "merge", path, notes)
            if value is not MISSING:
                state, size = _merge(state, size, path, value, _written(expr))
        for path, expr in self.set:
            value = _resolve(expr, event, "set", path, notes)
            if value is not MISSING:
                state, size = _set(state, size, path, value, "set")
        for path in self.unset:
            state, old = remove_at(state, path)
            if old is not MISSING:
                size -= size_of(old) + KEY_OVERHEAD + len(path[-1])
        for path, expr in self.append:
            value = _resolve(expr, event, "append", path, notes)
            if value is not MISSING:
                state, size = _append(state, size, path, value)
        for path, expr in self.increment:
            value = _resolve(expr, event, "increment", path, notes)
            if value is not MISSING:
                state, size = _increment(state, size, path, value)
        return Applied(state, size, tuple(notes))


def _resolve(expr: Expr, event: Event, op: str, path: Path, notes: list[str]) -> Any:
    value = expr.resolve(event)
    if value is MISSING:
        written = expr.text if isinstance(expr, Ref) else "a referenced field"
        notes.append(f"{op} {path_label(path)}: {written} is missing in this event: skipped")
    return value


def _set(state: State, size: int, path: Path, value: Any, op: str) -> tuple[State, int]:
    try:
        new, old = replace_at(state, path, value)
    except ValueProblem as exc:
        raise ReducerError(f"{op} {path_label(path)}: {exc}") from None
    if old is MISSING:
        return new, size + size_of(value) + KEY_OVERHEAD + len(path[-1])
    return new, size + size_of(value) - size_of(old)


def _written(expr: Expr) -> str:
    return expr.text if isinstance(expr, Ref) else "the value"


def _merge(state: State, size: int, path: Path, value: Any, written: str) -> tuple[State, int]:
    if not path:
        applied = merge_data(state, size, value, f"merge: {written}")
        return applied.state, applied.size
    target = lookup(state, path)
    if isinstance(target, dict) and isinstance(value, dict):
        merged, delta = deep_merge(target, value)
        return _set(state, size, path, merged, "merge")[0], size + delta
    return _set(state, size, path, value, "merge")


def _append(state: State, size: int, path: Path, value: Any) -> tuple[State, int]:
    target = lookup(state, path)
    if target is MISSING:
        return _set(state, size, path, [value], "append")
    if not isinstance(target, list):
        raise ReducerError(f"append {path_label(path)}: it is {kind_of(target)}, not a list")
    new, _ = replace_at(state, path, [*target, value])
    return new, size + size_of(value) + 1


def _increment(state: State, size: int, path: Path, amount: Any) -> tuple[State, int]:
    if not _is_number(amount):
        raise ReducerError(f"increment {path_label(path)}: by {kind_of(amount)}, not a number")
    target = lookup(state, path)
    if target is MISSING:
        target = 0
    elif not _is_number(target):
        raise ReducerError(f"increment {path_label(path)}: it is {kind_of(target)}, not a number")
    return _set(state, size, path, target + amount, "increment")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- a file of rules -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleBook:
    """The rules of one file: (aggregate type, event type) → Rule; `"*"` is any event type."""

    source: str
    rules: Mapping[tuple[str, str], Rule]
    digest: str  # of the parsed content: comments and layout do not change it

    @property
    def aggregate_types(self) -> frozenset[str]:
        return frozenset(kind for kind, _ in self.rules)


def load_rules(path: FilePath) -> RuleBook:
    """Read and check a rules file; ReducerConfigError names the file, the rule and why."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReducerConfigError(f"{path}: cannot read the reducer rules: {exc}") from None
    if len(raw) > MAX_RULES_FILE_BYTES:
        raise ReducerConfigError(f"{path}: larger than {MAX_RULES_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReducerConfigError(f"{path}: not UTF-8 text: {exc}") from None
    return rules_from_text(text, str(path))


def rules_from_text(text: str, source: str) -> RuleBook:
    """Parse rules from TOML text; `source` names them in messages and step labels."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReducerConfigError(f"{source}: invalid TOML: {exc}") from None
    rules: dict[tuple[str, str], Rule] = {}
    for kind, per_type in document.items():
        if not isinstance(per_type, dict):
            raise _error(source, (kind,), "expected a table of event types, e.g. [Order.OrderPaid]")
        for event_type, table in per_type.items():
            where = (kind, event_type)
            if not isinstance(table, dict):
                raise _error(source, where, "expected a table of operations")
            rules[where] = _rule(source, where, table)
    digest = hashlib.sha256(
        json.dumps(document, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    ).hexdigest()
    return RuleBook(source, rules, digest)


def _error(source: str, where: tuple[str, ...], reason: str) -> ReducerConfigError:
    return ReducerConfigError(f"{source}: [{table_path(where)}] {reason}")


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def table_path(keys: tuple[str, ...]) -> str:
    """Keys written as a TOML table header: `Order.OrderPaid`, `Order."*"`."""
    return ".".join(k if _BARE_KEY.fullmatch(k) else json.dumps(k) for k in keys)


def _rule(source: str, where: tuple[str, str], table: dict[str, Any]) -> Rule:
    label = f"{source.rsplit('/', 1)[-1]} [{table_path(where)}]"
    unknown = [key for key in table if key not in OPERATIONS]
    if unknown:
        raise _error(
            source,
            where,
            f"unknown operation {unknown[0]!r} (expected {', '.join(OPERATIONS)})",
        )
    try:
        return Rule(
            where=label,
            merge=_merge_operations(table.get("merge")),
            set=_assignments("set", table.get("set")),
            unset=_unsets(table.get("unset")),
            append=_assignments("append", table.get("append")),
            increment=_increments(table.get("increment")),
        )
    except ValueError as exc:
        raise _error(source, where, str(exc)) from None


def _merge_operations(raw: Any) -> tuple[tuple[Path, Expr], ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        expr = _expr(raw)
        if isinstance(expr, Const) and not isinstance(expr.value, dict):
            raise ValueError(f"merge: {raw!r} is a constant string; merge a reference like $data")
        return (((), expr),)
    return _assignments("merge", raw)


def _assignments(op: str, raw: Any) -> tuple[tuple[Path, Expr], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ValueError(f"{op}: expected a table of path = value, got {_toml_kind(raw)}")
    out = []
    for path, value in _flatten(op, raw, ()):
        try:
            out.append((path, _expr(value)))
        except ValueError as exc:
            raise ValueError(f"{op}.{path_label(path)}: {exc}") from None
    return tuple(out)


def _increments(raw: Any) -> tuple[tuple[Path, Expr], ...]:
    out = _assignments("increment", raw)
    for path, expr in out:
        if isinstance(expr, Template) or (isinstance(expr, Const) and not _is_number(expr.value)):
            raise ValueError(f"increment.{path_label(path)}: the amount must be a number")
    return out


def _unsets(raw: Any) -> tuple[Path, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("unset: expected a path or a list of paths")
    try:
        return tuple(parse_path(i) for i in items)
    except ValueError as exc:
        raise ValueError(f"unset: {exc}") from None


def _flatten(op: str, table: dict[str, Any], prefix: Path) -> list[tuple[Path, Any]]:
    """Nested tables are paths: `{ a = { b = 1 } }` is `"a.b" = 1`. An empty table is the
    value {}."""
    out: list[tuple[Path, Any]] = []
    for key, value in table.items():
        try:
            path = (*prefix, *parse_path(key))
        except ValueError as exc:
            raise ValueError(f"{op}: {exc}") from None
        if len(path) > MAX_PATH_SEGMENTS:
            raise ValueError(f"{op}.{path_label(path)}: more than {MAX_PATH_SEGMENTS} segments")
        if isinstance(value, dict) and value:
            out.extend(_flatten(op, value, path))
        else:
            out.append((path, value))
    return out


def _toml_kind(value: Any) -> str:
    return "a table" if isinstance(value, dict) else kind_of(value)
