"""With the broker gone, the UI keeps serving what is stored and says the recorder is retrying."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from eventscope.web.app import create_app
from tests.conftest import Names, eventually, make_settings
from tests.web.conftest import TOKEN, delivery, store


async def test_stored_events_are_served_while_the_broker_is_unreachable(
    sqlite_url: str, names: Names
) -> None:
    await store(sqlite_url, delivery("order.stored.before"))
    settings = make_settings(
        sqlite_url, names, token=TOKEN, amqp_url="amqp://guest:guest@127.0.0.1:1/"
    )
    app = create_app(settings, migrate=False)  # with its recorder, which cannot connect
    async with AsyncTestClient(app) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        recorder = app.state.web.runtime.recorder
        await eventually(lambda: recorder.status.broker_error is not None, 15, "a failed connect")

        page = await client.get("/", headers=auth)
        assert page.status_code == 200
        assert "order.stored.before" in page.text
        assert "broker unreachable — retrying · not recording" in page.text
        assert 'id="last-stored"' in page.text
        status = (await client.get("/api/status", headers=auth)).json()
        assert status["broker_connected"] is False
        assert status["health"] == "stopped", "never claims health while not recording"
        assert status["last_error"].startswith("broker: ")
        assert status["last_error_at"] is not None
        assert status["last_stored_at"] is None
        assert status["database_reachable"] is True
        assert (await client.get("/healthz")).json() == {"status": "ok"}
