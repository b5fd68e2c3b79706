"""A structural diff of two JSON-like values: the paths added, removed or changed between them.

Pure (no I/O, no web): the compare page diffs bodies, headers and properties with it, and the
aggregates feature diffs an aggregate's state before and after an event. The walk is iterative
(bodies nest deeper than Python's recursion limit allows to recurse), paths are built only for
the changes it reports, and it stops after `max_changes`, so its work and output stay in
proportion to the inputs. Types compare strictly: `true` is not `1`, and `1` is not `1.0` (the
JSON text differs); NaN equals NaN, so a value never differs from itself.

Arrays compare by position: items past the shorter array's end are added or removed; a long
run of them reads better as one line (`summarise`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

PathPart = str | int
Path = tuple[PathPart, ...]
Kind = Literal["added", "removed", "changed"]

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*\Z")  # ASCII only: look-alikes get quotes


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. `before` is None for an added path, `after` None for a removed one
    (`kind` says which; a JSON null is a value like any other)."""

    path: Path
    kind: Kind
    before: Any = None
    after: Any = None


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive items added to or removed from the end of one array: `path` is the array,
    `start`..`stop` (inclusive) the indexes."""

    path: Path
    kind: Literal["added", "removed"]
    start: int
    stop: int
    items: tuple[Any, ...]

    @property
    def count(self) -> int:
        return self.stop - self.start + 1


# A path while walking: (parent link, part) or None at the root; materialised only for the
# changes reported (a tuple per visited node would cost depth × nodes).
_Link = tuple[Any, PathPart] | None


def _path(link: _Link) -> Path:
    parts: list[PathPart] = []
    while link is not None:
        link, part = link
        parts.append(part)
    return tuple(reversed(parts))


def _same_scalar(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def diff(before: Any, after: Any, *, max_changes: int = 1000) -> list[Change]:
    """The changes that turn `before` into `after`, in document order, at most `max_changes`
    (a list that long may be cut short). Objects compare key by key (keys only in `before` are
    removed, keys only in `after` added), arrays index by index."""
    changes: list[Change] = []
    # Work items: a pair to compare, or a change to report (kept in order on one stack).
    stack: list[tuple[_Link, Any, Any] | Change] = [(None, before, after)]
    while stack and len(changes) < max_changes:
        item = stack.pop()
        if isinstance(item, Change):
            changes.append(item)
            continue
        link, a, b = item
        if a is b:
            continue
        work: list[tuple[_Link, Any, Any] | Change] = []
        if isinstance(a, dict) and isinstance(b, dict):
            for key, value in a.items():
                if key in b:
                    work.append(((link, key), value, b[key]))
                else:
                    work.append(Change(_path((link, key)), "removed", value, None))
            work.extend(
                Change(_path((link, key)), "added", None, value)
                for key, value in b.items()
                if key not in a
            )
        elif isinstance(a, list) and isinstance(b, list):
            common = min(len(a), len(b))
            work.extend(((link, i), a[i], b[i]) for i in range(common))
            work.extend(
                Change(_path((link, i)), "removed", a[i], None) for i in range(common, len(a))
            )
            work.extend(
                Change(_path((link, i)), "added", None, b[i]) for i in range(common, len(b))
            )
        elif (isinstance(a, dict | list) or isinstance(b, dict | list)) or not _same_scalar(a, b):
            work.append(Change(_path(link), "changed", a, b))
        stack.extend(reversed(work))
    return changes


def summarise(changes: Iterable[Change], *, min_run: int = 4) -> list[Change | Run]:
    """`changes` with every run of at least `min_run` consecutive array items added (or
    removed) at one array folded into a `Run`, for display."""
    out: list[Change | Run] = []
    pending: list[Change] = []

    def flush() -> None:
        if len(pending) >= min_run:
            first, last = pending[0], pending[-1]
            kind: Literal["added", "removed"] = "added" if first.kind == "added" else "removed"
            items = tuple(c.after if kind == "added" else c.before for c in pending)
            out.append(Run(first.path[:-1], kind, _index(first), _index(last), items))
        else:
            out.extend(pending)
        pending.clear()

    for change in changes:
        if pending and not _continues(pending[-1], change):
            flush()
        if change.kind != "changed" and change.path and _is_index(change.path[-1]):
            pending.append(change)
        else:
            flush()
            out.append(change)
    flush()
    return out


def _is_index(part: PathPart) -> bool:
    return isinstance(part, int) and not isinstance(part, bool)


def _index(change: Change) -> int:
    last = change.path[-1]
    assert isinstance(last, int)
    return last


def _continues(previous: Change, change: Change) -> bool:
    return (
        change.kind == previous.kind
        and change.kind != "changed"
        and change.path[:-1] == previous.path[:-1]
        and _is_index(change.path[-1])
        and _index(change) == _index(previous) + 1
    )


def path_text(path: Sequence[PathPart]) -> str:
    """A path as people read it: `data.items[0].sku`. Keys that are not plain ASCII names
    (dots, brackets, spaces, look-alike letters, digits first, empty) are quoted:
    `headers["x.y"]`, `[""]`. The whole value is `(root)`."""
    if not path:
        return "(root)"
    out: list[str] = []
    for part in path:
        if _is_index(part):
            out.append(f"[{part}]")
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{_quoted(str(part))}]")
    return "".join(out)


def _quoted(key: str) -> str:
    text = json.dumps(key, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: spell it as an escape
        return json.dumps(key)
    return text


def apply(before: Any, changes: Iterable[Change]) -> Any:
    """`before` with `changes` (from `diff(before, after)`) applied: equal to `after`.
    `before` itself is not modified. Changes inside values go first, then removals from the
    last to the first (so array indexes stay valid), then additions in order."""
    result = _copy(before)
    listed = list(changes)
    root = [result]
    ordered = (
        [c for c in listed if c.kind == "changed"]
        + [c for c in reversed(listed) if c.kind == "removed"]
        + [c for c in listed if c.kind == "added"]
    )
    for change in ordered:
        parent: Any = root
        key: PathPart = 0
        for part in change.path:
            parent, key = parent[key], part
        if change.kind == "changed":
            parent[key] = _copy(change.after)
        elif change.kind == "removed":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(int(key), _copy(change.after))
        else:
            parent[key] = _copy(change.after)
    return root[0]


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data, iteratively (deeper than the recursion limit is fine)."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        into, key, item = stack.pop()
        if isinstance(item, dict):
            into[key] = dict.fromkeys(item)
            stack.extend((into[key], k, v) for k, v in item.items())
        elif isinstance(item, list):
            into[key] = [None] * len(item)
            stack.extend((into[key], i, v) for i, v in enumerate(item))
        else:
            into[key] = item
    return root[0]
