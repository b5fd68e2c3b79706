"""`GET /api/events/export` over HTTP: the filtered events as an attachment (NDJSON or JSON),
400s that name the parameter before anything streams, viewers' exports masked and marked,
every export audited, the body streamed (chunked) by a real server, and the page's links."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.export_read import read_export, read_records
from eventscope.web.app import create_app
from tests.conftest import Names, free_port, make_settings
from tests.web.conftest import TOKEN, delivery
from tests.web.serving import serving
from tests.web.test_security import HTML, MASK, VIEWER, bearer

Client = AsyncTestClient[Litestar]
EXPORT = "/api/events/export"
FILENAME = re.compile(r'^attachment; filename="eventscope-events-\d{8}T\d{6}Z\.(ndjson|json)"$')


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,)}


def compact(document: dict[str, Any]) -> bytes:
    """A body as JavaScript's JSON.stringify writes it: exported parsed (`body`)."""
    return json.dumps(document, separators=(",", ":")).encode()


async def _orders(put: Callable[..., Any]) -> list[int]:
    return list(
        await put(
            delivery("order.created", compact({"id": "evt_1", "password": "hunter2"})),
            delivery("payment.failed", compact({"id": "evt_2"})),
            delivery("order.paid", compact({"id": "evt_3"}), headers={"x-token": "s3cr3t"}),
        )
    )


async def test_the_filtered_events_download_as_ndjson(
    client: Client, put: Callable[..., Any]
) -> None:
    first, _, third = await _orders(put)
    response = await client.get(EXPORT, params={"routing_key": "order.*"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert FILENAME.match(response.headers["content-disposition"])
    assert response.headers["content-disposition"].endswith('.ndjson"')
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-eventscope-masked"] == "false"
    got = list(read_records(response.content))
    assert [r["id"] for r in got] == [first, third]  # oldest first
    assert got[0]["body"] == {"id": "evt_1", "password": "hunter2"}


async def test_json_format_is_one_array_of_the_same_records(
    client: Client, put: Callable[..., Any]
) -> None:
    await _orders(put)
    ndjson = await client.get(EXPORT)
    array = await client.get(EXPORT, params={"format": "json"})
    assert array.headers["content-type"].startswith("application/json")
    assert array.headers["content-disposition"].endswith('.json"')
    assert json.loads(array.content) == list(read_records(ndjson.content))
    empty = await client.get(EXPORT, params={"format": "json", "type": "nothing"})
    assert json.loads(empty.content) == []


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"routng_key": "x"}, "routng_key: not a filter (did you mean routing_key?)"),
        ({"since": "yesterday"}, "since:"),
        ({"format": "xml"}, "format: 'xml' is not ndjson or json"),
        ({"before": "abc"}, "before:"),
        ({"before": "1-1", "after": "1-1"}, "`before`"),
    ],
)
async def test_a_bad_parameter_is_a_400_naming_it(
    client: Client, params: dict[str, str], named: str
) -> None:
    response = await client.get(EXPORT, params=params)
    assert response.status_code == 400
    assert named in response.json()["detail"]


async def test_no_credentials_no_export(anon: Client) -> None:
    response = await anon.get(EXPORT)
    assert response.status_code == 401


async def test_a_viewer_gets_a_masked_export_that_says_so(
    anon: Client, put: Callable[..., Any]
) -> None:
    await _orders(put)
    response = await anon.get(EXPORT, headers=bearer(VIEWER))
    assert response.status_code == 200
    assert response.headers["x-eventscope-masked"] == "true"
    assert "hunter2" not in response.text and "s3cr3t" not in response.text
    got = list(read_export(response.content))
    assert all(m.record["masked"] and not m.exact for m in got)
    assert got[0].record["body"]["password"] == MASK
    refused = await anon.get(
        EXPORT, params={"correlation_id": "4111111111111111"}, headers=bearer(VIEWER)
    )
    assert refused.status_code == 400  # a match would confirm a masked value


async def test_every_export_is_audited(client: Client, put: Callable[..., Any]) -> None:
    await _orders(put)
    await client.get(EXPORT, params={"routing_key": "order.*", "format": "json"})
    entries = (await client.get("/api/audit")).json()["items"]
    (entry,) = [e for e in entries if e["action"] == "export"]
    assert entry["target"] == "routing_key=order.%2A"
    assert json.loads(entry["details"]) == {"format": "json", "masked": False}


async def test_the_timeline_links_export_the_current_filter(
    client: Client, put: Callable[..., Any]
) -> None:
    await _orders(put)
    page = await client.get("/", params={"routing_key": "order.*"}, headers=HTML)
    links = re.findall(r'href="(/api/events/export\?[^"]*)"', page.text)
    assert links == [
        "/api/events/export?routing_key=order.%2A&amp;format=ndjson",
        "/api/events/export?routing_key=order.%2A&amp;format=json",
    ]
    bad = await client.get("/", params={"since": "nonsense"}, headers=HTML)
    assert 'id="export"' not in bad.text  # no link that would export everything instead


async def test_a_real_server_streams_the_export_in_chunks(
    web_db: str, names: Names, put: Callable[..., Any]
) -> None:
    await put(*(delivery(f"order.{n}", compact({"n": n, "pad": "x" * 500})) for n in range(1200)))
    port = free_port()
    settings = make_settings(web_db, names, token=TOKEN, port=port, allowed_hosts=("127.0.0.1",))
    app = create_app(settings, run_recorder=False, migrate=False)
    with serving(app, port) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=120) as http,
            http.stream("GET", EXPORT, headers=bearer(TOKEN)) as response,
        ):
            assert response.status_code == 200
            assert response.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in response.headers
            data = b"".join([chunk async for chunk in response.aiter_raw()])
    assert [r["body"]["n"] for r in read_records(data)] == list(range(1200))
