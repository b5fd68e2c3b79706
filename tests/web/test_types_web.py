"""/types and /api/types: the catalog of event types as people and scripts see it: counts,
links into the timeline and to the events that showed a shape change, the rate chart, the
empty state, hostile names shown as text, and samples masked for viewers."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.envelope import Delivery
from tests.conftest import eventually
from tests.web.conftest import TOKEN, delivery
from tests.web.test_security import HTML, MASK, VIEWER

Client = AsyncTestClient[Litestar]
CARD = "4111 1111 1111 1111"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,)}


@pytest.fixture
async def viewer(anon: Client) -> Client:
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return anon


def order(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"evt_{n}", "eventType": "OrderCreated", "data": {"total": n}, **extra}


async def catalogued(client: Client, events: int) -> dict[str, Any]:
    """/api/types once the catalog (running in the app) has counted `events` events."""
    found: dict[str, Any] = {}

    async def counted() -> bool:
        response = await client.get("/api/types")
        assert response.status_code == 200, response.text
        found.update(response.json())
        return sum(t["events"] for t in found["items"]) >= events

    await eventually(counted, 30, f"the catalog to count {events} events")
    return found


async def test_no_events_yet_shows_the_empty_state(client: Client) -> None:
    page = await client.get("/types", headers=HTML)
    assert page.status_code == 200
    assert "No events recorded yet" in page.text
    assert 'aria-current="page">Types<' in page.text
    api = (await client.get("/api/types")).json()
    assert (api["items"], api["total"]) == ([], 0)


async def test_a_type_shows_its_count_routing_keys_shape_sample_and_timeline_link(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(*(delivery("order.created", order(n)) for n in range(3)))
    found = await catalogued(client, 3)
    (item,) = found["items"]
    assert (item["name"], item["kind"], item["events"]) == ("OrderCreated", "type", 3)
    assert item["routing_keys"] == [{"routing_key": "order.created", "events": 3}]
    assert item["first_event_id"] == ids[0]
    assert item["sample"] == {"event_id": ids[-1], "kind": "json", "value": order(2)}
    assert {"path": "data.total", "types": ["integer"], "optional": False} in item["shape"]["paths"]
    assert item["timeline"] == "/?type=OrderCreated"
    page = (await client.get("/types", headers=HTML)).text
    assert 'href="/?type=OrderCreated"' in page
    assert f'href="/events/{ids[-1]}"' in page
    assert "data.total" in page
    assert "style=" not in page  # the CSP allows no inline style


async def test_a_shape_change_links_to_the_first_event_that_showed_it(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(delivery("order.created", order(1)))
    await catalogued(client, 1)
    changed, _ = await put(
        delivery("order.created", order(2, coupon="X")),
        delivery("order.created", order(3, coupon="Y")),
    )
    found = await catalogued(client, 3)
    (item,) = found["items"]
    assert item["changes"] == 1
    (flagged,) = item["recent_changes"]
    assert flagged["event_id"] == changed
    assert flagged["changes"] == [
        {"path": "coupon", "change": "added", "before": [], "after": ["string"]}
    ]
    page = (await client.get("/types", headers=HTML)).text
    assert f'<a href="/events/{changed}" title="the first event that showed it">' in page
    history = await client.get(f"/api/types/{item['key']}/changes")
    assert [c["event_id"] for c in history.json()["items"]] == [changed]


async def test_dead_letters_are_not_types(client: Client, put: Callable[..., Any]) -> None:
    await put(
        delivery("order.created", order(1)),
        delivery("dlq.order.created", {"originalEvent": order(2), "error": "boom"}),
    )
    found = await catalogued(client, 1)
    assert [(t["name"], t["events"]) for t in found["items"]] == [("OrderCreated", 1)]


async def test_hostile_type_names_and_keys_render_as_text(
    client: Client, put: Callable[..., Any]
) -> None:
    script = "<script>alert(1)</script>"
    await put(
        delivery("x.\u202egpj.exe", {"eventType": script, "<img src=x onerror=alert(1)>": 1}),
        delivery("hx", {"eventType": '<div hx-get="/api/events" hx-trigger="load">'}),
    )
    await catalogued(client, 2)
    page = (await client.get("/types", headers=HTML)).text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert '<div hx-get="/api/events"' not in page
    assert "U+202E" in page  # the bidi override is shown, not obeyed
    assert "?type=%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in page


async def test_a_viewer_sees_names_paths_and_samples_masked(
    viewer: Client, put: Callable[..., Any]
) -> None:
    body = {
        "eventType": "CardPaid",
        "password": "hunter2-secret",
        "note": f"card {CARD}",
        "byCard": {"4111111111111111": {"ok": True}},
    }
    await put(delivery("card.paid", body))
    found = await catalogued(viewer, 1)
    text = json.dumps(found, ensure_ascii=False)
    assert "hunter2-secret" not in text
    assert CARD not in text and "4111111111111111" not in text
    assert MASK in found["items"][0]["sample"]["value"]["password"]
    paths = [p["path"] for p in found["items"][0]["shape"]["paths"]]
    assert [p for p in paths if p.startswith("byCard.")] == [
        f"byCard.{MASK}1111",
        f"byCard.{MASK}1111.ok",
    ]
    page = (await viewer.get("/types", headers=HTML)).text
    assert "hunter2-secret" not in page and "4111111111111111" not in page
    assert "masked for viewers" in page


async def test_an_operator_sees_the_sample_as_stored(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(delivery("card.paid", {"eventType": "CardPaid", "password": "hunter2-secret"}))
    found = await catalogued(client, 1)
    assert found["items"][0]["sample"]["value"]["password"] == "hunter2-secret"


async def test_the_last_hour_is_drawn_as_bars(client: Client, put: Callable[..., Any]) -> None:
    now = dt.datetime.now(dt.UTC)
    await put(
        *(
            Delivery("events", "tick", False, {}, None, json.dumps(order(n)).encode(), now)
            for n in range(4)
        )
    )
    found = await catalogued(client, 4)
    (item,) = found["items"]
    assert item["rate"]["last_hour"] == 4
    assert item["rate"]["per_minute"][-1] + item["rate"]["per_minute"][-2] == 4
    page = (await client.get("/types", headers=HTML)).text
    assert re.search(r'<svg class="spark"[^>]*>.*<rect x="[\d.]+" y="0\.0" width', page)
    assert 'aria-label="4 events in the last hour"' in page


async def test_changes_of_an_unknown_type_are_a_404(client: Client) -> None:
    assert (await client.get("/api/types/12345/changes")).status_code == 404
    assert (await client.get("/api/types/-12345/changes")).status_code == 404


async def test_anonymous_callers_get_no_types(anon: Client) -> None:
    assert (await anon.get("/api/types")).status_code == 401
    page = await anon.get("/types", headers=HTML, follow_redirects=False)
    assert page.status_code in (303, 401)


async def test_a_wide_type_lists_some_paths_and_gives_all_of_them_alone(
    client: Client, put: Callable[..., Any]
) -> None:
    wide = {"eventType": "Wide", **{f"field{i:03d}": i for i in range(150)}}
    await put(delivery("wide", wide))
    found = await catalogued(client, 1)
    (item,) = found["items"]
    assert len(item["shape"]["paths"]) == 60
    assert item["shape"]["paths_total"] == 152  # $, eventType and 150 fields
    alone = (await client.get(f"/api/types/{item['key']}")).json()
    assert len(alone["shape"]["paths"]) == 152
    assert alone["events"] == 1
    page = (await client.get("/types", headers=HTML)).text
    assert f'92 more paths: <a href="/api/types/{item["key"]}">' in page
    assert (await client.get("/api/types/7")).status_code == 404


async def test_a_catalog_waiting_behind_a_backlog_says_how_far_behind_it_is(
    app: Litestar, put: Callable[..., Any]
) -> None:
    app.state.web.runtime.catalog.busy = lambda: True  # the recorder drains a backlog
    async with AsyncTestClient(app) as browser:
        login = await browser.get("/login", params={"token": TOKEN}, follow_redirects=False)
        assert login.status_code == 303
        await put(delivery("order.created", order(1)))
        page: dict[str, str] = {}

        async def noticed() -> bool:
            page["text"] = (await browser.get("/types", headers=HTML)).text
            return 'id="types-behind"' in page["text"]

        await eventually(noticed, 30, "the behind notice")
        assert "The catalog is counting the events already stored" in page["text"]
        assert re.search(r"the catalog is \d+ days behind", page["text"])
        api = (await browser.get("/api/types")).json()
        assert api["items"] == [] and api["behind_seconds"] > 3600
