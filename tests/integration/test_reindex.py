"""`eventscope reindex` on both databases: after a rule change the filters find events by the
new rule, nothing is added or lost, an interrupted run resumes, and rows that cannot be read
again are left as they are."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.extraction import DEFAULT_EXTRACTOR, Extractor, load_rules
from eventscope.backend.filters import parse_filter
from eventscope.backend.ingest.committer import reduced_forms
from eventscope.backend.redaction import Redactor
from eventscope.backend.reindex import EXTRACTED, Progress, reindex
from eventscope.backend.search_index import SearchIndexer
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.models import events
from eventscope.backend.store.paging import Cursor

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def message(
    n: int,
    *,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    routing_key: str = "order.created",
    max_body: int = 1 << 20,
    body: bytes | None = None,
    **fields: Any,
) -> dict[str, Any]:
    document = {
        "id": f"evt_{n}",
        "eventType": "OrderCreated",
        "aggregateType": "Order",
        "aggregateId": f"order_{n}",
        "version": 1,
        "timestamp": "2026-12-01T10:00:00Z",
        "metadata": {"correlationId": "body-corr", "source": "order-service"},
        **fields,
    }
    raw = body if body is not None else json.dumps(document).encode()
    delivery = Delivery(
        "events",
        routing_key,
        False,
        properties or {"message_id": f"msg_{n}"},
        headers,
        raw,
        T0 + dt.timedelta(seconds=n),
    )
    return to_row(delivery, max_body)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(database_url)
    yield opened
    await opened.close()


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def extractor(tmp_path: Path, text: str) -> Extractor:
    return Extractor(load_rules(rules_file(tmp_path, text)))


async def find(store: EventStore, **params: str) -> list[str]:
    f = parse_filter({k: [v] for k, v in params.items()}, now=T0 + dt.timedelta(days=1))
    page = (await store.search.page(f, 100)).page
    return sorted(row["event_id"] for row in page.rows)


async def snapshot(store: EventStore) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        result = await conn.execute(select(events).order_by(events.c.id))
        return [dict(r._mapping) for r in result]


def untouched(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything reindex must never change."""
    return [{k: v for k, v in row.items() if k not in EXTRACTED} for row in rows]


async def test_after_a_rule_change_filters_find_events_by_the_new_rule(
    store: EventStore, tmp_path: Path
) -> None:
    await store.write([message(n, headers={"X-Request-Id": f"req-{n % 2}"}) for n in range(6)])
    before = await snapshot(store)
    assert await find(store, correlation_id="req-1") == []
    assert await find(store, correlation_id="body-corr") == [f"evt_{n}" for n in range(6)]

    rules = extractor(tmp_path, '[fields]\ncorrelation_id = ["header:X-Request-Id"]')
    done = await reindex(store, rules, batch=4)

    assert (done.total, done.done, done.updated, done.kept, done.finished) == (6, 6, 6, 0, True)
    assert done.retyped == 0
    assert await find(store, correlation_id="req-1") == ["evt_1", "evt_3", "evt_5"]
    assert await find(store, correlation_id="body-corr") == []
    after = await snapshot(store)
    assert len(after) == 6
    assert untouched(after) == untouched(before)
    again = await reindex(store, rules)
    assert (again.done, again.updated) == (6, 0)


async def test_old_rows_without_source_and_trace_get_them_filled(store: EventStore) -> None:
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01"
    await store.write([message(n, headers={"traceparent": traceparent}) for n in range(3)])
    async with store.engine.begin() as conn:  # as rows recorded before migration 0006 are
        await conn.execute(
            update(events).values(source=None, source_key=None, trace_id=None, trace_key=None)
        )
    assert await find(store, source="order-service") == []

    done = await reindex(store, DEFAULT_EXTRACTOR)

    assert done.updated == 3
    assert await find(store, source="order-service") == ["evt_0", "evt_1", "evt_2"]
    assert await find(store, trace_id=TRACE) == ["evt_0", "evt_1", "evt_2"]


async def test_an_interrupted_run_resumes_where_it_stopped(
    store: EventStore, tmp_path: Path
) -> None:
    await store.write([message(n, headers={"tenant": f"t{n}"}) for n in range(4)])
    await store.write([message(n, headers={"tenant": f"t{n}"}) for n in range(4, 7)])
    rules = extractor(tmp_path, '[fields]\nsource = ["header:tenant"]')
    seen: list[Progress] = []

    first = await reindex(store, rules, batch=2, progress=seen.append, stop=lambda: len(seen) > 1)

    assert not first.finished
    assert (first.done, first.updated, first.total) == (2, 2, 7)
    assert await find(store, source="t1") == ["evt_1"]
    assert await find(store, source="t2") == []  # not reached yet
    rest = await reindex(store, rules, batch=2, start=first.position)
    assert rest.finished
    assert (rest.total, rest.done, rest.updated) == (5, 5, 5)
    for n in range(7):
        assert await find(store, source=f"t{n}") == [f"evt_{n}"]
    rerun = await reindex(store, rules, batch=2)
    assert (rerun.done, rerun.updated) == (7, 0)
    assert len(await snapshot(store)) == 7


async def test_events_recorded_after_the_run_started_are_not_visited(
    store: EventStore, tmp_path: Path
) -> None:
    await store.write([message(n) for n in range(3)])
    rules = extractor(tmp_path, '[fields]\nsource = ["property:message_id"]')
    late: list[int] = []

    async def record_more() -> None:
        await store.write([message(10 + len(late))])
        late.append(1)

    pending: list[Any] = []

    def progress(p: Progress) -> None:
        if p.done == 0:
            pending.append(asyncio.ensure_future(record_more()))

    done = await reindex(store, rules, batch=1, progress=progress)
    await pending[0]
    assert (done.total, done.done) == (3, 3)
    assert await find(store, source="msg_10") == []


async def test_reduced_and_truncated_rows_are_left_as_they_are(
    store: EventStore, tmp_path: Path
) -> None:
    reduced = reduced_forms(message(1, headers={"tenant": "a"}), ValueError("refused"))[0]
    json_cut = message(2, headers={"tenant": "b"}, max_body=40)
    text_cut = message(3, headers={"tenant": "c"}, max_body=10, body=b"plain text, long " * 5)
    await store.write([reduced, json_cut, text_cut])
    before = {row["id"]: row for row in await snapshot(store)}
    assert json_cut["body_truncated"] and json_cut["body_kind"] == "json"
    assert text_cut["body_truncated"] and text_cut["body_kind"] == "text"

    done = await reindex(store, extractor(tmp_path, '[fields]\nsource = ["header:tenant"]'))

    assert (done.done, done.kept, done.updated) == (3, 2, 1)
    after = {row["id"]: row for row in await snapshot(store)}
    for row_id, row in before.items():
        if row["body_kind"] == "text":
            assert after[row_id]["source"] == "c"  # a cut text body never gave a field
        else:
            assert after[row_id] == row
    problems = [row["problem"] for row in after.values() if row["problem"]]
    assert len(problems) == 1 and problems[0].startswith("stored reduced")


async def test_full_text_search_follows_the_new_ids(store: EventStore, tmp_path: Path) -> None:
    await store.write([message(n, properties={"app_id": f"billingsvc{n}"}) for n in range(2)])
    indexer = SearchIndexer(store, Redactor())
    while await indexer.index_some():
        pass
    assert await find(store, q="billingsvc1") == []

    rules = extractor(tmp_path, '[fields]\ncorrelation_id = ["property:app_id"]')
    await reindex(store, rules, mask=Redactor())

    assert await find(store, q="billingsvc1") == ["evt_1"]
    assert await find(store, correlation_id="billingsvc1") == ["evt_1"]
    retyped = await reindex(store, extractor(tmp_path, '[fields]\nevent_type = ["body:id"]'))
    assert retyped.retyped == 2
    assert await find(store, type="evt_0") == ["evt_0"]


async def test_an_unusable_time_is_kept_in_originals_beside_other_originals(
    store: EventStore, tmp_path: Path
) -> None:
    await store.write([message(1, routing_key="a\x00b", when="soon")])
    await reindex(store, extractor(tmp_path, '[fields]\noccurred_at = ["body:when"]'))
    (row,) = await snapshot(store)
    assert row["occurred_at"] is None
    assert json.loads(row["originals"]) == {
        "routing_key": ["s", "a\x00b"],
        "occurred_at": ["s", "soon"],
    }

    await reindex(store, DEFAULT_EXTRACTOR)
    (row,) = await snapshot(store)
    assert json.loads(row["originals"]) == {"routing_key": ["s", "a\x00b"]}
    assert row["occurred_at"].replace(tzinfo=dt.UTC) == T0


HOSTILE_IDS = ["a\x00b", "\u202eevil", "<script>alert(1)</script>", "x" * 3000, "é" * 900]


async def test_hostile_ids_from_a_new_rule_are_stored_and_found_exactly(
    store: EventStore, tmp_path: Path
) -> None:
    await store.write([message(n, headers={"c": value}) for n, value in enumerate(HOSTILE_IDS)])
    await reindex(store, extractor(tmp_path, '[fields]\ncorrelation_id = ["header:c"]'))
    for n, value in enumerate(HOSTILE_IDS):
        assert await find(store, correlation_id=value) == [f"evt_{n}"]
    assert await find(store, correlation_id="x" * 2999) == []


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventscope.web.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


async def test_the_reindex_command_shows_progress_and_updates_the_store(
    store: EventStore, database_url: str, tmp_path: Path
) -> None:
    await store.write([message(n, headers={"X-Request-Id": "req-cli"}) for n in range(5)])
    path = rules_file(tmp_path, '[fields]\ncorrelation_id = ["header:X-Request-Id"]')

    done = run_cli(
        "reindex",
        "--batch-size",
        "2",
        env={"EVENTSCOPE_DATABASE_URL": database_url, "EVENTSCOPE_EXTRACTION_RULES": str(path)},
    )

    assert done.returncode == 0, done.stderr
    assert "[##############################] 100% 5/5 events, 5 updated" in done.stderr
    assert "re-extracted 5 of 5 events: 5 updated" in done.stderr
    assert await find(store, correlation_id="req-cli") == [f"evt_{n}" for n in range(5)]
    again = run_cli("reindex", "--database-url", database_url, "--extraction-rules", str(path))
    assert again.returncode == 0 and "0 updated" in again.stderr


async def test_the_reindex_command_refuses_bad_rules_and_cursors(
    database_url: str, tmp_path: Path
) -> None:
    path = rules_file(tmp_path, '[fields]\nsourse = ["header:x"]')
    refused = run_cli("reindex", "--database-url", database_url, "--extraction-rules", str(path))
    assert refused.returncode == 2
    assert f"{path}: fields.'sourse': unknown field (did you mean source?)" in refused.stderr
    bad_cursor = run_cli("reindex", "--database-url", database_url, "--after", "yesterday")
    assert bad_cursor.returncode != 0
    assert "is not a cursor" in bad_cursor.stderr


async def test_resuming_after_a_cursor_from_the_command_line(
    store: EventStore, database_url: str, tmp_path: Path
) -> None:
    await store.write([message(n, headers={"tenant": f"t{n}"}) for n in range(4)])
    rows = await snapshot(store)
    path = rules_file(tmp_path, '[fields]\nsource = ["header:tenant"]')
    resume = Cursor.of(rows[1])

    done = run_cli(
        "reindex",
        "--database-url",
        database_url,
        "--extraction-rules",
        str(path),
        "--after",
        str(resume),
        "--quiet",
    )

    assert done.returncode == 0, done.stderr
    assert "re-extracted 2 of 2 events: 2 updated" in done.stderr
    assert await find(store, source="t1") == []
    assert await find(store, source="t3") == ["evt_3"]
