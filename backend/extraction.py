"""Extraction rules: where an event's well-known fields are found, compiled into a fast reader.

For each field an ordered list of candidates — a body JSON path (`body:metadata.correlationId`),
a header (`header:x-correlation-id`) or an AMQP property (`property:correlation_id`) — and the
first one that gives a usable value wins. `DEFAULT_RULES` are the documented defaults
(docs/architecture.md, "Extraction precedence"); a TOML file named by
`EVENTSCOPE_EXTRACTION_RULES` replaces the candidates of the fields it lists (the format, with
a full example: docs/configuration.md). A file that cannot work fails at start, naming the
file, the key and the reason.

Extraction runs for every recorded message, so rules are compiled once into an `Extractor`:
paths are split into tuples up front and a message costs what the hand-written reader it
replaced cost. Extraction never raises: a missing, unusable or hostile value is None.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eventscope.backend.amqp_lenient import UndecodedText

# Field → how a candidate's value is read:
# - "id": the first usable id (non-empty text, an integer, bytes) wins; others are passed over;
# - "version": the first integer that fits 64 bits wins;
# - "time": the first value present decides, usable or not (kept as sent when it is no time);
# - "traceparent": the first value present decides, read as a W3C `traceparent`.
FIELDS: dict[str, str] = {
    "event_id": "id",
    "event_type": "id",
    "correlation_id": "id",
    "causation_id": "id",
    "aggregate_type": "id",
    "aggregate_id": "id",
    "aggregate_version": "version",
    "source": "id",
    "trace_id": "traceparent",
    "occurred_at": "time",
}
SOURCE_KINDS = ("body", "header", "property")
# AMQP basic properties a candidate may name → the key `envelope.Delivery.properties` uses.
PROPERTIES: dict[str, str] = {
    "content_type": "content_type",
    "content_encoding": "content_encoding",
    "delivery_mode": "delivery_mode",
    "priority": "priority",
    "correlation_id": "correlation_id",
    "reply_to": "reply_to",
    "expiration": "expiration",
    "message_id": "message_id",
    "timestamp": "timestamp",
    "type": "message_type",
    "user_id": "user_id",
    "app_id": "app_id",
    "cluster_id": "cluster_id",
}
_PROPERTY_ALIASES = {"message_type": "type"}
MAX_FILE_BYTES = 1024 * 1024
MAX_CANDIDATES = 64  # per field
MAX_PATH_CHARS = 1024
MAX_PATH_SEGMENTS = 32
MAX_HEADER_BYTES = 255  # an AMQP field name is a short string


class RulesError(ValueError):
    """Rules that cannot work; the message names the file, the key and the reason."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where one value may be: `kind` is body, header or property; `name` a dotted body path,
    a header name or a property name."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One step of a field's precedence. Several `sources` are spellings of one value: the
    first present is taken, usable or not (`x-event-id` beats `event-id` even when empty).
    With `only_with`, the candidate counts only when that earlier field was found."""

    sources: tuple[Source, ...]
    only_with: str | None = None


@dataclass(frozen=True)
class ExtractionRules:
    """Every field's candidates, in precedence order; `origin` names where they came from."""

    fields: Mapping[str, tuple[Candidate, ...]]
    unwrap_dead_letters: bool = True  # read a seed dead letter's `originalEvent` instead
    origin: str = "the default rules"


def _c(*sources: str, only_with: str | None = None) -> Candidate:
    return Candidate(tuple(_source(text) for text in sources), only_with)


def _source(text: str) -> Source:
    kind, _, name = text.partition(":")
    return Source(kind, name)


def _each(*sources: str) -> tuple[Candidate, ...]:
    return tuple(_c(text) for text in sources)


DEFAULT_RULES = ExtractionRules(
    {
        "event_id": (
            *_each("body:id", "body:eventId", "property:message_id"),
            _c("header:x-event-id", "header:event-id", "header:event_id", "header:eventId"),
        ),
        "event_type": (
            *_each("body:eventType", "body:type", "property:type"),
            _c(
                "header:x-event-type",
                "header:event-type",
                "header:event_type",
                "header:eventType",
            ),
        ),
        "correlation_id": (
            *_each("body:metadata.correlationId", "body:correlationId", "body:correlation_id"),
            _c(
                "header:x-correlation-id",
                "header:correlation-id",
                "header:correlation_id",
                "header:correlationId",
            ),
            _c("property:correlation_id"),
        ),
        "causation_id": (
            *_each("body:metadata.causationId", "body:causationId", "body:causation_id"),
            _c(
                "header:x-causation-id",
                "header:causation-id",
                "header:causation_id",
                "header:causationId",
            ),
        ),
        "aggregate_type": _each("body:aggregateType", "body:metadata.aggregateType"),
        "aggregate_id": _each("body:aggregateId", "body:metadata.aggregateId"),
        "aggregate_version": (
            _c("body:aggregateVersion"),
            _c("body:version", only_with="aggregate_id"),
        ),
        "source": _each("body:metadata.source", "body:source", "property:app_id"),
        "trace_id": (_c("header:traceparent", "header:Traceparent", "header:TRACEPARENT"),),
        "occurred_at": _each(
            "body:timestamp",
            "body:occurredAt",
            "body:occurred_at",
            "body:metadata.timestamp",
            "property:timestamp",
        ),
    }
)


# --- reading values ---------------------------------------------------------------------------

Original = str | bytes  # an id as it came: text, or bytes when it was not UTF-8


def id_original(value: Any) -> Original | None:
    """An id candidate as its original value, or None when it cannot be an id."""
    if type(value) is str:  # the common case first: this runs for every candidate
        return value or None
    if value is None:
        return None
    if isinstance(value, UndecodedText):
        return value.raw
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, bytes | bytearray) and value:
        return bytes(value)
    return None


def version_of(value: Any) -> int | None:
    """An aggregate version: an integer that fits a BIGINT (booleans are not numbers)."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id(traceparent: Any) -> str | None:
    """The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), else None."""
    if isinstance(traceparent, bytes | bytearray):
        traceparent = bytes(traceparent).decode("ascii", "replace")
    if not isinstance(traceparent, str):
        return None
    found = _TRACEPARENT.match(traceparent.strip().lower())
    if found is None or found.group(1) == "0" * 32:
        return None
    return found.group(1)


def _as_is(value: Any) -> Any:
    return value


# mode → (read the value, whether the first present value decides even when unusable)
_MODES: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "id": (id_original, False),
    "version": (version_of, False),
    "time": (_as_is, True),
    "traceparent": (trace_id, True),
}

# Compiled candidate kinds: a body path of one key, of two keys (`metadata.correlationId`, read
# inline), any other body path, one header, several headers (first present), a property, and
# anything else (several mixed spellings).
_KEY, _PAIR, _PATH, _HEADER, _HEADERS, _PROPERTY, _SPELLINGS = range(7)
_EMPTY: dict[str, Any] = {}
_MISSING = object()


def _index(items: list[Any], segment: str) -> Any:
    """A list step of a body path: `items.0.sku` reads the first item."""
    if segment.isdigit() and int(segment) < len(items):
        return items[int(segment)]
    return _MISSING


def _walk(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in a JSON document, or `_MISSING`."""
    for segment in path:
        if type(doc) is dict:
            doc = doc.get(segment, _MISSING)
            if doc is _MISSING:
                return _MISSING
        elif type(doc) is list:
            doc = _index(doc, segment)
            if doc is _MISSING:
                return _MISSING
        else:
            return _MISSING
    return doc


_Step = tuple[int, Any, str | None]  # (kind, argument, only_with)


def _compile_source(source: Source) -> tuple[int, Any]:
    if source.kind == "body":
        path = tuple(source.name.split("."))
        if not any(segment.isdigit() for segment in path):  # a digit may index an array
            if len(path) == 1:
                return _KEY, path[0]
            if len(path) == 2:
                return _PAIR, path
        return _PATH, path
    if source.kind == "header":
        return _HEADER, source.name
    return _PROPERTY, PROPERTIES[source.name]


def _compile_candidate(candidate: Candidate) -> _Step:
    parts = [_compile_source(s) for s in candidate.sources]
    if len(parts) == 1:
        kind, argument = parts[0]
        return kind, argument, candidate.only_with
    if all(kind == _HEADER for kind, _ in parts):
        return _HEADERS, tuple(name for _, name in parts), candidate.only_with
    return _SPELLINGS, tuple(parts), candidate.only_with


def _first_spelling(
    parts: tuple[tuple[int, Any], ...],
    top: dict[str, Any],
    doc: Any,
    props: Mapping[str, Any],
    heads: Mapping[str, Any],
) -> Any:
    """The value of the first spelling that is present (mixed kinds: the rare case)."""
    for kind, argument in parts:
        if kind == _KEY:
            value = top.get(argument, _MISSING)
        elif kind in (_PAIR, _PATH):
            value = _walk(doc, argument)
        elif kind == _HEADER:
            value = heads.get(argument, _MISSING)
        else:
            value = props.get(argument, _MISSING)
        if value is not _MISSING:
            return value
    return None


class Extractor:
    """Rules compiled for the hot path: `extractor(body_json, props, headers)` gives each
    field's value as it came (ids whole, the time candidate unparsed, the trace id read)."""

    __slots__ = ("_plan", "_unwrap", "rules")

    def __init__(self, rules: ExtractionRules) -> None:
        self.rules = rules
        self._unwrap = rules.unwrap_dead_letters
        self._plan = tuple(
            (name, *_MODES[mode], tuple(_compile_candidate(c) for c in rules.fields[name]))
            for name, mode in FIELDS.items()
        )

    def __call__(
        self, body_json: Any, props: Mapping[str, Any], headers: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        doc = body_json
        if isinstance(doc, dict):
            if self._unwrap:
                original = doc.get("originalEvent")
                if isinstance(original, dict) and "type" not in doc and "eventType" not in doc:
                    doc = original
            top = doc
        else:
            top = _EMPTY
        heads = headers or _EMPTY
        out: dict[str, Any] = {}
        for name, read, decisive, steps in self._plan:
            value = None
            for kind, argument, only_with in steps:
                if only_with is not None and out[only_with] is None:
                    continue
                if kind is _KEY:
                    raw = top.get(argument)
                elif kind is _PAIR:
                    raw = top.get(argument[0])
                    raw = raw.get(argument[1]) if type(raw) is dict else None
                elif kind is _PATH:
                    raw = _walk(doc, argument)
                    if raw is _MISSING:
                        continue
                elif kind is _PROPERTY:
                    raw = props.get(argument)
                elif kind is _HEADERS:
                    raw = None
                    for header in argument:
                        if header in heads:
                            raw = heads[header]
                            break
                elif kind is _HEADER:
                    raw = heads.get(argument)
                else:
                    raw = _first_spelling(argument, top, doc, props, heads)
                if raw is not None:
                    value = read(raw)
                    if value is not None or decisive:
                        break
            out[name] = value
        return out


DEFAULT_EXTRACTOR = Extractor(DEFAULT_RULES)


# --- loading a rules file ------------------------------------------------------------------------


def _shown(value: Any) -> str:
    """A value quoted for an error message: escaped (bus-style text can be hostile), capped."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"


class _Reader:
    """Validates one parsed TOML document; every error names `origin` and the key."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, reason: str) -> RulesError:
        return RulesError(f"{self.origin}: {key}: {reason}")

    def rules(self, data: Mapping[str, Any]) -> ExtractionRules:
        for key in data:
            if key not in ("fields", "unwrap_dead_letters"):
                raise self.fail(
                    _shown(key),
                    "unknown key" + _did_you_mean(key, ["fields", "unwrap_dead_letters"]),
                )
        unwrap = data.get("unwrap_dead_letters", True)
        if not isinstance(unwrap, bool):
            raise self.fail("unwrap_dead_letters", f"must be true or false, not {_shown(unwrap)}")
        table = data.get("fields", {})
        if not isinstance(table, dict):
            raise self.fail("fields", "must be a table ([fields])")
        fields = dict(DEFAULT_RULES.fields)
        for name, value in table.items():
            if name not in FIELDS:
                raise self.fail(
                    f"fields.{_shown(name)}", "unknown field" + _did_you_mean(name, list(FIELDS))
                )
            fields[name] = self.candidates(name, value)
        return ExtractionRules(fields, unwrap, self.origin)

    def candidates(self, field: str, value: Any) -> tuple[Candidate, ...]:
        key = f"fields.{field}"
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list of candidates, not {_shown(value)}")
        if len(value) > MAX_CANDIDATES:
            raise self.fail(key, f"at most {MAX_CANDIDATES} candidates, not {len(value)}")
        return tuple(self.candidate(field, f"{key}[{i}]", item) for i, item in enumerate(value))

    def candidate(self, field: str, key: str, item: Any) -> Candidate:
        only_with = None
        if isinstance(item, dict):
            for name in item:
                if name not in ("from", "only_with"):
                    raise self.fail(f"{key}.{_shown(name)}", "unknown key (use from, only_with)")
            if "from" not in item:
                raise self.fail(key, "a candidate table needs `from`")
            only_with = item.get("only_with")
            if only_with is not None:
                only_with = self.condition(field, f"{key}.only_with", only_with)
            item, key = item["from"], f"{key}.from"
        if isinstance(item, str):
            return Candidate((self.source(key, item),), only_with)
        if isinstance(item, list) and item:
            return Candidate(
                tuple(self.source(f"{key}[{i}]", text) for i, text in enumerate(item)), only_with
            )
        raise self.fail(
            key,
            'a candidate is a string like "body:metadata.correlationId", a list of '
            f"spellings, or a table with `from`; not {_shown(item)}",
        )

    def condition(self, field: str, key: str, name: Any) -> str:
        order = list(FIELDS)
        if not isinstance(name, str) or name not in FIELDS:
            raise self.fail(key, f"{_shown(name)} is not a field" + _did_you_mean(str(name), order))
        if order.index(name) >= order.index(field):
            raise self.fail(
                key, f"must name a field listed before {field} ({', '.join(FIELDS)}), not {name}"
            )
        return name

    def source(self, key: str, text: Any) -> Source:
        if not isinstance(text, str):
            raise self.fail(key, f"must be a string, not {_shown(text)}")
        kind, colon, name = text.partition(":")
        if not colon or kind not in SOURCE_KINDS:
            raise self.fail(key, f"{_shown(text)} does not start with body:, header: or property:")
        if kind == "body":
            return Source(kind, self.path(key, name))
        if kind == "header":
            size = len(name.encode("utf-8", "surrogatepass"))
            if not name or size > MAX_HEADER_BYTES:
                raise self.fail(key, f"a header name has 1 to {MAX_HEADER_BYTES} bytes, not {size}")
            return Source(kind, name)
        name = _PROPERTY_ALIASES.get(name, name)
        if name not in PROPERTIES:
            raise self.fail(
                key, f"unknown AMQP property {_shown(name)}" + _did_you_mean(name, list(PROPERTIES))
            )
        return Source(kind, name)

    def path(self, key: str, path: str) -> str:
        if not path or len(path) > MAX_PATH_CHARS:
            raise self.fail(key, f"bad path: a body path has 1 to {MAX_PATH_CHARS} characters")
        segments = path.split(".")
        if "" in segments:
            raise self.fail(
                key, f"bad path {_shown(path)}: empty segment (two dots, or a dot at an end)"
            )
        if len(segments) > MAX_PATH_SEGMENTS:
            raise self.fail(key, f"bad path: at most {MAX_PATH_SEGMENTS} segments")
        return path


def rules_from_toml(text: str, origin: str) -> ExtractionRules:
    """Rules from the text of a TOML file; fields it does not list keep their defaults."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{origin}: not valid TOML: {exc}") from None
    return _Reader(origin).rules(data)


def load_rules(path: str | os.PathLike[str]) -> ExtractionRules:
    """Rules from a TOML file; raises RulesError naming the file, the key and the reason."""
    origin = os.fspath(path)
    try:
        with open(origin, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RulesError(f"{origin}: cannot read the rules file ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise RulesError(f"{origin}: a rules file has at most {MAX_FILE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(f"{origin}: not UTF-8 (byte {exc.start})") from None
    return rules_from_toml(text, origin)


def extractor_for(path: str | None) -> Extractor:
    """The extractor of the setting `extraction_rules` (None: the defaults)."""
    return DEFAULT_EXTRACTOR if not path else Extractor(load_rules(path))
