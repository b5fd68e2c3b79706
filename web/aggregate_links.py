"""Links to an aggregate's page (and API): the path form for plain names, the query form for any.

Aggregate types and ids are bus data: they may hold `/`, `..`, `%`, spaces, markup, NUL or be
megabytes long. `/aggregates/{type}/{id}` serves names a single path segment carries;
`/aggregates/view?type=…&id=…` serves every name (no `type`: the events without an aggregate
type). An id whose stored form differs from what was sent (a NUL shown as ␀, more than 1024
characters) is reached with the stored key added (`key=`). A value masked for viewers gets no
link: looking it up would confirm the secret.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote, urlencode

from eventscope.backend.envelope import aggregate_key
from eventscope.backend.redaction import MASK

_PLAIN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@~-]{0,199}\Z")
# One-segment names under /aggregates and /api/aggregates that are routes, not types.
RESERVED: Final = frozenset({"view", "diff", "what-if"})


def _plain(value: str | None) -> bool:
    return value is not None and value not in RESERVED and _PLAIN.match(value) is not None


def aggregate_url(
    aggregate_type: str | None,
    aggregate_id: str | None,
    key: int | None = None,
    *,
    version: int | None = None,
    step: int | None = None,
    event: int | None = None,
    api: bool = False,
) -> str | None:
    """The page (or with `api` the JSON) of an aggregate, at a version, a step or the step of a
    recorded event (row id); None when there is no id or the name is masked for viewers."""
    if not isinstance(aggregate_id, str) or MASK in aggregate_id:
        return None
    if aggregate_type is not None and (
        not isinstance(aggregate_type, str) or MASK in aggregate_type
    ):
        return None  # masked, or not a name (a template's Undefined)
    if not isinstance(key, int) or isinstance(key, bool):
        key = None
    needs_key = key is not None and aggregate_key(aggregate_type, aggregate_id) != key
    at = [
        (name, str(value))
        for name, value in (("version", version), ("step", step), ("event", event))
        if value is not None
    ]
    base = "/api/aggregates" if api else "/aggregates"
    if not needs_key and _plain(aggregate_type) and _plain(aggregate_id):
        assert aggregate_type is not None
        path = f"{base}/{quote(aggregate_type, safe=':@')}/{quote(aggregate_id, safe=':@')}"
        return path + (f"?{urlencode(at)}" if at else "")
    pairs = [] if aggregate_type is None else [("type", aggregate_type)]
    pairs.append(("id", aggregate_id))
    if needs_key:
        pairs.append(("key", str(key)))
    return f"{base}/view?{urlencode(pairs + at)}"
