"""Aggregates over HTTP: the list, one aggregate's state at any version beside its events with
what each step changed, diffs, what-ifs (operators, CSRF), viewer masking, hostile names,
404s and the 400s of parameters that cannot work, and links from the other pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.envelope import aggregate_key
from tests.conftest import eventually
from tests.web.conftest import ORIGIN, TOKEN, csrf_token, delivery
from tests.web.test_security import HTML, MASK, VIEWER, bearer

Client = AsyncTestClient[Litestar]
OPERATOR = bearer(TOKEN)
ORDER_RULES = Path(__file__).resolve().parents[2] / "examples" / "reducers" / "order.toml"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,), "reducers": str(ORDER_RULES)}


@pytest.fixture
async def viewer(anon: Client) -> Client:
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return anon


def order(
    version: int | None,
    event_type: str,
    ident: str = "order_1",
    *,
    kind: str | None = "Order",
    event_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id or f"evt_{ident}_{version}_{event_type}",
        "eventType": event_type,
        "aggregateId": ident,
        "timestamp": f"2025-10-22T14:3{version or 0}:00Z",
        "data": {"orderId": ident, **data},
    }
    if kind is not None:
        body["aggregateType"] = kind
    if version is not None:
        body["version"] = version
    return body


async def paid_order(put: Callable[..., Any], ident: str = "order_1") -> list[int]:
    return list(
        await put(
            delivery("order.created", order(1, "OrderCreated", ident, total=99.99)),
            delivery("order.paid", order(2, "OrderPaid", ident, paymentMethod="card")),
        )
    )


async def api(client: Client, path: str, status: int = 200, **params: Any) -> Any:
    response = await client.get(path, params=params or None, headers=OPERATOR)
    assert response.status_code == status, response.text
    return response.json()


async def listed(client: Client, **params: Any) -> list[dict[str, Any]]:
    """The aggregate list once the catalog (behind ingest) has counted everything stored."""
    found: list[dict[str, Any]] = []

    async def counted() -> bool:
        data = await api(client, "/api/aggregates", **params)
        found[:] = data["items"]
        return data["behind_seconds"] == 0 and bool(found)

    await eventually(counted, 30, "the aggregate catalog to count the stored events")
    return found


# --- the list ---------------------------------------------------------------------------------


async def test_the_list_shows_each_aggregate_with_its_count_version_and_last_event(
    client: Client, put: Callable[..., Any]
) -> None:
    await paid_order(put)
    await put(
        delivery("order.created", order(1, "OrderCreated", "order_10")),
        delivery("invoice.sent", order(3, "InvoiceSent", "inv_1", kind="Invoice")),
    )
    items = await listed(client)
    by_id = {item["aggregate_id"]: item for item in items}
    assert set(by_id) == {"order_1", "order_10", "inv_1"}
    first = by_id["order_1"]
    assert (first["events"], first["version"], first["last_event_type"]) == (2, 2, "OrderPaid")
    assert first["url"] == "/aggregates/Order/order_1"
    assert first["last_seen"].startswith("2025-10-22T14:30")

    only_orders = await api(client, "/api/aggregates", type="Order")
    assert {i["aggregate_id"] for i in only_orders["items"]} == {"order_1", "order_10"}
    prefixed = await api(client, "/api/aggregates", q="order_1")
    assert [i["aggregate_id"] for i in prefixed["items"]] == ["order_1", "order_10"]
    exact = await api(client, "/api/aggregates", q="order_10")
    assert [i["aggregate_id"] for i in exact["items"]] == ["order_10"]
    assert (await api(client, "/api/aggregates", q="Order_1"))["items"] == []  # case counts
    assert (await api(client, "/api/aggregates", q="order%"))["items"] == []  # no wildcards
    assert (await api(client, "/api/aggregates", q="order_"))["total"] == 2
    assert (await api(client, "/api/aggregates", since="2100-01-01"))["items"] == []
    assert len((await api(client, "/api/aggregates", until="2100-01-01"))["items"]) == 3

    page = await client.get("/aggregates", params={"type": "Order"}, headers=HTML)
    assert page.status_code == 200
    assert 'href="/aggregates/Order/order_1"' in page.text
    assert "inv_1" not in page.text
    assert 'aria-current="page">Aggregates</a>' in page.text


async def test_the_list_pages_newest_first_and_by_id_with_a_cursor(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(*(delivery("order.created", order(1, "OrderCreated", f"o{n}")) for n in range(5)))
    await listed(client)
    seen: list[str] = []
    for params in ({"limit": 2}, {"limit": 2, "q": "o"}):
        cursor, names = None, []
        while True:
            data = await api(
                client, "/api/aggregates", **params, **({"before": cursor} if cursor else {})
            )
            names += [i["aggregate_id"] for i in data["items"]]
            cursor = data["next_before"]
            if cursor is None:
                break
        assert sorted(names) == [f"o{n}" for n in range(5)]
        seen.append(",".join(names))
    assert seen[1] == "o0,o1,o2,o3,o4"  # by id when searching
    await api(client, "/api/aggregates", 400, before="nonsense")
    await api(client, "/api/aggregates", 400, since="yesterday-ish")


async def test_an_empty_list_says_how_aggregates_get_there(client: Client) -> None:
    page = await client.get("/aggregates", headers=HTML)
    assert page.status_code == 200
    assert "No aggregates yet" in page.text and "aggregateId" in page.text
    filtered = await client.get("/aggregates", params={"q": "nothing"}, headers=HTML)
    assert "No aggregate matches" in filtered.text


# --- one aggregate ----------------------------------------------------------------------------


async def test_each_version_shows_its_state_and_what_it_changed(
    client: Client, put: Callable[..., Any]
) -> None:
    created, paid = await paid_order(put)
    first = await client.get("/aggregates/Order/order_1", params={"version": 1}, headers=HTML)
    assert first.status_code == 200
    assert "State after version 1" in first.text
    assert "&#34;created&#34;" in first.text  # the state tree, escaped
    assert "version order" in first.text and "rules order.toml" in first.text

    second = await client.get("/aggregates/Order/order_1", params={"version": 2}, headers=HTML)
    changes = re.search(r'<table class="changes" id="state-changes".*?</table>', second.text, re.S)
    assert changes, "no diff table"
    row = re.search(r'<tr class="changed"><td class="path">(.*?)</tr>', changes.group(0), re.S)
    assert row and "status" in row.group(1)
    assert "&#34;created&#34;" in row.group(1) and "&#34;paid&#34;" in row.group(1)
    assert re.search(r'<tr class="added"><td class="path">.*?paidAt', changes.group(0), re.S)
    assert f'href="/events/{paid}"' in second.text
    # The stepper links every neighbour by its version, and the current state has no version.
    assert 'data-step="prev" href="/aggregates/Order/order_1?version=1"' in second.text
    assert 'data-step="first" href="/aggregates/Order/order_1?step=0"' in second.text
    current = await client.get("/aggregates/Order/order_1", headers=HTML)
    assert "State after version 2" in current.text
    before = await client.get("/aggregates/Order/order_1", params={"step": 0}, headers=HTML)
    assert "Before the first event" in before.text
    at_event = await client.get(
        "/aggregates/Order/order_1", params={"event": created}, headers=HTML
    )
    assert "State after version 1" in at_event.text


async def test_the_api_gives_the_state_at_a_version_the_events_folded_and_diffs(
    client: Client, put: Callable[..., Any]
) -> None:
    created, paid = await paid_order(put)
    current = await api(client, "/api/aggregates/Order/order_1")
    assert current["state"]["status"] == "paid"
    assert current["at"] == {"step": 2, "version": 2, "time": current["at"]["time"]}
    assert [s["event"]["id"] for s in current["steps"]] == [created, paid]
    at_one = await api(client, "/api/aggregates/Order/order_1", version=1)
    assert at_one["state"] == {"orderId": "order_1", "total": 99.99, "status": "created"}
    assert [s["version"] for s in at_one["steps"]] == [1]
    assert at_one["order"] == "version" and at_one["steps_total"] == 2
    empty = await api(client, "/api/aggregates/Order/order_1", version=0)
    assert empty["state"] == {} and empty["steps"] == []
    as_of = await api(client, "/api/aggregates/Order/order_1", as_of="2025-10-22T14:31:30Z")
    assert as_of["state"]["status"] == "created"  # the occurred time of version 2 is 14:32

    diff = await api(client, "/api/aggregates/Order/order_1/diff", **{"from": 1, "to": 2})
    by_path = {c["path_text"]: c for c in diff["changes"]}
    assert by_path["status"] == {
        "path": ["status"],
        "path_text": "status",
        "kind": "changed",
        "count": None,
        "before": '"created"',
        "after": '"paid"',
    }
    assert by_path["paidAt"]["kind"] == "added"
    back = await api(client, "/api/aggregates/Order/order_1/diff", **{"from": 2, "to": 0})
    assert {c["kind"] for c in back["changes"]} == {"removed"}
    by_step = await api(client, "/api/aggregates/Order/order_1/diff", from_step=1, to_step=2)
    assert by_step["changes"] == diff["changes"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"version": "abc"}, "version"),
        ({"version": "-1"}, "version"),
        ({"version": "99999999999999999999999"}, "version"),
        ({"version": "1", "step": "1"}, "give one of"),
        ({"step": "3"}, "has 2 steps"),
        ({"event": "999999"}, "not one of this aggregate's events"),
        ({"as_of": "last tuesday"}, "is not a time"),
    ],
)
async def test_parameters_that_cannot_work_are_a_400_saying_why(
    client: Client, put: Callable[..., Any], params: dict[str, str], detail: str
) -> None:
    await paid_order(put)
    response = await client.get("/api/aggregates/Order/order_1", params=params, headers=OPERATOR)
    assert response.status_code == 400, response.text
    assert detail in response.text
    page = await client.get("/aggregates/Order/order_1", params=params, headers=HTML)
    assert page.status_code == 400


async def test_diffs_need_both_ends_and_arrival_ordered_aggregates_step_by_number(
    client: Client, put: Callable[..., Any]
) -> None:
    await paid_order(put)
    await put(
        delivery("cart.updated", order(None, "CartUpdated", "cart_1", kind="Cart", items=1)),
        delivery("cart.updated", order(None, "CartUpdated", "cart_1", kind="Cart", items=2)),
    )
    diff = "/api/aggregates/Order/order_1/diff"
    assert "give from" in (await api(client, diff, 400, to=2))["detail"]
    await api(client, diff, 400, **{"from": "x", "to": 2})
    unversioned = await api(client, "/api/aggregates/Cart/cart_1")
    assert unversioned["order"] == "arrival" and unversioned["state"]["items"] == 2
    assert (
        "use step" in (await api(client, "/api/aggregates/Cart/cart_1", 400, version=1))["detail"]
    )
    first = await api(client, "/api/aggregates/Cart/cart_1", step=1)
    assert first["state"]["items"] == 1
    page = await client.get("/aggregates/Cart/cart_1", headers=HTML)
    assert "arrival order" in page.text
    assert 'data-step="prev" href="/aggregates/Cart/cart_1?step=1"' in page.text


async def test_an_unknown_aggregate_is_a_404_and_names_are_matched_exactly(
    client: Client, put: Callable[..., Any]
) -> None:
    await paid_order(put)
    for name in (
        "order_",
        "order_1 ",
        "оrder_1",
        "ORDER_1",
        "order_10",
    ):  # prefix, space, Cyrillic о
        response = await client.get(f"/api/aggregates/Order/{quote(name)}", headers=OPERATOR)
        assert response.status_code == 404, name
        page = await client.get(
            "/aggregates/view", params={"type": "Order", "id": name}, headers=HTML
        )
        assert page.status_code == 404 and "No event of this aggregate is recorded" in page.text
    await api(client, "/api/aggregates/order/order_1", 404)  # the type counts too
    await api(client, "/api/aggregates/view", 404, id="order_1")  # no type: another aggregate
    await api(client, "/api/aggregates/view", 400, type="Order")  # no id
    await api(client, "/api/aggregates/view", 400, type="Order", id="order_1", key="x")
    # A stored key given with other names matches nothing, also once that aggregate is kept.
    key = aggregate_key("Order", "order_1")
    await api(client, "/api/aggregates/view", 200, type="Order", id="order_1", key=key)
    await api(client, "/api/aggregates/view", 404, type="Order", id="order_2", key=key)


async def test_hostile_names_are_reached_through_the_query_form_and_shown_as_text(
    client: Client, put: Callable[..., Any]
) -> None:
    names = [
        ("Order", "a/b/../c"),
        ("Order", ".."),
        ("Or/der", "%2F%00"),
        ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'),
        ("Order", "rtl\u202eevil"),
        ("Order", "nul\x00id"),
        (None, "untyped"),
        ("view", "diff"),
    ]
    await put(
        *(
            delivery("x.y", order(1, "OrderCreated", ident, kind=kind, note="<b>hi</b>"))
            for kind, ident in names
        )
    )
    items = await listed(client)
    assert len(items) == len(names)
    for item in items:
        url = item["url"]
        assert url.startswith("/aggregates/view?"), url
        state = await api(client, item["api_url"])
        assert state["state"]["note"] == "<b>hi</b>"
        page = await client.get(url, headers=HTML)
        assert page.status_code == 200, (url, page.text)
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert "&lt;b&gt;hi&lt;/b&gt;" in page.text or "&#34;&lt;b&gt;hi" in page.text
    nul = next(i for i in items if i["aggregate_id"].startswith("nul"))
    assert "key=" in nul["url"]  # the stored form (␀) is not what was sent: the key is given
    untyped = next(i for i in items if i["aggregate_id"] == "untyped")
    assert "type=" not in untyped["url"]
    await api(client, "/api/aggregates/view", 200, id="untyped")


async def test_markers_duplicates_dead_letters_and_gaps_are_shown_at_their_steps(
    client: Client, put: Callable[..., Any]
) -> None:
    created = order(1, "OrderCreated", total=5)
    ids = await put(
        delivery("order.created", created),
        delivery("order.created", created),  # a second publish of the same event
        delivery("dlq.order.created", {"originalEvent": created, "error": "boom", "retries": 3}),
        delivery("order.shipped", order(4, "OrderShipped")),
    )
    data = await api(client, "/api/aggregates/Order/order_1", version=1)
    step = data["steps"][0]
    kinds = {m["kind"] for m in step["markers"]}
    assert {"duplicate", "dead-letter"} <= kinds
    assert step["duplicates"] == [ids[1]] and step["dead_letters"] == [ids[2]]
    assert data["state"]["total"] == 5  # folded once
    current = await api(client, "/api/aggregates/Order/order_1")
    assert any(m["kind"] == "gap" for m in current["steps"][-1]["markers"])
    assert {p["kind"] for p in current["problems"]} >= {"duplicate", "dead-letter", "gap"}
    page = await client.get("/aggregates/Order/order_1", params={"version": 1}, headers=HTML)
    assert "badge mk-duplicate" in page.text and "badge mk-dead-letter" in page.text
    assert f'href="/events/{ids[2]}"' in page.text
    assert "Dead letters" in page.text and "never folded" in page.text
    assert 'id="aggregate-help"' in page.text and "folded once" in page.text.lower()


async def test_viewers_see_states_diffs_and_events_masked(
    viewer: Client, put: Callable[..., Any]
) -> None:
    card = "4111111111111111"
    await put(
        delivery("order.created", order(1, "OrderCreated", total=1, password="hunter2")),
        delivery("order.paid", order(2, "OrderPaid", card=card)),
    )
    data = (await viewer.get("/api/aggregates/Order/order_1", params={"version": 1})).json()
    assert data["state"]["password"] == MASK and data["redacted"] is True
    raw = (await viewer.get("/api/aggregates/Order/order_1")).text
    assert "hunter2" not in raw
    diff = (
        await viewer.get("/api/aggregates/Order/order_1/diff", params={"from": 0, "to": 2})
    ).text
    assert "hunter2" not in diff
    page = await viewer.get("/aggregates/Order/order_1", params={"version": 1}, headers=HTML)
    assert "hunter2" not in page.text and "masked for viewers" in page.text
    # A viewer cannot confirm a secret by looking it up as a name.
    await put(delivery("order.created", order(1, "OrderCreated", card)))
    response = await viewer.get(f"/api/aggregates/Order/{card}")
    assert response.status_code == 400 and "masked for viewers" in response.text
    listed_page = await viewer.get("/aggregates", headers=HTML)
    assert card not in listed_page.text


async def test_an_htmx_step_is_a_fragment_with_its_canonical_url(
    client: Client, put: Callable[..., Any]
) -> None:
    await paid_order(put)
    response = await client.get(
        "/aggregates/Order/order_1",
        params={"step": 1},
        headers={"HX-Request": "true", "HX-Current-URL": f"{ORIGIN}/aggregates/Order/order_1"},
    )
    assert response.status_code == 200
    assert '<div id="aggregate-view"' in response.text and "<html" not in response.text
    assert response.headers["hx-push-url"] == "/aggregates/Order/order_1?version=1"
    same = await client.get(
        "/aggregates/Order/order_1",
        params={"version": 1},
        headers={
            "HX-Request": "true",
            "HX-Current-URL": f"{ORIGIN}/aggregates/Order/order_1?version=1",
        },
    )
    assert "hx-push-url" not in same.headers  # a refresh of the same step
    page = await client.get("/aggregates/Order/order_1", headers=HTML)
    assert 'ws-connect="/ws/live?after=' in page.text
    assert "aggregate_type=Order&amp;aggregate_id=order_1" in page.text


async def test_timeline_rows_and_event_pages_link_to_the_aggregate_at_that_version(
    client: Client, put: Callable[..., Any]
) -> None:
    created, _ = await paid_order(put)
    (untyped,) = await put(delivery("x.y", order(None, "Touched", "loose", kind=None)))
    timeline = await client.get("/", headers=HTML)
    assert 'class="al" href="/aggregates/Order/order_1?version=2"' in timeline.text
    assert f'class="al" href="/aggregates/view?id=loose&amp;event={untyped}"' in timeline.text
    detail = await client.get(f"/events/{created}", headers=HTML)
    assert 'id="open-aggregate" href="/aggregates/Order/order_1?version=1"' in detail.text
    # An event alone names its aggregate and its step.
    by_event = await api(client, "/api/aggregates/view", event=created)
    assert (by_event["aggregate_id"], by_event["at"]["version"]) == ("order_1", 1)
    page = await client.get("/aggregates/view", params={"event": untyped}, headers=HTML)
    assert page.status_code == 200 and 'Aggregate</span> <span class="agg-name">' in page.text
    (plain,) = await put(delivery("x.y", {"note": "no aggregate"}))
    await api(client, "/api/aggregates/view", 400, event=plain)
    await api(client, "/api/aggregates/view", 404, event=10**9)


# --- what-if ----------------------------------------------------------------------------------


async def what_if(client: Client, path: str, payload: Any, **headers: str) -> Any:
    return await client.post(path, json=payload, headers={"Origin": ORIGIN, **headers})


async def test_what_if_folds_a_candidate_in_and_stores_nothing(
    client: Client, put: Callable[..., Any]
) -> None:
    await paid_order(put)
    (dead,) = await put(
        delivery(
            "dlq.order.shipped",
            {"originalEvent": order(3, "OrderShipped"), "error": "x", "retries": 3},
        )
    )
    token = await csrf_token(client)
    path = "/api/aggregates/Order/order_1/what-if"
    shipped = await what_if(client, path, {"row_id": dead}, **{"X-CSRF-Token": token})
    assert shipped.status_code == 200, shipped.text
    result = shipped.json()
    assert result["state"]["status"] == "shipped" and result["baseline"]["status"] == "paid"
    assert result["stored"] is False and "version 3" in result["placement"]
    assert {c["path_text"] for c in result["changes"]} == {"status", "shippedAt"}

    edited = order(2, "OrderPaid", paymentMethod="cash")
    edited.pop("aggregateId")  # a body without its aggregate is read as this one's
    candidate = {"body": edited, "version": 2}  # (and its version comes with the request)
    replaced = await what_if(client, path, candidate, **{"X-CSRF-Token": token})
    assert replaced.status_code == 200, replaced.text
    assert "replaces row" in replaced.json()["placement"]

    other = order(5, "OrderPaid", "order_2")
    refused = await what_if(client, path, {"body": other}, **{"X-CSRF-Token": token})
    assert refused.status_code == 400 and "another aggregate" in refused.text
    for bad in (
        {},
        {"row_id": "1"},
        {"row_id": 1, "body": {}},
        {"body": [1]},
        {"body": {}, "version": "2"},
    ):
        response = await what_if(client, path, bad, **{"X-CSRF-Token": token})
        assert response.status_code == 400, bad
    assert (
        await what_if(client, path, {"row_id": 10**9}, **{"X-CSRF-Token": token})
    ).status_code == 404
    after = await api(client, "/api/aggregates/Order/order_1")
    assert after["state"]["status"] == "paid" and after["events_recorded"] == 3  # nothing stored


async def test_what_if_needs_an_operator_and_the_csrf_token(
    anon: Client, put: Callable[..., Any]
) -> None:
    await paid_order(put)
    path = "/api/aggregates/Order/order_1/what-if"
    payload = {"body": order(3, "OrderShipped")}
    response = await anon.get("/login", params={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    assert (await what_if(anon, path, payload)).status_code == 403  # no CSRF token
    token = await csrf_token(anon)
    assert (await what_if(anon, path, payload, **{"X-CSRF-Token": "wrong"})).status_code == 403
    assert (await what_if(anon, path, payload, **{"X-CSRF-Token": token})).status_code == 200
    query_form = "/api/aggregates/what-if?type=Order&id=order_1"
    assert (await what_if(anon, query_form, payload, **{"X-CSRF-Token": token})).status_code == 200
    await anon.post("/logout", headers={"X-CSRF-Token": token, "Origin": ORIGIN})
    bearer_only = await anon.post(path, json=payload, headers=OPERATOR)  # scripts: no cookie
    assert bearer_only.status_code == 200
    as_viewer = await anon.post(path, json=payload, headers=bearer(VIEWER))
    assert as_viewer.status_code == 403


async def test_a_viewer_cannot_spell_out_an_id_by_searching_its_start(
    viewer: Client, put: Callable[..., Any]
) -> None:
    """Prefix by prefix a search would reveal a card number the list shows masked."""
    card = "4111111111111111"
    await put(delivery("order.created", order(1, "OrderCreated", card)))
    refused = await viewer.get("/api/aggregates", params={"q": "4"})
    assert refused.status_code == 400 and "operators" in refused.json()["detail"]
    page = await viewer.get("/aggregates", params={"q": "41"}, headers=HTML)
    assert page.status_code == 400 and card not in page.text


@pytest.mark.parametrize(
    "settings_overrides",
    [{"viewer_tokens": (VIEWER,), "redact_fields": ("password", "aggregate")}],
)
async def test_an_id_column_named_secret_is_masked_whole_for_viewers(
    viewer: Client, put: Callable[..., Any]
) -> None:
    """With `aggregate` a secret word, viewers see no aggregate id at all (as in the timeline)."""
    [row_id] = await put(delivery("order.created", order(1, "OrderCreated", "order_plain")))
    await listed(viewer)  # as an operator: wait for the catalog
    items = (await viewer.get("/api/aggregates")).json()["items"]
    assert [i["aggregate_id"] for i in items] == [MASK]
    assert "order_plain" not in (await viewer.get("/aggregates", headers=HTML)).text
    looked_up = await viewer.get("/aggregates/view", params={"type": "Order", "id": "order_plain"})
    assert looked_up.status_code == 400
    by_event = await viewer.get("/aggregates/view", params={"event": str(row_id)}, headers=HTML)
    assert by_event.status_code == 400 and "order_plain" not in by_event.text
