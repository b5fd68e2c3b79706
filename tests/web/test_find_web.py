"""Find in the API, the timeline page and the live socket: one filter language everywhere."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import eventually
from tests.web.conftest import ORIGIN, delivery, hub_ready
from tests.web.test_live_socket import NEW_ROWS, receive_until

Client = AsyncTestClient[Litestar]
HTML = {"accept": "text/html"}


async def keys_of(client: Client, **params: Any) -> list[str]:
    response = await client.get("/api/events", params=params)
    assert response.status_code == 200, response.text
    return [item["routing_key"] for item in response.json()["items"]]


async def test_the_api_takes_every_filter(client: Client, put: Callable[..., Any]) -> None:
    await put(
        delivery("order.created", {"id": "e1", "metadata": {"correlationId": "req_1"}}),
        delivery("order.paid", {"id": "e2", "metadata": {"correlationId": "req_1"}}),
        delivery("payment.failed", {"id": "e3", "metadata": {"correlationId": "req_2"}}),
    )
    assert await keys_of(client, routing_key="order.*") == ["order.paid", "order.created"]
    assert await keys_of(client, correlation_id="req_2") == ["payment.failed"]
    assert await keys_of(client, routing_key="order.*", correlation_id="req_2") == []
    page = (await client.get("/api/events", params={"routing_key": "order.*", "limit": 1})).json()
    assert [i["routing_key"] for i in page["items"]] == ["order.paid"]
    more = await keys_of(client, routing_key="order.*", limit=1, before=page["next_before"])
    assert more == ["order.created"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"routing_key": "x." * 200}, "routing_key"),
        ({"since": "yesterday"}, "since"),
        ({"dead_letter": "maybe"}, "dead_letter"),
        ({"header": "nocolon"}, "header"),
        ({"q": "-only"}, "q"),
        ({"corelation_id": "x"}, "corelation_id"),
        ({"field": "data.x:1"}, "field"),
    ],
)
async def test_a_filter_that_cannot_be_parsed_is_a_400_naming_it(
    client: Client, params: dict[str, str], parameter: str
) -> None:
    response = await client.get("/api/events", params=params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{parameter}: ")
    page = await client.get("/", params=params, headers=HTML)
    assert page.status_code == 400
    assert 'id="filter-error"' in page.text, "shown beside the filter bar"
    assert f"{parameter}: " in page.text
    assert 'id="filter-bar"' in page.text


async def test_the_page_shows_chips_counts_and_keeps_the_filter_in_its_links(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(*(delivery(f"order.n{i}") for i in range(3)), delivery("other.k"))
    page = (await client.get("/", params={"routing_key": "order.*"}, headers=HTML)).text
    assert [k for k in re.findall(r'<td class="rk"[^>]*><bdi class="v">([^<]+)', page)] == [
        "order.n2",
        "order.n1",
        "order.n0",
    ]
    assert 'class="chip" href="/?"' in page, "removing the only chip goes back to everything"
    assert "3 matching" in page
    assert 'ws-connect="/ws/live?after=' in page and "routing_key=order.%2A" in page


async def test_clicking_a_value_in_a_row_filters_by_it(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(delivery("order.created", {"id": "e1", "metadata": {"correlationId": "req/../%x"}}))
    page = (await client.get("/", headers=HTML)).text
    link = re.search(r'<a class="fv" href="(/\?correlation_id=[^"]+)"', page)
    assert link is not None
    assert link.group(1) == "/?correlation_id=req%2F..%2F%25x", "ids are encoded in links"
    filtered = await client.get(link.group(1).replace("&amp;", "&"), headers=HTML)
    assert filtered.status_code == 200
    assert "order.created" in filtered.text


async def test_the_live_socket_sends_only_rows_its_filter_selects(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    await hub_ready(app)
    hub = app.state.web.hub
    with await client.websocket_connect(
        "/ws/live?routing_key=order.%2A&q=declined", headers={"origin": ORIGIN}
    ) as session:
        await eventually(lambda: len(hub.subscribers) == 1, 10, "the socket to subscribe")
        await put(
            delivery("order.created", {"note": "card declined"}),
            delivery("order.created", {"note": "accepted"}),
            delivery("payment.failed", {"note": "card declined"}),
        )
        message, _ = receive_until(session, lambda m: NEW_ROWS in m, "the matching row")
        assert message.count('<tr id="e') == 1
        assert "order.created" in message and "payment.failed" not in message


async def test_a_socket_with_a_bad_filter_is_refused(client: Client) -> None:
    from litestar.exceptions import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused:
        session = await client.websocket_connect("/ws/live?since=never", headers={"origin": ORIGIN})
        with session:
            session.receive_text(timeout=5)
    assert refused.value.code == 4400


@pytest.mark.parametrize("settings_overrides", [{"viewer_tokens": ("v1ew",)}])
async def test_a_viewer_cannot_filter_by_a_value_viewers_see_masked(
    anon: Client, put: Callable[..., Any]
) -> None:
    card = "4111111111111111"
    await put(delivery("k", {"id": "e1", "metadata": {"correlationId": card}}))
    viewer = {"Authorization": "Bearer v1ew"}
    refused = await anon.get("/api/events", params={"correlation_id": card}, headers=viewer)
    assert refused.status_code == 400
    assert "masked for viewers" in refused.json()["detail"]
    operator = await anon.get(
        "/api/events", params={"correlation_id": card}, headers={"Authorization": "Bearer t0ken"}
    )
    assert [i["event_id"] for i in operator.json()["items"]] == ["e1"]
