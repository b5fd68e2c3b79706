"""Dead letters grouped by failure: `/dlq` and `/api/dlq` over what the recorder stored (native
`x-death` copies and the seed's `dlq.<key>` wrappers). Groups, members, retries left out,
malformed ones shown, filters, hostile text, viewers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.web.conftest import delivery
from tests.web.test_security import HTML, MASK, VIEWER

Client = AsyncTestClient[Litestar]
DIED = dt.datetime(2025, 10, 22, 14, 0, tzinfo=dt.UTC)


def death(queue: str, reason: str, *, key: str = "order.paid", count: int = 1) -> dict[str, Any]:
    return {
        "queue": queue,
        "reason": reason,
        "count": count,
        "time": DIED,
        "exchange": "events",
        "routing-keys": [key],
    }


def native(queue: str, error: str | None, *, order: int, reason: str = "rejected") -> Any:
    headers: dict[str, Any] = {"x-death": [death(queue, reason)]}
    if error is not None:
        headers["x-exception-message"] = error
    body = {
        "id": f"evt_{order}",
        "type": "order.paid",
        "metadata": {"correlationId": f"req_{order}"},
    }
    return delivery("order.paid", body, exchange="events.dlx", headers=headers)


def failures() -> list[Any]:
    wrapped = {"id": "evt_9", "type": "order.created", "metadata": {"correlationId": "req_9"}}
    retry = {"x-death": [death("retry.5s", "expired", count=2), death("shipping", "rejected")]}
    return [
        native("shipping", "order 41 not found", order=41),
        native("shipping", "order 42 not found", order=42),
        native("billing", "order 43 not found", order=43),
        delivery(
            "dlq.order.created",
            {"data": {"originalEvent": wrapped, "error": "warehouse down", "retries": 3}},
        ),
        delivery("dlq.order.created", b"not json at all"),
        delivery("order.paid", {"id": "evt_50"}, headers=retry),  # a TTL retry: no failure
        delivery("order.paid", {"id": "evt_51"}),  # an ordinary event
    ]


def by_place(groups: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(g["queue"], g["reason"], g["routing_key"], g["error"]): g for g in groups}


async def test_dead_letters_are_grouped_by_queue_reason_key_and_error(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(*failures())
    answer = (await client.get("/api/dlq")).json()
    assert answer["dead_letters"] == 5 and answer["more"] is False
    groups = by_place(answer["groups"])
    assert set(groups) == {
        ("shipping", "rejected", "order.paid", "order <n> not found"),
        ("billing", "rejected", "order.paid", "order <n> not found"),
        (None, "published", "order.created", "warehouse down"),
        (None, "published", "order.created", None),
    }
    shipping = groups[("shipping", "rejected", "order.paid", "order <n> not found")]
    assert shipping["count"] == 2 and shipping["malformed"] == 0
    assert groups[(None, "published", "order.created", None)]["malformed"] == 1

    members = (await client.get("/api/dlq", params={"group": shipping["fingerprint"]})).json()
    assert [m["id"] for m in members["items"]] == [ids[1], ids[0]]  # newest first
    assert [m["error"] for m in members["items"]] == ["order 42 not found", "order 41 not found"]
    assert members["items"][0]["deaths"] == 1
    assert members["items"][0]["correlation_id"] == "req_42"


async def test_the_page_lists_groups_opens_one_and_filters(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(*failures())
    page = await client.get("/dlq", headers=HTML)
    assert page.status_code == 200, page.text
    assert "5 in 4 groups" in page.text
    assert page.text.count('<tr class="dl">') == 4
    assert "order &lt;n&gt; not found" in page.text
    assert "1 malformed" in page.text

    fingerprint = by_place((await client.get("/api/dlq")).json()["groups"])[
        (None, "published", "order.created", "warehouse down")
    ]["fingerprint"]
    one = await client.get("/dlq", params={"group": fingerprint}, headers=HTML)
    assert f'id="dl{ids[3]}"' in one.text and "warehouse down" in one.text
    assert f'id="dl{ids[0]}"' not in one.text

    by_header = await client.get(
        "/api/dlq", params={"header": "x-exception-message:order 41 not found"}
    )
    assert by_header.json()["dead_letters"] == 1  # (a header filter: the search's bounded scan)
    narrowed = await client.get("/dlq", params={"routing_key": "dlq.#"}, headers=HTML)
    assert "2 in 2 groups" in narrowed.text
    bad = await client.get("/dlq", params={"since": "yesterday-ish"}, headers=HTML)
    assert bad.status_code == 400 and "since" in bad.text
    assert (await client.get("/api/dlq", params={"since": "nope"})).status_code == 400


async def test_empty_and_hostile_error_texts_render_safely(
    client: Client, put: Callable[..., Any]
) -> None:
    empty = await client.get("/dlq", headers=HTML)
    assert "No dead letters recorded" in empty.text
    await put(native("shipping", '<script>alert(1)</script>\u202e"ok"', order=7))
    page = await client.get("/dlq", headers=HTML)
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;" in page.text


@pytest.mark.parametrize("settings_overrides", [{"viewer_tokens": (VIEWER,)}])
async def test_viewers_see_error_texts_masked(anon: Client, put: Callable[..., Any]) -> None:
    await put(native("billing", "card 4111111111111111 declined", order=5))
    routed = {"x-death": [death("billing", "rejected", key="card.4111111111111111")]}
    (routed_id,) = await put(delivery("card.4111111111111111", {"id": "evt_6"}, headers=routed))
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303
    viewer = anon
    groups = (await viewer.get("/api/dlq")).json()["groups"]
    assert "4111111111111111" not in str(groups)
    group = next(g for g in groups if g["error"])
    members = (await viewer.get("/api/dlq", params={"group": group["fingerprint"]})).json()
    assert "4111111111111111" not in str(members)
    assert MASK in members["items"][0]["error"]
    page = (await viewer.get(f"/events/{routed_id}", headers=HTML)).text
    assert "x-death history" in page and "4111111111111111" not in page


async def test_the_event_page_shows_a_dead_letters_failure_and_x_death_history(
    client: Client, put: Callable[..., Any]
) -> None:
    ids = await put(*failures())
    page = (await client.get(f"/events/{ids[0]}", headers=HTML)).text
    section = page[page.index('id="dead-letter"') :]
    assert "shipping" in section and "rejected" in section
    assert "order 41 not found" in section
    assert "x-death history" in section and "2025-10-22T14:00:00" in section
    group = by_place((await client.get("/api/dlq")).json()["groups"])[
        ("shipping", "rejected", "order.paid", "order <n> not found")
    ]
    assert f'href="/dlq?group={group["fingerprint"]}"' in section

    malformed = (await client.get(f"/events/{ids[4]}", headers=HTML)).text
    assert 'id="death-problems"' in malformed
    retry = (await client.get(f"/events/{ids[5]}", headers=HTML)).text
    assert "Retry copy" in retry and "Dead letter</h2>" not in retry
    ordinary = (await client.get(f"/events/{ids[6]}", headers=HTML)).text
    assert 'id="dead-letter"' not in ordinary


async def test_a_dlq_wrapper_and_its_original_link_each_other_not_as_an_id_conflict(
    client: Client, put: Callable[..., Any]
) -> None:
    original = {"id": "evt_77", "type": "order.created"}
    same_id = {"message_id": "evt_77"}  # the seed's wrapper keeps its original's message id
    event_id, wrapper_id, other_id = await put(
        delivery("order.created", original, properties=same_id),
        delivery(
            "dlq.order.created",
            {"originalEvent": original, "error": "boom", "retries": 1},
            properties=same_id,
        ),
        delivery("order.created", {"id": "evt_77", "other": True}, properties=same_id),
    )
    wrapper = (await client.get(f"/events/{wrapper_id}", headers=HTML)).text
    linked = wrapper[wrapper.index('id="original-event"') :]
    assert f'href="/events/{event_id}"' in linked.split("</p>")[0]
    assert "Message id conflict" not in wrapper  # (both events are candidates for its original)
    page = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert f'href="/events/{wrapper_id}"' in page[page.index('id="dead-lettered-as"') :]
    conflict = page[page.index("Message id conflict") :].split("</p>")[0]
    assert f"#{other_id}" in conflict and f"#{wrapper_id}" not in conflict
