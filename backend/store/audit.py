"""The audit log: logins, failed logins and every operator action, append-only.

The database refuses UPDATE and DELETE on the table (triggers, migration 0002), so a bug or a
compromised process cannot quietly rewrite history through this code path.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from eventscope.backend.envelope import db_text
from eventscope.backend.store.models import audit_log

if TYPE_CHECKING:
    from eventscope.backend.store.eventstore import EventStore

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def record(
        self,
        *,
        actor: str,
        action: str,
        result: str,
        role: str | None = None,
        target: str | None = None,
        reason: str | None = None,
        client: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry. A failure is logged loudly and re-raised: an action without its
        audit entry must not look successful."""
        row = {
            "at": dt.datetime.now(dt.UTC),
            "actor": db_text(actor, 200) or "?",
            "role": role,
            "action": action,
            "target": db_text(target, 500),
            "reason": db_text(reason, 2000),
            "result": result,
            "client": db_text(client, 100),
            "details": json.dumps(details, ensure_ascii=True, default=str) if details else None,
        }
        try:
            async with self.store.engine.begin() as conn:
                await conn.execute(insert(audit_log), [row])
        except Exception:
            log.exception("audit entry not written: %s %s by %s", action, result, actor)
            raise

    async def entries(self, limit: int, before: int | None = None) -> list[dict[str, Any]]:
        """Newest first, keyset paged by id (one writer order: the audit log has no feed)."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(audit_log.c.id < before)
        async with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]
