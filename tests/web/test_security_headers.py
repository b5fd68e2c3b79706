"""Every kind of response carries the security headers: pages, API, errors, login, refusals."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.web.conftest import delivery

Client = AsyncTestClient[Litestar]
HTML = {"accept": "text/html"}


def assert_hardened(headers: object) -> None:
    csp = headers["content-security-policy"]  # type: ignore[index]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["script-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert headers["x-content-type-options"] == "nosniff"  # type: ignore[index]
    assert headers["referrer-policy"] in {"no-referrer", "same-origin", "strict-origin"}  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/", HTML, 200),
        ("/api/events", {}, 200),
        ("/api/status", {}, 200),
        ("/events/987654", HTML, 404),
        ("/api/events/987654", {}, 404),
        ("/no/such/page", HTML, 404),
        ("/healthz", {}, 200),
    ],
)
async def test_authenticated_responses_carry_security_headers(
    client: Client, path: str, headers: dict[str, str], status: int
) -> None:
    response = await client.get(path, headers=headers)
    assert response.status_code == status
    assert_hardened(response.headers)


async def test_login_page_carries_security_headers(anon: Client) -> None:
    response = await anon.get("/login", headers=HTML)
    assert response.status_code == 200
    assert_hardened(response.headers)


async def test_refusals_carry_security_headers(anon: Client) -> None:
    api = await anon.get("/api/events")
    assert api.status_code == 401
    assert_hardened(api.headers)
    page = await anon.get("/", headers=HTML, follow_redirects=False)
    assert page.status_code == 303
    assert_hardened(page.headers)


async def test_pages_with_event_data_are_not_cached(client: Client) -> None:
    for path in every_get_path(client.app):
        if path.startswith("/static/"):
            continue
        assert "no-store" in (await client.get(path, headers=HTML)).headers["cache-control"]


def every_get_path(app: Litestar) -> list[str]:
    """Every registered GET route, path parameters filled in (new routes are picked up)."""
    from litestar.routes import HTTPRoute

    paths = []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and "GET" in route.methods:
            path = route.path.replace("{event_id:int}", "1")
            path = path.replace("{file_path:path}", "app.css")
            path = path.replace("{path:str}", "openapi.json")
            path = path.replace("{correlation_id:str}", "req_1")
            path = path.replace("{type_key:int}", "1")
            path = path.replace("{aggregate_type:str}", "Order")
            path = path.replace("{aggregate_id:str}", "order_1")
            path = path.replace("{batch_id:str}", "0123456789abcdef")
            assert "{" not in path, f"fill in the parameters of {route.path} here"
            paths.append(path)
    return paths


async def test_every_get_route_carries_security_headers(client: Client, put: object) -> None:
    await put(delivery("order.created"))  # type: ignore[operator]
    paths = every_get_path(client.app)
    assert {"/", "/events/1", "/api/events/1", "/audit", "/static/app.css"} <= set(paths)
    for path in paths:
        response = await client.get(path, headers=HTML, follow_redirects=False)
        assert response.status_code < 500, path
        assert_hardened(response.headers)
