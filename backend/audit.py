"""The audit log: logins, failed logins and every operator action, append-only.

The database refuses UPDATE and DELETE on the table (triggers, migration 0002), so a bug or a
compromised process cannot quietly rewrite history through this code path.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend.envelope import db_text
from eventscope.backend.store.models import audit_log

log = logging.getLogger(__name__)


async def record(
    engine: AsyncEngine,
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
        async with engine.begin() as conn:
            await conn.execute(insert(audit_log), [row])
    except Exception:
        log.exception("audit entry not written: %s %s by %s", action, result, actor)
        raise


async def entries(
    engine: AsyncEngine, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """Newest first, keyset paged by id."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_log.c.id < before)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]
