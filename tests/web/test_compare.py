"""Compare two events (`/compare`, `/api/compare`): what differs in body, headers, properties and
fields, masked for viewers on both sides, safe with hostile keys, bounded, and a 404 for ids that
do not exist."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.web.comparison import COMPARED_BYTES, MAX_CHANGES
from tests.web.conftest import TOKEN, delivery
from tests.web.test_security import HTML, MASK, VIEWER, bearer

Client = AsyncTestClient[Litestar]
OPERATOR = bearer(TOKEN)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,)}


@pytest.fixture
async def viewer(anon: Client) -> Client:
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return anon


def order(status: str, **extra: Any) -> dict[str, Any]:
    return {"type": "OrderPaid", "data": {"orderId": "o-1", "status": status, **extra}}


async def compare_api(client: Client, a: int, b: int, **headers: str) -> dict[str, Any]:
    response = await client.get("/api/compare", params={"a": a, "b": b}, headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def by_path(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["path_text"]: c for c in changes}


async def test_the_page_shows_what_changed_in_body_headers_and_fields(
    client: Client, put: Callable[..., Any]
) -> None:
    a, b = await put(
        delivery("order.paid", order("new", items=[1, 2]), headers={"x-tenant": "acme"}),
        delivery("order.paid", order("paid", items=[1, 2, 3]), headers={"x-tenant": "zeta"}),
    )
    response = await client.get("/compare", params={"a": a, "b": b}, headers=HTML)
    assert response.status_code == 200
    page = response.text
    assert response.headers["cache-control"] == "no-store"
    body = page[page.index('id="body-changes"') : page.index('id="header-changes"')]
    rows = re.findall(r'<tr class="(\w+)"><td class="path"><bdi class="v">([^<]+)</bdi>', body)
    assert rows == [("changed", "data.status"), ("added", "data.items[2]")]
    assert "&#34;new&#34;" in body and "&#34;paid&#34;" in body
    headers = page[page.index('id="header-changes"') : page.index('id="property-changes"')]
    assert "x-tenant" in headers and "&#34;acme&#34;" in headers and "&#34;zeta&#34;" in headers
    assert f'href="/compare?a={b}&amp;b={a}"' in page, "sides can be swapped"
    assert page.count('class="jf"') >= 4, "both bodies are shown side by side, foldable"


async def test_the_api_gives_paths_kinds_and_values(
    client: Client, put: Callable[..., Any]
) -> None:
    a, b = await put(
        delivery("k", {"a": {"b.c": 1, "gone": True}, "list": list(range(3))}),
        delivery("k", {"a": {"b.c": 2}, "list": list(range(40)), "new": None}),
    )
    data = await compare_api(client, a, b)
    assert data["a"]["id"] == a and data["b"]["id"] == b
    assert data["body"]["mode"] == "json"
    changes = by_path(data["body"]["changes"])
    assert changes['a["b.c"]'] == {
        "path": ["a", "b.c"],
        "path_text": 'a["b.c"]',
        "kind": "changed",
        "count": None,
        "before": "1",
        "after": "2",
    }
    assert changes["a.gone"]["kind"] == "removed" and changes["a.gone"]["after"] is None
    assert changes["new"] == {**changes["new"], "kind": "added", "before": None, "after": "null"}
    run = changes["list[3…39]"]
    assert run["kind"] == "added" and run["count"] == 37, "a long array tail is one line"
    assert run["after"].startswith("[3, 4, 5")
    fields = {f["name"]: f for f in data["fields"]}
    assert fields["routing_key"]["same"] is True
    assert fields["body_size"]["same"] is False
    assert data["body"]["truncated"] is False


async def test_viewers_compare_masked_values_on_both_sides(
    viewer: Client, put: Callable[..., Any]
) -> None:
    a, b = await put(
        delivery(
            "login",
            {"user": "ann", "password": "first-secret-pw", "card": "4111111111111111"},
            headers={"authorization": "Bearer first-header-secret"},
        ),
        delivery(
            "login",
            {"user": "bob", "password": "second-secret-pw", "card": "5500005555555559"},
            headers={"authorization": "Bearer second-header-secret"},
        ),
    )
    secrets = ("first-secret-pw", "second-secret-pw", "header-secret", "4111111111111111")
    page = (await viewer.get("/compare", params={"a": a, "b": b}, headers=HTML)).text
    api = (await viewer.get("/api/compare", params={"a": a, "b": b})).text
    for shown in (page, api):
        assert not [s for s in secrets if s in shown]
        assert MASK in shown
    assert "masked for viewers" in page
    data = await compare_api(viewer, a, b)
    assert set(by_path(data["body"]["changes"])) == {"user", "card"}, "masked values are equal"
    assert data["headers"]["changes"] == []
    operator = await compare_api(viewer, a, b, **OPERATOR)
    assert "password" in by_path(operator["body"]["changes"])
    assert "first-secret-pw" in str(operator)


async def test_unknown_ids_are_a_404(client: Client, put: Callable[..., Any]) -> None:
    [known] = await put(delivery("k", {"a": 1}))
    for params in ({"a": known, "b": 987_654}, {"a": 987_654, "b": known}):
        page = await client.get("/compare", params=params, headers=HTML)
        assert page.status_code == 404
        assert "No event with id 987654" in page.text
        api = await client.get("/api/compare", params=params)
        assert api.status_code == 404
    bad = await client.get("/api/compare", params={"a": "x", "b": known})
    assert bad.status_code == 400
    assert (await client.get("/api/compare", params={"a": known})).status_code == 400


async def test_without_two_ids_the_page_asks_for_them(client: Client) -> None:
    response = await client.get("/compare", params={"a": 5}, headers=HTML)
    assert response.status_code == 200
    assert '<form class="compare-pick" method="get" action="/compare">' in response.text
    assert 'name="a" value="5"' in response.text and 'name="b" value=""' in response.text


async def test_text_bodies_are_compared_line_by_line(
    client: Client, put: Callable[..., Any]
) -> None:
    a, b = await put(
        delivery("t", b"line one\nline two\nline three\n"),
        delivery("t", b"line one\nline 2\nline three\n<b>added</b>\n"),
    )
    data = await compare_api(client, a, b)
    assert data["body"]["mode"] == "text"
    marks = [(line["mark"], line["text"]) for line in data["body"]["lines"]]
    assert (
        ("-", "line two") in marks and ("+", "line 2") in marks and ("+", "<b>added</b>") in marks
    )
    assert (" ", "line one") in marks
    page = (await client.get("/compare", params={"a": a, "b": b}, headers=HTML)).text
    assert '<span class="add">+<bdi class="v">&lt;b&gt;added&lt;/b&gt;</bdi></span>' in page


async def test_binary_bodies_are_not_comparable_but_equality_is_said(
    client: Client, put: Callable[..., Any]
) -> None:
    a, b, c, d = await put(
        delivery("bin", b"\x00\x01\xff"),
        delivery("bin", b"\x00\x02\xff"),
        delivery("json", {"a": 1}),
        delivery("bin", b"\x00\x01\xff", headers={"n": 2}),
    )
    differing = (await compare_api(client, a, b))["body"]
    assert differing["mode"] == "incomparable"
    assert (
        differing["reason"]
        == "Not comparable as text: binary and binary bodies (3 B and 3 B), different bytes."
    )
    assert (await compare_api(client, a, c))["body"]["mode"] == "incomparable"
    same = (await compare_api(client, a, d))["body"]
    assert same == {**same, "mode": "same", "reason": "The bodies are the same bytes."}
    page = (await client.get("/compare", params={"a": a, "b": c}, headers=HTML)).text
    assert 'id="body-verdict"' in page and '<table class="hex">' in page


async def test_hostile_keys_and_values_are_shown_as_text(
    client: Client, put: Callable[..., Any]
) -> None:
    hostile = {
        "<script>alert(1)</script>": '"><img src=x onerror=alert(1)>',
        "a.b": "<div hx-get='/api/events' hx-trigger='load'>",
        "x\u202ey": "{{7*7}}",
        "\u0430dmin": "homoglyph",
    }
    a, b = await put(delivery("h", {"safe": 1}), delivery("h", hostile))
    page = (await client.get("/compare", params={"a": a, "b": b}, headers=HTML)).text
    for raw in ("<script>alert", "<img src=x", "<div hx-get"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{7*7}}" in page
    assert "\u202e" not in page and "U+202E" in page
    paths = set(by_path((await compare_api(client, a, b))["body"]["changes"]))
    assert paths == {
        "safe",
        '["<script>alert(1)</script>"]',
        '["a.b"]',
        '["x\u202ey"]',
        '["\u0430dmin"]',
    }


async def test_the_list_of_changes_is_bounded(client: Client, put: Callable[..., Any]) -> None:
    many = 3 * MAX_CHANGES
    a, b = await put(
        delivery("big", {f"k{i}": i for i in range(many)}),
        delivery("big", {f"k{i}": -i for i in range(many)}),
    )
    body = (await compare_api(client, a, b))["body"]
    assert len(body["changes"]) == MAX_CHANGES and body["truncated"] is True
    page = (await client.get("/compare", params={"a": a, "b": b}, headers=HTML)).text
    assert "there are more changes" in page


async def test_bodies_past_the_bound_are_not_compared(
    client: Client, put: Callable[..., Any]
) -> None:
    large = {"blob": "x" * (COMPARED_BYTES + 10)}
    a, b = await put(delivery("l", large), delivery("l", {"blob": "y"}))
    body = (await compare_api(client, a, b))["body"]
    assert body["mode"] == "incomparable" and "not compared here" in body["reason"]
    page = await client.get("/compare", params={"a": a, "b": b}, headers=HTML)
    assert page.status_code == 200
    assert f'<a href="/events/{a}">open the event</a>' in page.text
