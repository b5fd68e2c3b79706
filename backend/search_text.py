"""What the full-text index holds for one event: words of its routing key, ids, headers and
the first part of its body — with secrets masked as viewers see them, so a search can never
reveal a value a viewer sees masked (for anyone: operators search the same index).

The text is reduced to words (letters and digits) separated by single spaces before either
database sees it, so SQLite's FTS5 and Postgres' `simple` text search split it the same way:
`order.created` is the two words `order created` in both.
"""

from __future__ import annotations

import json
import re
from typing import Any

from eventscope.backend.fieldtable import plain
from eventscope.backend.redaction import Redactor

BODY_PREFIX = 32 * 1024  # bytes of body indexed (Postgres refuses a tsvector over 1 MB)
MAX_TEXT = 64 * 1024  # characters of words per event
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def words_only(text: str) -> str:
    """Letters and digits, lowercased, single spaces between words."""
    return _NOT_WORD.sub(" ", text).strip().lower()


def _values(data: Any, out: list[str]) -> None:
    """Every key and scalar of a JSON document, iteratively (any depth)."""
    stack = [data]
    while stack and len(out) < 20_000:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                out.append(str(key))
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None:
            out.append(str(item))


def search_text(row: dict[str, Any], mask: Redactor) -> str:
    """The words the index holds for `row` (a stored event with body and headers)."""
    parts: list[str] = [
        str(row.get(name) or "")
        for name in (
            "routing_key",
            "exchange",
            "event_type",
            "event_id",
            "correlation_id",
            "aggregate_type",
            "aggregate_id",
            "message_id",
        )
    ]
    try:
        headers = mask.tagged(json.loads(row.get("headers") or "{}"))
    except (ValueError, TypeError):
        headers = {}
    for name, tagged in headers.items():
        parts.append(name)
        _values(plain(tagged), parts)
    body = bytes(row.get("body") or b"")[:BODY_PREFIX]
    kind = row.get("body_kind")
    if kind == "json":
        try:
            _values(mask.data(json.loads(body)), parts)
        except (ValueError, RecursionError):
            parts.append(mask.text(body.decode("utf-8", "replace")))
    elif kind == "text":
        parts.append(mask.text(body.decode("utf-8", "replace")))
    return words_only(" ".join(parts))[:MAX_TEXT]
