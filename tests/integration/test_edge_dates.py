"""Dates at the calendar's edges through the recorder into both databases, read back by every
page and API answer (hardening item 3: year 1 on SQLite used to make `/` answer 500)."""

from __future__ import annotations

import datetime as dt
import json

from litestar.testing import AsyncTestClient

from eventscope.web.app import create_app
from eventscope.web.display import as_utc
from tests.conftest import Broker, Names, eventually, make_settings
from tests.integration.test_ingest import stored_rows

EDGES: list[tuple[object, dt.datetime | None]] = [
    ("0001-01-01T00:00:00Z", dt.datetime(1, 1, 1, tzinfo=dt.UTC)),  # Go's zero time
    ("0001-01-01T00:00:00+14:00", None),  # before year 1 in UTC: kept as text
    ("9999-12-31T23:59:59.999999Z", dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)),
    ("9999-12-31T23:59:59-14:00", None),
    (-62_135_596_800, dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
    (1_764_547_200_123_456_789, dt.datetime(2025, 12, 1, 0, 0, 0, 123456, tzinfo=dt.UTC)),
    (-(10**30), None),
]


async def test_edge_dates_are_stored_read_back_and_shown(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(database_url, names, token="t")
    run = await start_recorder(settings)
    for n, (value, _) in enumerate(EDGES):
        body = json.dumps({"id": f"edge_{n}", "timestamp": value}).encode()
        await broker.publish(f"edge.{n}", body)
    await eventually(lambda: run.recorder.status.stored >= len(EDGES), 20, "all edges stored")
    await run.halt()

    rows = await stored_rows(database_url)
    assert [as_utc(r["occurred_at"]) for r in rows] == [expected for _, expected in EDGES]

    app = create_app(settings, run_recorder=False, migrate=False)
    async with AsyncTestClient(app) as client:
        auth = {"Authorization": "Bearer t"}
        timeline = await client.get("/", headers=auth)
        assert timeline.status_code == 200
        listing = await client.get("/api/events", headers=auth)
        assert listing.status_code == 200
        by_id = {item["event_id"]: item for item in listing.json()["items"]}
        assert by_id["edge_0"]["occurred_at"] == "0001-01-01T00:00:00.000Z"
        assert by_id["edge_1"]["occurred_at"] is None
        for row in rows:
            page = await client.get(f"/events/{row['id']}", headers=auth)
            assert page.status_code == 200
            assert (await client.get(f"/api/events/{row['id']}", headers=auth)).status_code == 200
        kept = await client.get(f"/events/{rows[1]['id']}", headers=auth)
        assert 'id="occurred-kept"' in kept.text, "the original text is shown as the time"
        assert "0001-01-01T00:00:00+14:00" in kept.text.split('id="occurred-kept"')[0]
