"""The audit log is append-only in the database itself, on SQLite and Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update

from eventscope.backend.audit import entries, record
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.models import audit_log


async def test_entries_are_kept_newest_first_and_cannot_be_changed_or_deleted(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        await record(
            engine, actor="ann", role="operator", action="login", result="ok", client="127.0.0.1"
        )
        await record(
            engine, actor="mallory", action="login", result="failed", reason="bad token\x00"
        )
        rows = await entries(engine, 10)
        assert [(r["actor"], r["result"]) for r in rows] == [("mallory", "failed"), ("ann", "ok")]
        assert rows[0]["reason"] == "bad token\u2400"
        for statement in (update(audit_log).values(result="ok"), delete(audit_log)):
            with pytest.raises(Exception, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(statement)
        assert len(await entries(engine, 10)) == 2
        assert [r["actor"] for r in await entries(engine, 10, before=rows[0]["id"])] == ["ann"]
    finally:
        await engine.dispose()
