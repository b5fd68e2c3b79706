"""Trace pages and API: `/correlations/{id}`, `/correlations?id=`, `/api/correlations/{id}`,
the recent list. Hostile ids (paths, markup, bidi), viewers, empty states, scroll paging."""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import eventually
from tests.web.conftest import ORIGIN, delivery, hub_ready
from tests.web.test_live_socket import NEW_ROWS, receive_until
from tests.web.test_security import HTML, MASK, VIEWER

Client = AsyncTestClient[Litestar]
CARD = "4111111111111111"


def seed(n: int, key: str, correlation: str, *, cause: int | None = None, **extra: Any) -> Any:
    """A seed-style event `evt_<n>` of a correlation, at second n of the flow."""
    body: dict[str, Any] = {
        "id": f"evt_{n}",
        "type": key,
        "timestamp": f"2026-12-01T10:00:{n:02d}.000Z",
        "metadata": {
            "correlationId": correlation,
            "source": extra.pop("source", "order-service"),
            **({"causationId": f"evt_{cause}"} if cause is not None else {}),
        },
        **extra,
    }
    return body


def order_flow(correlation: str) -> list[Any]:
    """created → reserved → paid, a seed dead letter of `reserved`, a TTL retry of `paid`."""
    created = seed(1, "order.created", correlation)
    reserved = seed(3, "inventory.reserved", correlation, cause=1, source="inventory-service")
    paid = seed(5, "order.paid", correlation, cause=3, source="payment-service")
    return [
        delivery("order.created", created),
        delivery("inventory.reserved", reserved),
        delivery("order.paid", paid),
        delivery(
            "dlq.inventory.reserved",
            {"originalEvent": reserved, "error": "warehouse down", "retries": 3},
            properties={"app_id": "analytics-service"},
        ),
        delivery(
            "order.paid",
            paid,
            headers={
                "x-death": [
                    {"queue": "retry.5s", "reason": "expired", "count": 2, "exchange": "retry"},
                    {"queue": "shipping", "reason": "rejected", "count": 2, "exchange": "events"},
                ]
            },
        ),
    ]


def step_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="s(\d+)" class="step', page)]


async def test_the_trace_shows_the_waterfall_lanes_tree_and_a_dead_letter_by_its_event(
    client: Client, put: Callable[..., Any]
) -> None:
    created, reserved, paid, dead, retry = await put(*order_flow("req_flow"))
    await put(delivery("other.event", seed(2, "other.event", "req_other")))
    page = await client.get("/correlations/req_flow", headers=HTML)
    assert page.status_code == 200, page.text
    assert step_ids(page.text) == [created, reserved, dead, paid, retry]
    row = page.text[page.text.index(f'id="s{dead}"') :]
    assert f'dead letter of <a href="#s{reserved}">#{reserved}</a>' in row.split("</tr>")[0]
    row = page.text[page.text.index(f'id="s{retry}"') :].split("</tr>")[0]
    assert "retry 2 of" in row and "dead letter" not in row, "a TTL retry is not a failure"
    names = re.findall(r'<span class="lane-name service"[^>]*><bdi class="v">([^<]+)', page.text)
    assert names == ["order-service", "inventory-service", "payment-service"]
    assert 'id="sum-events">5<' in page.text
    assert re.search(r'id="sum-dead"[^>]*>1 <span class="note">· 1 retry', page.text)
    assert 'id="tree"' in page.text and 'class="d1' in page.text and 'class="d2' in page.text
    assert "req_other" not in page.text.split('id="trace-live"')[0]

    data = (await client.get("/api/correlations/req_flow")).json()
    assert [i["id"] for i in data["items"]] == [created, reserved, dead, paid, retry]
    roles = {i["id"]: (i["role"], i["copy_of"], i["cause"]) for i in data["items"]}
    assert roles[dead] == ("dead_letter", reserved, reserved)
    assert roles[retry] == ("retry", paid, paid)
    assert roles[paid] == ("event", None, reserved)
    assert data["summary"]["events"] == 5
    assert data["summary"]["dead_letters"] == 1 and data["summary"]["retries"] == 1
    assert data["summary"]["duration_ms"] == 4000
    assert [lane["service"] for lane in data["lanes"]] == [
        "order-service",
        "inventory-service",
        "payment-service",
    ]
    assert data["items"][1]["offset_ms"] == 2000 and data["items"][1]["gap_ms"] == 2000
    tree = {n["id"]: (n["depth"], n["parent"]) for n in data["tree"]}
    assert tree[paid] == (2, reserved) and tree[dead] == (2, reserved)
    assert data["next_after"] is None


HOSTILE_IDS = [
    "../../admin",
    "a/b/../c",
    "100%25%2F",
    "%2e%2e",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "req\u202egnp.exe",
    "req\u200bzero",
    "{{7*7}}",
    "..",
]


@pytest.mark.parametrize("correlation", HOSTILE_IDS)
async def test_any_id_opens_by_the_query_form_and_changes_nothing_else(
    client: Client, put: Callable[..., Any], correlation: str
) -> None:
    (event_id,) = await put(delivery("order.created", seed(1, "order.created", correlation)))
    page = await client.get("/correlations", params={"id": correlation}, headers=HTML)
    assert page.status_code == 200, page.text
    assert step_ids(page.text) == [event_id]
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    if "{{" in correlation:
        assert "{{7*7}}" in page.text, "shown literally, never evaluated"
    if "\u202e" in correlation:
        assert "U+202E" in page.text and "\u202e" not in page.text, "bidi made visible"
    api = await client.get("/api/correlations", params={"id": correlation})
    assert api.status_code == 200
    assert api.json()["correlation_id"] == correlation
    assert [i["id"] for i in api.json()["items"]] == [event_id]

    timeline = (await client.get("/", headers=HTML)).text
    link = re.search(r'<a class="tl" href="([^"]+)"', timeline)
    assert link is not None
    href = html.unescape(link.group(1))
    assert href == "/correlations?" + urllib.parse.urlencode({"id": correlation})
    assert step_ids((await client.get(href, headers=HTML)).text) == [event_id]


async def test_the_path_form_takes_ids_a_segment_can_carry_and_never_routes_elsewhere(
    client: Client, put: Callable[..., Any]
) -> None:
    (plain,) = await put(delivery("order.created", seed(1, "order.created", "req 100%")))
    page = await client.get("/correlations/req%20100%25", headers=HTML)
    assert page.status_code == 200 and step_ids(page.text) == [plain]
    api = await client.get("/api/correlations/req%20100%25")
    assert api.json()["correlation_id"] == "req 100%"
    await put(delivery("order.created", seed(1, "order.created", "a/b")))
    # %2F is decoded before routing: two segments, no trace route; never another page.
    for path in ("/correlations/a%2Fb", "/correlations/..%2F..%2Fadmin", "/api/correlations/a%2Fb"):
        response = await client.get(path, headers=HTML)
        assert response.status_code == 404, path
        assert 'id="waterfall"' not in response.text


async def test_ids_match_exactly_never_by_prefix_or_look_alike(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(
        delivery("a.one", seed(1, "a.one", "req_1")),
        delivery("a.two", seed(2, "a.two", "req_10")),
        delivery("a.three", seed(3, "a.three", "req_\u0031\u200b")),
        delivery("a.four", seed(4, "a.four", "r\u0435q_1")),  # Cyrillic е
        delivery("a.five", seed(5, "a.five", "REQ_1")),
    )
    for correlation, expected in (
        ("req_1", ids[0]),
        ("req_10", ids[1]),
        ("req_1\u200b", ids[2]),
        ("r\u0435q_1", ids[3]),
    ):
        data = (await client.get("/api/correlations", params={"id": correlation})).json()
        assert [i["id"] for i in data["items"]] == [expected], correlation
        assert data["summary"]["events"] == 1
    assert (await client.get("/api/correlations/req_")).status_code == 404


async def test_an_unknown_id_is_a_404_with_an_empty_state_that_still_follows_live(
    client: Client,
) -> None:
    page = await client.get("/correlations/req_nothing", headers=HTML)
    assert page.status_code == 404
    assert 'id="trace-empty"' in page.text
    assert 'ws-connect="/ws/live?after=' in page.text and "correlation_id=req_nothing" in page.text
    api = await client.get("/api/correlations/req_nothing")
    assert api.status_code == 404
    assert api.json() == {"status_code": 404, "detail": "no event carries this correlation id"}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"id": ""}, "id: give a correlation id"),
        ({"id": "x", "after": "nope"}, "after: 'nope' is not a trace cursor"),
        ({"id": "x", "limit": "0"}, "Validation failed"),
        ({"id": "x", "limit": "1001"}, "Validation failed"),
        ({"routing_key": "x." * 200}, "routing_key: "),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    client: Client, params: dict[str, str], detail: str
) -> None:
    response = await client.get("/api/correlations", params=params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)


async def test_a_long_trace_opens_with_its_first_page_and_loads_the_rest_on_scroll(
    client: Client, put: Callable[..., Any]
) -> None:
    events = [
        delivery(
            "step",
            {
                "id": f"e{n}",
                "timestamp": 1_700_000_000_000 + (n * 7919) % 650,
                "metadata": {"correlationId": "req_long", "source": f"s{n % 4}"},
            },
        )
        for n in range(650)
    ]
    await put(*events)
    page = await client.get("/correlations/req_long", headers=HTML)
    assert len(step_ids(page.text)) == 300
    assert 'id="sum-events">650<' in page.text
    seen = step_ids(page.text)
    more = re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', page.text)
    while more:
        fragment = await client.get(html.unescape(more.group(1)), headers={"hx-request": "true"})
        assert fragment.status_code == 200
        assert "<html" not in fragment.text, "a fragment, not a page"
        seen += step_ids(fragment.text)
        more = re.search(r'hx-get="([^"]+)" hx-trigger="revealed"', fragment.text)
    assert len(seen) == len(set(seen)) == 650
    api = (await client.get("/api/correlations/req_long", params={"limit": 1000})).json()
    assert [i["id"] for i in api["items"]] == seen, "the page and the API agree on the order"
    offsets = [i["offset_ms"] for i in api["items"]]
    assert offsets == sorted(offsets)


async def test_a_viewer_sees_masked_values_and_cannot_look_up_a_masked_id(
    anon: Client, put: Callable[..., Any]
) -> None:
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303
    await put(
        delivery(
            "order.created",
            seed(1, "order.created", "req_v", source=f"svc card {CARD}"),
        ),
        delivery("order.created", seed(2, "order.created", f"card {CARD}")),
    )
    page = await anon.get("/correlations/req_v", headers=HTML)
    assert page.status_code == 200
    assert CARD not in page.text and MASK in page.text
    data = (await anon.get("/api/correlations/req_v")).json()
    assert CARD not in str(data) and MASK in data["lanes"][0]["service"]
    refused = await anon.get("/api/correlations", params={"id": f"card {CARD}"})
    assert refused.status_code == 400 and "masked" in refused.json()["detail"]
    listed = await anon.get("/correlations", headers=HTML)
    assert CARD not in listed.text
    assert CARD not in (await anon.get("/api/correlations")).text


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,)}


async def test_recent_correlations_are_listed_with_summaries_and_the_filter_bar(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(*order_flow("req_listed"))
    await put(delivery("payment.failed", seed(9, "payment.failed", "req_second")))
    await put(delivery("no.correlation", {"id": "x"}))
    page = await client.get("/correlations", headers=HTML)
    assert page.status_code == 200
    assert 'id="filter-bar"' in page.text and 'action="/correlations"' in page.text
    listed = re.findall(r'<td class="co"><a href="/correlations\?id=([^"]+)"', page.text)
    assert listed == ["req_second", "req_listed"]
    data = (await client.get("/api/correlations")).json()
    first = {i["correlation_id"]: i["summary"] for i in data["items"]}
    assert first["req_listed"]["events"] == 5 and first["req_listed"]["dead_letters"] == 1
    assert first["req_listed"]["retries"] == 1
    filtered = await client.get("/correlations", params={"routing_key": "payment.*"}, headers=HTML)
    assert re.findall(r'<td class="co"><a href="/correlations\?id=([^"]+)"', filtered.text) == [
        "req_second"
    ]
    assert 'class="chip"' in filtered.text
    bad = await client.get("/correlations", params={"since": "yesterday"}, headers=HTML)
    assert bad.status_code == 400 and 'id="filter-error"' in bad.text


async def test_new_events_of_the_correlation_arrive_on_the_pages_live_socket(
    client: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    await hub_ready(app)
    await put(delivery("order.created", seed(1, "order.created", "req_live")))
    hub = app.state.web.hub
    await eventually(lambda: hub.position and hub.position.id >= 1, 10, "the feed to pass it")
    page = (await client.get("/correlations/req_live", headers=HTML)).text
    socket_url = html.unescape(re.search(r'ws-connect="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    assert "after=0-0" not in socket_url, "the page's own rows are not sent again"
    before = len(hub.subscribers)
    with await client.websocket_connect(socket_url, headers={"origin": ORIGIN}) as session:
        await eventually(lambda: len(hub.subscribers) > before, 10, "the socket to subscribe")
        await put(
            delivery("order.paid", seed(2, "order.paid", "req_live")),
            delivery("order.paid", seed(3, "order.paid", "req_live_not")),
        )
        message, _ = receive_until(session, lambda m: NEW_ROWS in m, "new rows")
    assert "order.paid" in message and "req_live_not" not in message


async def test_the_event_page_and_timeline_rows_link_to_the_trace_and_keep_the_filter(
    client: Client, put: Callable[..., Any]
) -> None:
    (event_id,) = await put(delivery("order.created", seed(1, "order.created", "req/linked")))
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert 'id="open-trace" href="/correlations?id=req%2Flinked"' in detail
    row = (await client.get("/", headers=HTML)).text
    assert 'class="tl" href="/correlations?id=req%2Flinked"' in row
    assert 'class="fv" href="/?correlation_id=req%2Flinked"' in row


@pytest.mark.parametrize(
    "settings_overrides",
    [{"viewer_tokens": (VIEWER,), "redact_fields": ("password", "correlation", "source")}],
)
async def test_columns_named_secret_are_masked_whole_for_viewers(
    anon: Client, put: Callable[..., Any]
) -> None:
    """With `correlation` and `source` secret words, a viewer lists traces without their ids or
    services (as the timeline shows them), and cannot open one by its id."""
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303
    await put(delivery("order.created", seed(1, "order.created", "req_plain")))
    items = (await anon.get("/api/correlations")).json()["items"]
    assert [i["correlation_id"] for i in items] == [MASK]
    assert [s["source"] for s in items[0]["summary"]["services"]] == [MASK]
    assert "req_plain" not in (await anon.get("/correlations", headers=HTML)).text
    assert (await anon.get("/api/correlations/req_plain")).status_code == 400
