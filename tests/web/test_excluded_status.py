"""Excluded routing keys show in the status bar and in /api/status, counted by the recorder
that runs in the app (real broker)."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from eventscope.web.app import create_app
from tests.conftest import Broker, Names, eventually, make_settings
from tests.web.conftest import TOKEN


async def test_the_status_counts_excluded_deliveries(
    sqlite_url: str, names: Names, broker: Broker
) -> None:
    settings = make_settings(sqlite_url, names, token=TOKEN, exclude_routing_keys=("heartbeat.#",))
    app = create_app(settings, migrate=False)
    async with AsyncTestClient(app) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        recorder = app.state.web.runtime.recorder
        await eventually(lambda: recorder.status.broker_connected, 20, "the recorder to connect")
        assert 'id="excluded"' not in (await client.get("/", headers=auth)).text
        for i in range(1234):
            await broker.publish(f"heartbeat.node{i % 3}", b"{}")
        await broker.publish("order.created", b'{"id": "kept"}')

        await eventually(lambda: recorder.status.excluded >= 1234, 30, "1234 excluded")
        await eventually(lambda: recorder.status.stored >= 1, 30, "the event stored")
        status = (await client.get("/api/status", headers=auth)).json()
        assert status["excluded"] == 1234
        page = (await client.get("/", headers=auth)).text
        assert '<span class="metric" id="excluded"' in page
        assert "<b>1,234</b> excluded" in page
