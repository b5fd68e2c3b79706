"""The JSON API, on SQLite and on Postgres: paging, one event in full, status, health, schema."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.envelope import to_row
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.writer import Ledger
from tests.conftest import eventually
from tests.web.conftest import TOKEN, delivery

Client = AsyncTestClient[Litestar]


@pytest.fixture
def web_db(database_url: str) -> str:
    return database_url


async def test_events_are_listed_newest_first(client: Client, put: Callable[..., Any]) -> None:
    ids = await put(*(delivery(f"order.n{i}") for i in range(3)))
    response = await client.get("/api/events")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["id"] for item in items] == list(reversed(ids))
    assert [item["routing_key"] for item in items] == ["order.n2", "order.n1", "order.n0"]
    assert response.json()["next_before"] is None


async def test_limit_caps_the_page(client: Client, put: Callable[..., Any]) -> None:
    ids = await put(*(delivery(f"k.{i}") for i in range(5)))
    items = (await client.get("/api/events", params={"limit": 2})).json()["items"]
    assert [item["id"] for item in items] == [ids[4], ids[3]]


async def test_before_cursor_pages_through_everything_without_overlap(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(*(delivery(f"k.{i}") for i in range(5)))
    seen: list[int] = []
    cursors: list[str | None] = []
    position: dict[int, str] = {}
    params: dict[str, Any] = {"limit": 2}
    for _ in range(10):
        page = (await client.get("/api/events", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        position.update((item["id"], item["cursor"]) for item in page["items"])
        cursors.append(page["next_before"])
        if page["next_before"] is None:
            break
        params = {"limit": 2, "before": page["next_before"]}
    assert seen == list(reversed(ids))
    assert cursors == [position[ids[3]], position[ids[1]], None]


async def test_after_cursor_pages_back_to_the_newest(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(*(delivery(f"k.{i}") for i in range(5)))
    oldest = (await client.get("/api/events", params={"before": ids[1]})).json()
    assert [item["id"] for item in oldest["items"]] == [ids[0]]
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2, "after": oldest["items"][0]["cursor"]}
    for _ in range(10):
        page = (await client.get("/api/events", params=params)).json()
        seen = [item["id"] for item in page["items"]] + seen  # each page is newest first
        if page["next_after"] is None:
            break
        params = {"limit": 2, "after": page["next_after"]}
    assert seen == list(reversed(ids[1:]))


@pytest.mark.parametrize("bad", ["abc", "1-", "-1", "1-2-3", "12345678901234567890-1", "9" * 19])
async def test_a_cursor_that_is_not_one_is_a_400_naming_the_parameter(
    client: Client, bad: str
) -> None:
    response = await client.get("/api/events", params={"before": bad})
    assert response.status_code == 400
    assert "before" in response.json()["detail"]


async def test_page_before_the_oldest_event_is_empty(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(delivery("only"))
    page = (await client.get("/api/events", params={"before": ids[0]})).json()
    assert page == {"items": [], "next_before": None, "next_after": None}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"before": 0}])
async def test_invalid_paging_parameters_are_a_400(client: Client, params: dict[str, Any]) -> None:
    response = await client.get("/api/events", params=params)
    assert response.status_code == 400
    assert "Traceback" not in response.text


async def test_event_detail_has_typed_headers_properties_and_the_raw_body(
    client: Client, put: Callable[..., Any]
) -> None:
    when = dt.datetime(2025, 10, 22, 14, 30, 5, tzinfo=dt.UTC)
    body = b'{"id": "evt_9", "eventType": "OrderPaid", "amount": 12.5}'
    [event_id] = await put(
        delivery(
            "payment.completed",
            body,
            headers={
                "x-tenant": "acme",
                "x-count": 3,
                "x-price": Decimal("9.99"),
                "x-when": when,
                "x-nested": {"a": [1, "b"]},
                "x-blob": bytearray(b"\x00\xff"),
                "x-void": None,
            },
            properties={"content_type": "application/json", "message_id": "m-9", "priority": 4},
        )
    )
    response = await client.get(f"/api/events/{event_id}")
    assert response.status_code == 200
    event = response.json()
    assert event["id"] == event_id
    assert event["routing_key"] == "payment.completed"
    assert event["event_id"] == "evt_9"
    assert event["event_type"] == "OrderPaid"
    assert event["message_id"] == "m-9"
    assert event["headers"]["x-tenant"] == "acme"
    assert event["headers"]["x-count"] == 3
    assert event["headers"]["x-nested"] == {"a": [1, "b"]}
    assert event["headers"]["x-void"] is None
    assert event["headers_typed"]["x-price"] == ["d", "9.99"]
    assert event["headers_typed"]["x-when"] == ["T", when.isoformat()]
    assert event["headers_typed"]["x-blob"] == ["x", base64.b64encode(b"\x00\xff").decode()]
    assert event["headers_typed"]["x-count"] == ["i", 3]
    assert event["properties"] == {
        "content_type": "application/json",
        "message_id": "m-9",
        "priority": 4,
    }
    assert event["properties_typed"]["priority"] == ["i", 4]
    assert base64.b64decode(event["body_base64"]) == body
    assert event["body_text"] == body.decode()
    assert event["body_json"] == {"id": "evt_9", "eventType": "OrderPaid", "amount": 12.5}
    assert event["body_kind"] == "json"
    assert event["body_size"] == len(body)


async def test_binary_body_detail_has_base64_but_no_text_or_json(
    client: Client, put: Callable[..., Any]
) -> None:
    body = b"\x00\x01\xff\xfe binary"
    [event_id] = await put(delivery("blob", body))
    event = (await client.get(f"/api/events/{event_id}")).json()
    assert base64.b64decode(event["body_base64"]) == body
    assert event["body_text"] is None
    assert event["body_json"] is None
    assert event["body_kind"] == "binary"


@pytest.mark.parametrize(
    "body",
    [
        b'{"v": NaN, "w": Infinity}',
        b'{"id": "\\ud800"}',
        b'{"id": "a\\u0000b"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["nan", "lone-surrogate", "nul", "deep"],
)
async def test_hostile_json_body_detail_is_valid_json(
    client: Client, put: Callable[..., Any], body: bytes
) -> None:
    [event_id] = await put(delivery("hostile", body))
    response = await client.get(f"/api/events/{event_id}")
    assert response.status_code == 200
    event = json.loads(response.content.decode("utf-8"), parse_constant=_reject)
    assert base64.b64decode(event["body_base64"]) == body


def _reject(constant: str) -> Any:
    raise AssertionError(f"response is not strict JSON: it contains {constant}")


async def test_unknown_event_is_a_json_404_without_traceback(client: Client) -> None:
    response = await client.get("/api/events/987654")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status_code"] == 404
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


async def test_status_without_recorder_reports_broker_down_and_database_up(
    app: Litestar, put: Callable[..., Any]
) -> None:
    await put(delivery("a"), delivery("b"))  # before the app starts
    async with AsyncTestClient(app) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"

        async def recorded() -> int | None:
            return (await client.get("/api/status")).json()["events_recorded"]

        await eventually(lambda: _equals(recorded(), 2), 10, "events_recorded == 2")
        await put(delivery("c"))
        await eventually(lambda: _equals(recorded(), 3), 10, "events_recorded == 3")

        status = (await client.get("/api/status")).json()
        assert status["broker_connected"] is False
        assert status["database_reachable"] is True


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_healthz_is_ok_without_authentication(anon: Client) -> None:
    response = await anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_openapi_schema_is_served_to_authenticated_clients(anon: Client) -> None:
    response = await anon.get("/schema/openapi.json", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/events" in paths
    assert "/api/events/{event_id}" in paths
    assert "/api/status" in paths


async def test_openapi_schema_needs_authentication(anon: Client) -> None:
    assert (await anon.get("/schema/openapi.json")).status_code == 401


async def test_redelivered_event_is_stored_once(client: Client, web_db: str) -> None:
    """A tap redelivery of a batch its (now gone) recorder session listed is skipped; the
    recorder-level cases are in tests/integration/test_dedup.py."""
    store = EventStore(web_db)
    try:
        await store.write([to_row(delivery("once", b'{"id": "e1"}'), 1024)], Ledger(7, 1))
        again = [to_row(delivery("once", b'{"id": "e1"}', redelivered=True), 1024)]
        result = await store.write(again, Ledger(8, 2, released=frozenset({7})))
    finally:
        await store.close()
    assert (result.stored, result.skipped_redeliveries) == (0, 1)
    items = (await client.get("/api/events")).json()["items"]
    assert [(item["routing_key"], item["observation"]) for item in items] == [("once", 1)]


async def test_a_redelivered_flag_alone_is_a_new_observation(
    client: Client, put: Callable[..., Any]
) -> None:
    """No listing says the recorder took it before: the broker's flag is only a hint."""
    await put(delivery("twice", b'{"id": "e1"}'))
    await put(delivery("twice", b'{"id": "e1"}', redelivered=True))
    items = (await client.get("/api/events")).json()["items"]
    assert [(item["routing_key"], item["observation"]) for item in items] == [
        ("twice", 2),
        ("twice", 1),
    ]


async def test_second_publish_of_the_same_bytes_is_a_duplicate(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(delivery("twice", b'{"id": "e1"}'))
    await put(delivery("twice", b'{"id": "e1"}'))
    items = (await client.get("/api/events")).json()["items"]
    assert [(item["observation"], item["duplicate"]) for item in items] == [(2, True), (1, False)]


HUGE = str(2**64)  # beyond BIGINT: no row can have it


@pytest.mark.parametrize("path", [f"/api/events?before={HUGE}", f"/?before={HUGE}"])
async def test_out_of_range_cursor_is_a_client_error_not_a_crash(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 400
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "path", [f"/api/events/{HUGE}", f"/events/{HUGE}", f"/events/{HUGE}/raw", "/events/-1"]
)
async def test_out_of_range_event_id_is_not_found(client: Client, path: str) -> None:
    assert (await client.get(path)).status_code == 404
