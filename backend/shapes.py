"""The shape of a payload: its field paths and their JSON types, merged over many events.

A shape maps each path (`data.items[].sku`; `$` is the document itself, `[]` an array's items)
to the JSON types seen there (object, array, string, integer, number, boolean, null; a body
that is not JSON gives `$` the type text, binary or empty). A path is *optional* once an
object at its parent was seen without it. Merging two shapes is commutative and idempotent;
`diff` tells what a new event changed against the merged shape of the events before it: a
field added, a field that was always there and is now missing (removed), a new type at a
path. Integer and number count as one type (JSON writes 10.0 as 10), so a price that is
sometimes whole is not a change.

Everything is bounded, because payloads come from the bus: at most MAX_PATHS paths per shape,
MAX_DEPTH levels, MAX_NODES values looked at per document, keys cut at MAX_KEY_CHARS; a shape
that hit a bound is `truncated`, and then says nothing about fields it may have missed. Of an
array, the first MAX_ITEMS items are looked at. Keys
that are not plain words (dots, brackets, quotes, markup, invisible characters, very long)
are written quoted as JSON strings, with every invisible character escaped: `data["a.b"]`.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_PATHS = 500
MAX_DEPTH = 24
MAX_NODES = 20_000
MAX_ITEMS = 100  # the items of an array looked at (not a truncation: items are alike)
MAX_KEY_CHARS = 100
MAX_PATH_CHARS = 400
ROOT = "$"
JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
BODY_KINDS = ("text", "binary", "empty")  # the type of `$` when the body is not JSON
_FAMILY = {"integer": "number"}  # types that are one type when telling changes
_PLAIN_KEY = re.compile(r"[\w$@-]+")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Shape:
    paths: Mapping[str, frozenset[str]] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    truncated: bool = False

    def __bool__(self) -> bool:
        return bool(self.paths)


EMPTY = Shape()


@dataclass(frozen=True)
class Change:
    """One difference a new event showed: `kind` is added, removed or type_changed."""

    path: str
    kind: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "added":
            return f"{self.path} added ({', '.join(self.after)})"
        if self.kind == "removed":
            return f"{self.path} removed"
        return f"{self.path}: {', '.join(self.before)} → {', '.join(self.after)}"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return "string"  # nothing else comes out of a JSON parser


def _escape_invisible(text: str) -> str:
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) > 0xFFFF:  # JSON spells these as a surrogate pair
            code = ord(ch) - 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def cut_text(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, never inside a run of digits (a card number
    cut in half is no longer recognised, and masked, as one)."""
    if len(text) <= limit:
        return text
    return text[:limit].rstrip("0123456789 -")


@functools.lru_cache(maxsize=4096)  # keys repeat from event to event
def key_segment(key: str) -> str:
    """How a key is written in a path: plain when it is a plain word, else quoted."""
    if len(key) > MAX_KEY_CHARS:
        key = cut_text(key, MAX_KEY_CHARS) + "…"
    elif key != ROOT and _PLAIN_KEY.fullmatch(key) and key.isprintable():
        return key
    quoted = json.dumps(key, ensure_ascii=False)
    return "[" + (quoted if quoted.isprintable() else _escape_invisible(quoted)) + "]"


def child_path(parent: str, key: str) -> str:
    segment = key_segment(key)
    if parent == ROOT:
        return segment
    return parent + segment if segment.startswith("[") else f"{parent}.{segment}"


def items_path(parent: str) -> str:
    return "[]" if parent == ROOT else parent + "[]"


def parent_of(path: str) -> tuple[str, bool] | None:
    """(the parent path, whether the last segment is a key) — None for `$` or a path this
    module did not write."""
    if path == ROOT or not path:
        return None
    pos, last, is_key = 0, 0, True
    try:
        while pos < len(path):
            start = pos
            if path.startswith("[]", pos):
                pos, is_key = pos + 2, False
            elif path.startswith('["', pos):
                _, end = _DECODER.raw_decode(path, pos + 1)
                if not path.startswith("]", end):
                    return None
                pos, is_key = end + 1, True
            else:
                if path[pos] == "." and start > 0:
                    pos += 1
                found = _PLAIN_KEY.match(path, pos)
                if found is None:
                    return None
                pos, is_key = found.end(), True
            last = start
    except ValueError:
        return None
    return (path[:last] or ROOT), is_key


def _normal(types: Iterable[str]) -> frozenset[str]:
    found = frozenset(types)
    return found - {"integer"} if "number" in found else found


def _families(types: Iterable[str]) -> set[str]:
    return {_FAMILY.get(t, t) for t in types}


_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def infer(value: Any) -> Shape:
    """The shape of one JSON document (never raises; bounded as the module says)."""
    paths: dict[str, set[str]] = {}
    # Objects inside arrays can miss keys their siblings have: counted to tell optional keys.
    objects: dict[str, int] = {}  # how many such objects were seen at a path
    present: dict[str, int] = {}  # how many of them had this key path
    parents: dict[str, str] = {}
    truncated = False
    stack: list[tuple[str, Any, int, bool]] = [(ROOT, value, 0, False)]
    nodes = 0
    while stack:
        path, item, depth, repeated = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            truncated = True
            break
        kind = _TYPE_NAMES.get(type(item)) or json_type(item)
        types = paths.get(path)
        if types is None:
            if len(paths) >= MAX_PATHS:
                truncated = True
                continue
            types = paths[path] = set()
        types.add(kind)
        if kind == "object":
            if depth >= MAX_DEPTH:
                truncated = True
                continue
            if repeated:
                objects[path] = objects.get(path, 0) + 1
            if len(item) > MAX_NODES:
                truncated = True
            for key, child in itertools.islice(item.items(), MAX_NODES):
                into = child_path(path, key if type(key) is str else str(key))
                if len(into) > MAX_PATH_CHARS:
                    truncated = True
                    continue
                if repeated:
                    present[into] = present.get(into, 0) + 1
                    parents[into] = path
                stack.append((into, child, depth + 1, repeated))
        elif kind == "array":
            if depth >= MAX_DEPTH:
                truncated = True
                continue
            into = items_path(path)
            if len(into) > MAX_PATH_CHARS:
                truncated = True
                continue
            stack.extend((into, child, depth + 1, True) for child in reversed(item[:MAX_ITEMS]))
    optional = frozenset(
        p for p, n in present.items() if p in paths and n < objects.get(parents[p], 0)
    )
    shaped = {p: frozenset(t) for p, t in paths.items()}
    for p, t in shaped.items():
        if "integer" in t and "number" in t:
            shaped[p] = _normal(t)
    return Shape(shaped, optional, truncated)


def of_body(kind: str, document: Any = None) -> Shape:
    """The shape of a stored body: its JSON document's, or `$` typed by the body kind."""
    if kind == "json":
        return infer(document)
    return Shape({ROOT: frozenset({kind if kind in BODY_KINDS else "binary"})})


def _could_hold(shape: Shape, path: str) -> bool:
    """Whether `path` is missing from `shape` although its parent object is there."""
    if shape.truncated:
        return False
    found = parent_of(path)
    return found is not None and found[1] and "object" in shape.paths.get(found[0], ())


def merge(a: Shape, b: Shape) -> Shape:
    """Both shapes in one: types united, a path optional where either says so or where the
    other had its parent object without it."""
    if not a:
        return b if not a.truncated else Shape(b.paths, b.optional, True)
    if not b:
        return a if not b.truncated else Shape(a.paths, a.optional, True)
    paths = {
        p: _normal(a.paths.get(p, frozenset()) | b.paths.get(p, frozenset()))
        for p in {*a.paths, *b.paths}
    }
    optional = set(a.optional | b.optional)
    optional.update(p for p in a.paths if p not in b.paths and _could_hold(b, p))
    optional.update(p for p in b.paths if p not in a.paths and _could_hold(a, p))
    truncated = a.truncated or b.truncated
    if len(paths) > MAX_PATHS:  # keep the shallowest, the same ones whatever the order
        kept = sorted(paths, key=lambda p: (len(p), p))[:MAX_PATHS]
        paths = {p: paths[p] for p in kept}
        truncated = True
    return Shape(paths, frozenset(p for p in optional if p in paths), truncated)


def covers(known: Shape, new: Shape) -> bool:
    """Whether merging `new` into `known` would change nothing (the common case: skip it)."""
    if new.truncated and not known.truncated:
        return False
    for path, types in new.paths.items():
        have = known.paths.get(path)
        if have is None or (not types <= have and _normal(have | types) != have):
            return False
        if path in new.optional and path not in known.optional:
            return False
    return all(
        p in new.paths or p in known.optional or not _could_hold(new, p) for p in known.paths
    )


def _under(path: str, roots: set[str]) -> bool:
    """Whether a proper ancestor of `path` is in `roots`."""
    found = parent_of(path)
    while found is not None:
        if found[0] in roots:
            return True
        found = parent_of(found[0])
    return False


def diff(known: Shape, new: Shape) -> list[Change]:
    """What `new` (one event) changed against `known` (the events before it), sorted by path.
    Nothing for the first event; fields inside an added or retyped field are not repeated;
    additions are not told when `known` is truncated, removals not when `new` is."""
    if not known:
        return []
    changes: list[Change] = []
    for path in sorted(new.paths):
        types = new.paths[path]
        have = known.paths.get(path)
        if have is None:
            if not known.truncated:
                changes.append(Change(path, "added", after=tuple(sorted(types))))
        elif _families(types) - _families(have):
            changes.append(Change(path, "type_changed", tuple(sorted(have)), tuple(sorted(types))))
    for path in sorted(known.paths):
        if path in known.optional:
            continue
        if (path not in new.paths and _could_hold(new, path)) or path in new.optional:
            changes.append(Change(path, "removed", before=tuple(sorted(known.paths[path]))))
    roots = {c.path for c in changes if c.kind != "removed"}
    kept = [c for c in changes if not _under(c.path, roots)]
    return sorted(kept, key=lambda c: c.path)


def to_data(shape: Shape) -> dict[str, Any]:
    """The shape as JSON data (what is stored and what the API returns), paths sorted."""
    return {
        "paths": [
            {"path": p, "types": sorted(t), "optional": p in shape.optional}
            for p, t in sorted(shape.paths.items())
        ],
        "truncated": shape.truncated,
    }


def from_data(data: Any) -> Shape:
    """A stored shape back; anything unreadable is the empty shape (it is then rebuilt)."""
    if not isinstance(data, dict) or not isinstance(data.get("paths"), list):
        return EMPTY
    paths: dict[str, frozenset[str]] = {}
    optional: set[str] = set()
    for entry in data["paths"][:MAX_PATHS]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue
        types = entry.get("types")
        if not isinstance(types, list):
            continue
        paths[entry["path"]] = _normal(str(t) for t in types)
        if entry.get("optional") is True:
            optional.add(entry["path"])
    return Shape(paths, frozenset(optional), bool(data.get("truncated")))


def change_data(change: Change) -> dict[str, Any]:
    return {
        "path": change.path,
        "change": change.kind,
        "before": list(change.before),
        "after": list(change.after),
    }
