"""JSON values inside a fold: bounded sizes and depths, dotted paths, updates without mutation.

States are never changed in place: every update copies the dicts on its path and shares the
rest (structural sharing), so a fold can keep the state of every K-th step for the price of the
paths that changed, and a failed update leaves the previous state as it was. Values taken from
event bodies are inserted as they are (nothing mutates them later).

Every walk is bounded: bodies nested deeper than MAX_EVENT_DEPTH are refused before any
recursive code sees them, states deeper than MAX_STATE_DEPTH or larger than the fold's byte cap
are refused where they would be made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final

import orjson

MAX_EVENT_DEPTH: Final = 64  # bodies nested deeper are not folded (a step error)
MAX_PATH_SEGMENTS: Final = 32  # longest dotted path in a rule
MAX_STATE_DEPTH: Final = MAX_EVENT_DEPTH + MAX_PATH_SEGMENTS + 4
KEY_OVERHEAD: Final = 4  # quotes, colon and comma around a key in compact JSON
SCALAR_SIZE: Final = 8  # a number, true, false or null, about
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


class _Missing:
    """The absence of a value (JSON null is a value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class ValueProblem(Exception):
    """A value that cannot be part of a state: not JSON, too deep, too large, wrong type."""


def kind_of(value: Any) -> str:
    """A JSON word for a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a Python {type(value).__name__}"


# --- depth -----------------------------------------------------------------------------------


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when containers nest deeper than `limit` (iterative: safe on any depth)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# One pass in C over a body: digits become "1", brackets "2", what may come right before a
# number (`:`, `,`, `-`, whitespace) "3", anything else "0".
_BODY_MAP: Final = bytes(
    49 if 48 <= i <= 57 else 50 if i in b"[{" else 51 if i in b":,- \t\r\n" else 48
    for i in range(256)
)
# A number of 20 digits or more (orjson reads it as a float): after a `:`, `,`, `-`, space or
# `[`. Digits inside strings (zero-padded ids) usually follow a letter or a quote.
_LONG_NUMBERS: Final = (b"3" + b"1" * 20, b"2" + b"1" * 20)


def parse_event_body(body: bytes) -> dict[str, Any] | str:
    """A body parsed as a JSON object, or what is wrong with it ("is not JSON", …).

    orjson first (fast); Python's json decides where they differ: NaN, lone surrogates, and
    integers of 20 digits or more, which orjson reads as floats. Nesting is bounded by
    MAX_EVENT_DEPTH: the bracket count settles the common case, only bodies with many
    brackets are walked."""
    shape = body.translate(_BODY_MAP)
    try:
        if _LONG_NUMBERS[0] not in shape and _LONG_NUMBERS[1] not in shape:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = json.loads(body)
        else:
            parsed = json.loads(body)
    except RecursionError:
        return f"is nested more than {MAX_EVENT_DEPTH} levels deep"
    except ValueError:
        return "is not JSON"
    if not isinstance(parsed, dict):
        return "is a JSON array" if isinstance(parsed, list) else "is not a JSON object"
    if shape.count(b"2") > MAX_EVENT_DEPTH and depth_exceeds(parsed, MAX_EVENT_DEPTH):
        return f"is nested more than {MAX_EVENT_DEPTH} levels deep"
    return parsed


# --- size ------------------------------------------------------------------------------------


def size_of(value: Any) -> int:
    """About the bytes of `value` as compact JSON: what the state cap counts. Strings count
    their length, containers are measured by orjson (C speed; what it refuses, integers past
    64 bits and lone surrogates, by a bounded walk), other scalars a flat 8 (a long integer by
    its digits). Callers only pass values of bounded depth."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is dict or kind is list:
        try:
            return len(orjson.dumps(value))
        except TypeError:
            return _walk_size(value)
    if kind is int and not -(2**63) <= value < 2**63:
        return int(value.bit_length()) // 3 + 2
    return SCALAR_SIZE


def _walk_size(value: Any) -> int:
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            total += 2 + sum(len(k) + KEY_OVERHEAD for k in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += size_of(item)
    return total


def checked_copy(value: Any, *, max_bytes: int, max_depth: int = MAX_STATE_DEPTH) -> Any:
    """A private copy of a JSON value made of plain dicts and lists, or ValueProblem naming
    where it is not JSON, too deep or too large (what a Python reducer returned, say).
    Shared sub-values are copied once per use, so a result built by sharing cannot hide its
    real size."""
    budget = [max_bytes]
    return _copy(value, (), max_depth, budget)


def _spend(budget: list[int], amount: int, path: tuple[str | int, ...]) -> None:
    budget[0] -= amount
    if budget[0] < 0:
        raise ValueProblem(f"too large (over the state limit) at {path_label(path)}")


def _copy(value: Any, path: tuple[str | int, ...], depth: int, budget: list[int]) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        _spend(budget, size_of(value), path)
        return value
    if kind is dict or kind is list:
        if depth <= 0:
            raise ValueProblem(f"nested too deeply at {path_label(path)}")
        _spend(budget, 2, path)
        if kind is list:
            return [_copy(item, (*path, i), depth - 1, budget) for i, item in enumerate(value)]
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise ValueProblem(f"key {key!r} at {path_label(path)} is not a string")
            _spend(budget, len(key) + KEY_OVERHEAD, path)
            out[key] = _copy(item, (*path, key), depth - 1, budget)
        return out
    raise ValueProblem(f"{kind_of(value)} at {path_label(path)} is not a JSON value")


# --- paths -----------------------------------------------------------------------------------

Path = tuple[str, ...]


def parse_path(text: str) -> Path:
    """`a.b.c` → ("a", "b", "c"). A dot inside a key is written `\\.`, a backslash `\\\\`.
    ValueError says what is wrong."""
    if not isinstance(text, str) or not text:
        raise ValueError("a path must be a non-empty string")
    segments: list[str] = []
    current: list[str] = []
    chars: Iterator[str] = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped not in (".", "\\"):
                raise ValueError(f"path {text!r}: '\\' must be followed by '.' or '\\'")
            current.append(escaped)
        elif char == ".":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    if any(not s for s in segments):
        raise ValueError(f"path {text!r} has an empty segment")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise ValueError(f"path {text!r} has more than {MAX_PATH_SEGMENTS} segments")
    return tuple(segments)


def path_label(path: tuple[str | int, ...]) -> str:
    """A path for messages: `a.b[0]`, `(the state)` for the root. Dots in keys are escaped."""
    if not path:
        return "(the state)"
    out: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        else:
            escaped = segment.replace("\\", "\\\\").replace(".", "\\.")
            out.append(escaped if not out else "." + escaped)
    text = "".join(out)
    return text if len(text) <= 200 else text[:199] + "…"


def lookup(value: Any, path: Path) -> Any:
    """The value at `path` (keys of objects; a digit segment also indexes a list), or MISSING."""
    for segment in path:
        if isinstance(value, dict):
            value = value.get(segment, MISSING)
        elif isinstance(value, list) and segment.isdigit() and len(segment) < 10:
            index = int(segment)
            value = value[index] if index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


# --- updates (never in place) ----------------------------------------------------------------


def replace_at(state: dict[str, Any], path: Path, value: Any) -> tuple[dict[str, Any], Any]:
    """(new state with `value` at `path`, the value it replaced or MISSING). Missing objects on
    the way are created; a value on the way that is not an object is a ValueProblem. Setting
    a scalar to the same scalar returns `state` itself (nothing changed)."""
    if len(path) == 1:  # the common case
        old = state.get(path[0], MISSING)
        if type(old) is type(value) and type(value) in _SCALARS and old == value:
            return state, old
        new = dict(state)
        new[path[0]] = value
        return new, old
    chain = [state]
    for index, segment in enumerate(path[:-1]):
        child = chain[-1].get(segment, MISSING)
        if child is MISSING:
            child = {}
        elif type(child) is not dict:
            where = path_label(path[: index + 1])
            raise ValueProblem(f"{where} is {kind_of(child)}, not an object")
        chain.append(child)
    old = chain[-1].get(path[-1], MISSING)
    if type(old) is type(value) and type(value) in _SCALARS and old == value:
        return state, old
    return _rebuild(chain, path, value), old


def remove_at(state: dict[str, Any], path: Path) -> tuple[dict[str, Any], Any]:
    """(new state without `path`, the removed value or MISSING when nothing was there)."""
    chain = [state]
    for segment in path[:-1]:
        child = chain[-1].get(segment, MISSING)
        if type(child) is not dict:
            return state, MISSING
        chain.append(child)
    if path[-1] not in chain[-1]:
        return state, MISSING
    leaf = dict(chain[-1])
    old = leaf.pop(path[-1])
    return _rebuild(chain[:-1], path[:-1], leaf) if len(path) > 1 else leaf, old


def _rebuild(chain: list[dict[str, Any]], path: Path, value: Any) -> dict[str, Any]:
    """Copies of the dicts in `chain` (root first), each holding the next one at `path`."""
    new: Any = value
    for segment, parent in zip(reversed(path), reversed(chain), strict=True):
        copy = dict(parent)
        copy[segment] = new
        new = copy
    return new  # type: ignore[no-any-return]


def deep_merge(base: dict[str, Any], incoming: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(`incoming` merged into `base`, the change in size): objects merge key by key, arrays
    and scalars replace. Only the dicts that change are copied."""
    if not incoming:
        return base, 0
    merged = dict(base)
    delta = 0
    same = True
    for key, value in incoming.items():
        old = merged.get(key, MISSING)
        new_kind = type(value)
        if new_kind is dict and type(old) is dict:
            merged[key], change = deep_merge(old, value)
            delta += change
            same = same and merged[key] is old
            continue
        if new_kind is type(old) and new_kind in _SCALARS and old == value:
            continue  # the same scalar again: keep the state (and its identity)
        same = False
        merged[key] = value
        # size_of inlined for the common scalars: this runs for every field of every event
        grown = len(value) + 2 if new_kind is str else size_of(value)
        if old is MISSING:
            delta += len(key) + KEY_OVERHEAD + grown
        else:
            delta += grown - (len(old) + 2 if type(old) is str else size_of(old))
    return (base, 0) if same else (merged, delta)
