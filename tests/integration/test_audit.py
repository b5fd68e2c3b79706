"""The audit log is append-only in the database itself, on SQLite and Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update

from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.models import audit_log


async def test_entries_are_kept_newest_first_and_cannot_be_changed_or_deleted(
    database_url: str,
) -> None:
    store = EventStore(database_url)
    audit = store.audit
    try:
        await audit.record(
            actor="ann", role="operator", action="login", result="ok", client="127.0.0.1"
        )
        await audit.record(actor="mallory", action="login", result="failed", reason="bad token\x00")
        rows = await audit.entries(10)
        assert [(r["actor"], r["result"]) for r in rows] == [("mallory", "failed"), ("ann", "ok")]
        assert rows[0]["reason"] == "bad token\u2400"
        for statement in (update(audit_log).values(result="ok"), delete(audit_log)):
            with pytest.raises(Exception, match="append-only"):
                async with store.engine.begin() as conn:
                    await conn.execute(statement)
        assert len(await audit.entries(10)) == 2
        assert [r["actor"] for r in await audit.entries(10, before=rows[0]["id"])] == ["ann"]
    finally:
        await store.close()
