"""Auth: token → session cookie, bearer for the API, logout, safe redirects, every route guarded."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from litestar import Litestar
from litestar.exceptions import WebSocketDisconnect
from litestar.routes import ASGIRoute, HTTPRoute, WebSocketRoute
from litestar.testing import AsyncTestClient

from tests.web.conftest import ORIGIN, TOKEN, csrf_token, delivery

Client = AsyncTestClient[Litestar]
HTML = {"accept": "text/html,application/xhtml+xml"}
PUBLIC = re.compile(r"^/(login|healthz|static/.*)$")


async def test_api_without_credentials_is_401(anon: Client) -> None:
    response = await anon.get("/api/events")
    assert response.status_code == 401
    assert response.json()["status_code"] == 401
    assert response.headers["www-authenticate"].lower().startswith("bearer")


async def test_page_without_credentials_redirects_to_login(anon: Client) -> None:
    response = await anon.get("/", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert urlsplit(location).path == "/login"
    assert parse_qs(urlsplit(location).query)["next"] == ["/"]


async def test_redirect_to_login_keeps_the_page_and_its_query(anon: Client) -> None:
    response = await anon.get("/", params={"before": "42"}, headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["location"]).query)["next"] == ["/?before=42"]


async def test_login_link_sets_a_session_cookie_and_hides_the_token(anon: Client) -> None:
    response = await anon.get("/login", params={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert TOKEN not in response.headers["location"]
    cookie = response.headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert attributes[0].startswith("eventscope_session=")
    assert TOKEN not in attributes[0]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes

    page = await anon.get("/", headers=HTML, follow_redirects=False)
    assert page.status_code == 200
    assert "Live timeline" in page.text


async def test_login_link_follows_a_local_next(anon: Client) -> None:
    response = await anon.get(
        "/login", params={"token": TOKEN, "next": "/events/3"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/events/3"


async def test_login_form_post_signs_in(anon: Client) -> None:
    response = await anon.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert (await anon.get("/api/events")).status_code == 200


async def test_wrong_token_is_a_401_login_page(anon: Client) -> None:
    response = await anon.get("/login", params={"token": "wrong"}, follow_redirects=False)
    assert response.status_code == 401
    assert "not valid" in response.text
    assert "eventscope_session" not in response.headers.get("set-cookie", "")
    assert (await anon.get("/api/events")).status_code == 401


async def test_wrong_token_in_the_form_is_a_401(anon: Client) -> None:
    response = await anon.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert response.status_code == 401
    assert "not valid" in response.text


async def test_login_page_shows_the_form_without_credentials(anon: Client) -> None:
    response = await anon.get("/login", headers=HTML)
    assert response.status_code == 200
    assert '<form method="post" action="/login">' in response.text


async def test_bearer_token_works_for_the_api(anon: Client, put: Callable[..., Any]) -> None:
    await put(delivery("bearer.visible"))
    response = await anon.get("/api/events", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json()["items"][0]["routing_key"] == "bearer.visible"


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN])
async def test_bad_authorization_header_is_refused(anon: Client, header: str) -> None:
    assert (await anon.get("/api/events", headers={"authorization": header})).status_code == 401


async def test_made_up_session_cookie_is_refused(anon: Client) -> None:
    anon.cookies.set("eventscope_session", "forged-session-id")
    assert (await anon.get("/api/events")).status_code == 401


async def test_logout_ends_the_session(client: Client) -> None:
    session = client.cookies["eventscope_session"]
    assert (await client.get("/api/events")).status_code == 200

    token = await csrf_token(client)
    response = await client.post(
        "/logout", headers={"X-CSRF-Token": token, "Origin": ORIGIN}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login"

    client.cookies.clear()
    client.cookies.set("eventscope_session", session)
    assert (await client.get("/api/events")).status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/path",
        "https://evil.example",
        "http://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
async def test_login_never_redirects_off_site(anon: Client, target: str) -> None:
    for response in (
        await anon.get("/login", params={"token": TOKEN, "next": target}, follow_redirects=False),
        await anon.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False),
    ):
        assert response.status_code == 303
        location = response.headers["location"]
        # what a browser would do: strip tab/newline, resolve against this site
        cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
        resolved = urlsplit(urljoin(f"{ORIGIN}/", cleaned))
        assert resolved.scheme == "http"
        assert resolved.netloc == urlsplit(ORIGIN).netloc, location


def _concrete(path: str) -> str:
    path = re.sub(r"\{[^}:]+:int\}", "1", path)
    path = re.sub(r"\{[^}:]+:path\}", "app.css", path)
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_every_route_refuses_unauthenticated_requests(app: Litestar, anon: Client) -> None:
    checked = []
    for route in app.routes:
        if PUBLIC.match(_concrete(route.path)):
            continue
        path = _concrete(route.path)
        if isinstance(route, WebSocketRoute):
            with pytest.raises(WebSocketDisconnect) as refused:
                session = await anon.websocket_connect(path, headers={"origin": ORIGIN})
                with session:
                    session.receive_text(timeout=5)
            assert refused.value.code == 4401
            checked.append(("WS", path))
            continue
        assert isinstance(route, HTTPRoute | ASGIRoute), route
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            for headers in ({}, HTML):
                response = await anon.request(method, path, headers=headers, follow_redirects=False)
                if response.status_code == 303:
                    assert urlsplit(response.headers["location"]).path == "/login", (method, path)
                else:
                    assert response.status_code == 401, (method, path, response.status_code)
                assert "eventscope_session" not in response.headers.get("set-cookie", "")
            checked.append((method, path))
    expected = {("GET", "/"), ("GET", "/api/events"), ("GET", "/events/1/raw"), ("WS", "/ws/live")}
    expected |= {("POST", "/logout"), ("GET", "/schema/openapi.json"), ("GET", "/api/status")}
    assert expected <= set(checked)


async def test_public_routes_answer_without_credentials(anon: Client) -> None:
    assert (await anon.get("/healthz")).status_code == 200
    assert (await anon.get("/login")).status_code == 200
    static = await anon.get("/static/app.css")
    assert static.status_code == 200
    assert "text/css" in static.headers["content-type"]


async def test_websocket_with_a_valid_session_is_accepted(client: Client) -> None:
    session = await client.websocket_connect("/ws/live", headers={"origin": ORIGIN})
    with session:
        session.send_json({"action": "pause"})
        assert 'id="live-controls"' in session.receive_text(timeout=10)
