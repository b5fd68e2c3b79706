"""The one cursor every list, page and the live feed use: commit order, then row id.

Row ids alone are not commit order on Postgres: two recorders take ids from one sequence and may
commit in the other order, and a reader that asks for `id > last` skips the row that committed
late. Each row therefore carries `commit_seq`: on Postgres the id of the transaction that wrote
it, on SQLite a counter taken inside the (exclusive) write transaction. A cursor is the pair
(`commit_seq`, `id`), written `"<seq>-<id>"`; every list orders by it, and the change feed
reads on Postgres only below the oldest transaction still running, so no row can appear behind
a cursor that was already handed out (backend/changefeed.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from eventscope.backend.store.models import events

MAX_LIMIT = 1000
MAX_ROW_ID = 2**63 - 1  # row ids and sequence numbers are BIGINT
_CURSOR = re.compile(r"^(\d{1,19})-(\d{1,19})$")


@dataclass(frozen=True, order=True, slots=True)
class Cursor:
    """A position in commit order: after every row (seq, id) <= this, before every row > it."""

    seq: int
    id: int

    def __str__(self) -> str:
        return f"{self.seq}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """`"<seq>-<id>"`; raises ValueError with a message a user can act on."""
        found = _CURSOR.match(text.strip())
        if found is None:
            raise ValueError(f"{text[:40]!r} is not a cursor (expected <seq>-<id>, e.g. 12-345)")
        seq, row = int(found.group(1)), int(found.group(2))
        if seq > MAX_ROW_ID or row > MAX_ROW_ID:
            raise ValueError(f"{text[:40]!r} is out of range")
        return cls(seq, row)

    @classmethod
    def of(cls, row: dict[str, Any]) -> Cursor:
        return cls(int(row["commit_seq"]), int(row["id"]))


ORIGIN = Cursor(0, 0)  # before every row


def after(cursor: Cursor) -> ColumnElement[bool]:
    """Rows that come after `cursor` in commit order. The plain `commit_seq >=` bound is
    redundant for the result but lets both databases start the index scan at the cursor
    (with the OR alone they walk the commit-order index from its first entry)."""
    seq, row = events.c.commit_seq, events.c.id
    return and_(seq >= cursor.seq, or_(seq > cursor.seq, row > cursor.id))


def before(cursor: Cursor) -> ColumnElement[bool]:
    """Rows that come before `cursor` in commit order (bounded like `after`)."""
    seq, row = events.c.commit_seq, events.c.id
    return and_(seq <= cursor.seq, or_(seq < cursor.seq, row < cursor.id))


NEWEST_FIRST = (events.c.commit_seq.desc(), events.c.id.desc())
OLDEST_FIRST = (events.c.commit_seq.asc(), events.c.id.asc())


def clamp_limit(limit: int | None, default: int) -> int:
    if limit is None:
        return default
    return max(1, min(int(limit), MAX_LIMIT))


@dataclass(frozen=True)
class Page:
    """One page of a list and where the next ones start (None: nothing more that way)."""

    rows: list[dict[str, Any]]
    older: Cursor | None  # pass as `before` for the next older page
    newer: Cursor | None  # pass as `after` for the next newer page

    @classmethod
    def of(
        cls, rows: Sequence[dict[str, Any]], limit: int, *, newest_first: bool, more_newer: bool
    ) -> Page:
        """The next-cursor rule, written once: a full page may have more beyond its last row;
        `more_newer` says whether rows newer than the first one exist (a page read with
        `before` always has some)."""
        items = list(rows)
        if not newest_first:
            items.reverse()  # pages are always shown newest first
        full = len(rows) == limit
        oldest = Cursor.of(items[-1]) if items else None
        newest = Cursor.of(items[0]) if items else None
        if newest_first:
            return cls(items, oldest if full else None, newest if more_newer else None)
        return cls(items, oldest if items else None, newest if full else None)
