"""Security: roles, masking for viewers, users file, CSRF and origins, read-only, hosts, CORS,
body and login limits, cookies, the audit log, error pages and the --no-auth refusal.

Every assertion is about what a user (or a script) actually sees: status codes, page text,
JSON values, cookie attributes, audit entries.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers import HTTPRouteHandler
from litestar.testing import AsyncTestClient, WebSocketTestSession

from eventscope.backend.settings import Settings, load_settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.users import hash_password
from eventscope.web.app import create_app
from eventscope.web.auth import operator_action
from tests.conftest import eventually
from tests.web.conftest import ORIGIN, TOKEN, csrf_token, delivery, hub_ready
from tests.web.test_live_socket import NEW_ROWS, receive_until
from tests.web.test_security_headers import assert_hardened

Client = AsyncTestClient[Litestar]
VIEWER = "v1ew"
HTML = {"accept": "text/html,application/xhtml+xml"}
FOREIGN = "http://evil.example"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the address --no-auth must refuse
MASK = "••••••"
CARD = "4111 1111 1111 1111"
ACTION = "/test/action"
CRASH = "/test/crash"
API_CRASH = "/api/test/crash"

USERS = {"alice": ("viewer", "alice-pass-1"), "bob": ("operator", "bob-pass-22")}

# A JSON body with secrets at several depths, spaced oddly so "the exact stored bytes" matters.
SECRET_BODY = (
    b'{"user": "alice",  "password": "hunter2",\n'
    b' "payment": {"cardNumber": "4111 1111 1111 1111", "amount": 12.5},\n'
    b' "session": {"refresh_token": "r3fresh-abc", "ttl": 60},\n'
    b' "items": [{"sku": "A1", "apiToken": "tok-xyz"}]}\n'
)
SECRET_HEADERS = {"authorization": "Bearer hdr-s3cret", "x-trace": "trace-1"}
SECRETS = ("hunter2", CARD, "r3fresh-abc", "tok-xyz", "hdr-s3cret")
MASKED_JSON = {
    "user": "alice",
    "password": MASK,
    "payment": {"cardNumber": MASK + "1111", "amount": 12.5},
    "session": {"refresh_token": MASK, "ttl": 60},
    "items": [{"sku": "A1", "apiToken": MASK}],
}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def write_users(directory: Path) -> str:
    """A users file as `eventscope hash-password` prints it, with a comment and a blank line."""
    lines = ["# eventscope users", ""]
    lines += [f"{name}:{role}:{hash_password(pw)}" for name, (role, pw) in USERS.items()]
    path = directory / "users.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A viewer token always; `indirect` parametrization adds more (`users=True`: users file)."""
    values: dict[str, Any] = {"viewer_tokens": (VIEWER,)}
    values.update(getattr(request, "param", {}))
    if values.pop("users", False):
        values["users_file"] = write_users(tmp_path)
    return values


def test_routes(settings: Settings) -> list[HTTPRouteHandler]:
    """Test-only routes: an operator action (no real one exists yet) and two crashing ones."""

    @post(ACTION, guards=[operator_action], status_code=200)
    async def action() -> dict[str, bool]:
        return {"done": True}

    @get(CRASH)
    async def crash() -> str:
        raise RuntimeError(f"boom-detail {settings.token} {settings.database_url}")

    @get(API_CRASH)
    async def api_crash() -> dict[str, str]:
        raise RuntimeError(f"boom-detail {settings.token} {settings.database_url}")

    return [action, crash, api_crash]


test_routes.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def app(settings: Settings) -> Litestar:
    """The real app from create_app, plus the test-only routes (behind the same middleware)."""
    built = create_app(settings, run_recorder=False, migrate=False)
    for handler in test_routes(settings):
        built.register(handler)
    return built


@pytest.fixture
async def viewer(anon: Client) -> Client:
    """The anonymous client, logged in with the viewer token through the login link."""
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert "eventscope_session" in anon.cookies
    return anon


async def audit_items(client: Client, **params: Any) -> list[dict[str, Any]]:
    """The audit log as the operator's script reads it (bearer: no audit entry of its own)."""
    response = await client.get("/api/audit", params=params, headers=bearer(TOKEN))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def stored_audit(database_url: str) -> list[dict[str, Any]]:
    """The audit log read from the database (when this client may no longer ask the API)."""
    store = EventStore(database_url)
    try:
        return await store.audit.entries(100)
    finally:
        await store.close()


def session_cookie(response: Any) -> list[str]:
    """The attributes of the session cookie a response sets, lowercased."""
    cookies = [c for c in response.headers.get_list("set-cookie") if "eventscope_session=" in c]
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    return [part.strip().lower() for part in cookies[0].split(";")]


# --- 1. viewer role and masking ------------------------------------------------------------


async def test_viewer_reads_pages_api_audit_and_the_websocket(
    viewer: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    (event_id,) = await put(delivery("viewer.can.read"))
    page = await viewer.get("/", headers=HTML)
    assert page.status_code == 200
    assert "viewer.can.read" in page.text
    assert '<span title="role">viewer</span> · viewer token 1' in page.text

    listing = await viewer.get("/api/events")
    assert listing.status_code == 200
    assert [item["routing_key"] for item in listing.json()["items"]] == ["viewer.can.read"]

    detail = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert detail.status_code == 200
    assert f"#{event_id}" in detail.text

    assert (await viewer.get(f"/api/events/{event_id}")).status_code == 200
    audit = await viewer.get("/audit", headers=HTML)
    assert audit.status_code == 200
    assert "Audit log" in audit.text
    assert (await viewer.get("/api/audit")).status_code == 200

    await hub_ready(app)
    with await viewer.websocket_connect("/ws/live", headers={"origin": ORIGIN}) as session:
        session.send_json({"action": "pause"})
        message, _ = receive_until(session, lambda m: 'id="live-controls"' in m, "controls")
        assert "Paused" in message


async def test_viewer_cannot_download_the_raw_body(viewer: Client, put: Callable[..., Any]) -> None:
    (event_id,) = await put(delivery("raw.refused", SECRET_BODY))
    response = await viewer.get(f"/events/{event_id}/raw")
    assert response.status_code == 403
    assert response.json() == {"status_code": 403, "detail": "Operators only."}
    assert b"hunter2" not in response.content


async def test_secrets_are_masked_for_the_viewer_on_the_detail_page(
    viewer: Client, put: Callable[..., Any]
) -> None:
    (event_id,) = await put(delivery("secrets.page", SECRET_BODY, headers=SECRET_HEADERS))
    page = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert page.status_code == 200
    for secret in SECRETS:
        assert secret not in page.text, secret
    assert MASK + "1111" in page.text  # the card's last four stay, for recognising it
    assert page.text.count(MASK) >= 5  # password, card, refresh_token, apiToken, authorization
    assert "masked for viewers" in page.text
    assert f"/events/{event_id}/raw" not in page.text
    assert "trace-1" in page.text  # harmless headers are still shown
    assert "alice" in page.text


async def test_secrets_are_masked_for_the_viewer_in_the_api(
    viewer: Client, put: Callable[..., Any]
) -> None:
    (event_id,) = await put(delivery("secrets.api", SECRET_BODY, headers=SECRET_HEADERS))
    response = await viewer.get(f"/api/events/{event_id}")
    assert response.status_code == 200
    data = response.json()
    assert data["redacted"] is True
    assert data["body_base64"] is None
    assert data["body_json"] == MASKED_JSON
    assert data["headers"] == {"authorization": MASK, "x-trace": "trace-1"}
    assert data["headers_typed"]["authorization"] == ["s", MASK]
    assert json.loads(data["body_text"]) == MASKED_JSON
    for secret in SECRETS:
        assert secret not in response.text, secret


async def test_the_operator_sees_originals_and_raw_returns_the_stored_bytes(
    viewer: Client, put: Callable[..., Any]
) -> None:
    (event_id,) = await put(delivery("secrets.operator", SECRET_BODY, headers=SECRET_HEADERS))
    # the viewer looks first: masking must not touch what is stored
    assert (await viewer.get(f"/api/events/{event_id}")).json()["redacted"] is True
    assert (await viewer.get(f"/events/{event_id}", headers=HTML)).status_code == 200

    op = bearer(TOKEN)
    data = (await viewer.get(f"/api/events/{event_id}", headers=op)).json()
    assert data["redacted"] is False
    assert base64.b64decode(data["body_base64"]) == SECRET_BODY
    assert data["body_json"] == json.loads(SECRET_BODY)
    assert data["body_text"] == SECRET_BODY.decode()
    assert data["headers"] == SECRET_HEADERS

    page = await viewer.get(f"/events/{event_id}", headers={**HTML, **op})
    for secret in SECRETS:
        assert secret in page.text, secret
    assert "Download raw body" in page.text
    assert "masked for viewers" not in page.text

    raw = await viewer.get(f"/events/{event_id}/raw", headers=op)
    assert raw.status_code == 200
    assert raw.content == SECRET_BODY
    assert raw.headers["content-type"] == "application/octet-stream"
    assert "attachment" in raw.headers["content-disposition"]


async def test_card_numbers_in_ids_are_masked_in_the_timeline_and_list(
    viewer: Client, put: Callable[..., Any]
) -> None:
    await put(
        delivery(
            "pay.card.4111111111111111",
            properties={"correlation_id": "corr 4111-1111-1111-1111"},
        )
    )
    page = await viewer.get("/", headers=HTML)
    assert page.status_code == 200
    assert "4111111111111111" not in page.text
    assert "4111-1111-1111-1111" not in page.text
    assert f"pay.card.{MASK}1111" in page.text
    assert f"corr {MASK}1111" in page.text

    (item,) = (await viewer.get("/api/events")).json()["items"]
    assert item["routing_key"] == f"pay.card.{MASK}1111"
    assert item["correlation_id"] == f"corr {MASK}1111"

    (original,) = (await viewer.get("/api/events", headers=bearer(TOKEN))).json()["items"]
    assert original["routing_key"] == "pay.card.4111111111111111"
    assert original["correlation_id"] == "corr 4111-1111-1111-1111"
    operator_page = await viewer.get("/", headers={**HTML, **bearer(TOKEN)})
    assert "pay.card.4111111111111111" in operator_page.text


async def test_numbers_that_are_not_cards_are_not_masked(
    viewer: Client, put: Callable[..., Any]
) -> None:
    """Luhn check: order numbers and timestamps of card length stay readable."""
    await put(delivery("order.4111111111111112"))
    (item,) = (await viewer.get("/api/events")).json()["items"]
    assert item["routing_key"] == "order.4111111111111112"


async def test_card_numbers_stored_as_json_numbers_are_masked_for_the_viewer(
    viewer: Client, put: Callable[..., Any]
) -> None:
    (event_id,) = await put(delivery("card.as.number", b'{"card": 4111111111111111}'))
    data = (await viewer.get(f"/api/events/{event_id}")).json()
    assert "4111111111111111" not in json.dumps(data)
    page = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert "4111111111111111" not in page.text


async def test_text_bodies_are_masked_with_the_mask_for_the_viewer(
    viewer: Client, put: Callable[..., Any]
) -> None:
    body = "password=hunter2 card 4111 1111 1111 1111 für alice".encode()
    (event_id,) = await put(
        delivery("text.secret", body, properties={"content_type": "text/plain"})
    )
    data = (await viewer.get(f"/api/events/{event_id}")).json()
    assert data["body_kind"] == "text"
    assert data["body_text"] == f"password={MASK} card {MASK}1111 für alice"
    page = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert "hunter2" not in page.text
    assert f"password={MASK}" in page.text


async def test_copies_of_a_message_do_not_leak_their_routing_key_to_the_viewer(
    viewer: Client, put: Callable[..., Any]
) -> None:
    """The detail page lists the same message seen elsewhere (e.g. dead-lettered)."""
    body = b'{"refund": 12}'
    props = {"message_id": "m-copy-1"}
    _, copy_id = await put(
        delivery("refund.4111111111111111", body, properties=props),
        delivery("refund.dead", body, exchange="events.dlx", properties=props),
    )
    operator_page = await viewer.get(f"/events/{copy_id}", headers={**HTML, **bearer(TOKEN)})
    assert "Same message seen elsewhere" in operator_page.text
    assert "refund.4111111111111111" in operator_page.text

    page = await viewer.get(f"/events/{copy_id}", headers=HTML)
    assert "Same message seen elsewhere" in page.text
    assert "4111111111111111" not in page.text


# --- 2. live stream masking ----------------------------------------------------------------


@asynccontextmanager
async def live(
    client: Client, app: Litestar, headers: dict[str, str]
) -> AsyncIterator[WebSocketTestSession]:
    hub = app.state.web.hub
    before = len(hub.subscribers)
    with await client.websocket_connect(
        "/ws/live", headers={"origin": ORIGIN, **headers}
    ) as session:
        await eventually(lambda: len(hub.subscribers) > before, 10, "the socket to subscribe")
        yield session


async def test_live_rows_are_masked_for_viewers_only(
    viewer: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    await hub_ready(app)
    async with (
        live(viewer, app, {}) as viewer_socket,  # the viewer's session cookie
        live(viewer, app, bearer(TOKEN)) as operator_socket,  # the operator token wins
    ):
        await put(
            delivery(
                "live.card.4111111111111111",
                properties={"correlation_id": "corr 4111 1111 1111 1111"},
            )
        )
        masked, _ = receive_until(viewer_socket, lambda m: NEW_ROWS in m, "the viewer's rows")
        assert "4111111111111111" not in masked
        assert CARD not in masked
        assert f"live.card.{MASK}1111" in masked
        assert f"corr {MASK}1111" in masked

        plain, _ = receive_until(operator_socket, lambda m: NEW_ROWS in m, "the operator's rows")
        assert "live.card.4111111111111111" in plain
        assert f"corr {CARD}" in plain
        assert MASK not in plain


async def test_resumed_live_rows_stay_masked_for_viewers(
    viewer: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    await hub_ready(app)
    async with live(viewer, app, {}) as session:
        session.send_json({"action": "pause"})
        receive_until(session, lambda m: "Paused" in m, "the paused controls")
        await put(delivery("paused.card.4111111111111111"))
        session.send_json({"action": "resume"})
        message, _ = receive_until(session, lambda m: "paused.card." in m, "the reset rows")
        assert "4111111111111111" not in message
        assert f"paused.card.{MASK}1111" in message


# --- 3. users file ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"users": True}], indirect=True)
async def test_users_file_logins_get_their_role(anon: Client, put: Callable[..., Any]) -> None:
    (event_id,) = await put(delivery("users.file", SECRET_BODY))

    response = await anon.post(
        "/login",
        data={"username": "alice", "password": "alice-pass-1", "next": "/"},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    page = await anon.get("/", headers=HTML)
    assert '<span title="role">viewer</span> · alice' in page.text
    assert (await anon.get(f"/events/{event_id}/raw")).status_code == 403
    assert (await anon.get(f"/api/events/{event_id}")).json()["redacted"] is True

    anon.cookies.clear()
    response = await anon.post(
        "/login",
        data={"username": "bob", "password": "bob-pass-22", "next": f"/events/{event_id}"},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/events/{event_id}"
    page = await anon.get("/", headers=HTML)
    assert '<span title="role">operator</span> · bob' in page.text
    raw = await anon.get(f"/events/{event_id}/raw")
    assert raw.status_code == 200
    assert raw.content == SECRET_BODY

    logins = [e for e in await audit_items(anon) if e["action"] == "login"]
    assert [(e["actor"], e["role"], e["result"]) for e in logins] == [
        ("bob", "operator", "ok"),
        ("alice", "viewer", "ok"),
    ]


@pytest.mark.parametrize("settings_overrides", [{"users": True}], indirect=True)
@pytest.mark.parametrize(
    ("name", "password"),
    [("bob", "alice-pass-1"), ("bob", ""), ("mallory", "bob-pass-22"), ("alice", "v1ew")],
)
async def test_wrong_password_is_a_401_and_audited(anon: Client, name: str, password: str) -> None:
    response = await anon.post(
        "/login",
        data={"username": name, "password": password},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.status_code == 401
    assert "Those credentials are not valid." in response.text
    assert "eventscope_session" not in response.headers.get("set-cookie", "")
    assert (await anon.get("/api/events")).status_code == 401

    (entry,) = await audit_items(anon)
    assert entry["actor"] == name
    assert entry["action"] == "login"
    assert entry["result"] == "failed"
    assert entry["role"] is None
    assert entry["client"] == "testclient"


@pytest.mark.parametrize("settings_overrides", [{"users": True}], indirect=True)
async def test_login_page_offers_name_and_password_with_a_users_file(anon: Client) -> None:
    page = await anon.get("/login", headers=HTML)
    assert page.status_code == 200
    assert '<label for="username">Name</label>' in page.text
    assert 'name="password" type="password"' in page.text
    assert 'name="token" type="password"' in page.text  # tokens still work


async def test_login_page_offers_only_the_token_without_a_users_file(anon: Client) -> None:
    page = await anon.get("/login", headers=HTML)
    assert page.status_code == 200
    assert 'name="token" type="password"' in page.text
    assert '<label for="username">Name</label>' not in page.text
    assert 'name="password"' not in page.text


async def test_name_and_password_are_refused_without_a_users_file(anon: Client) -> None:
    response = await anon.post(
        "/login",
        data={"username": "bob", "password": TOKEN},  # the operator token as a "password"
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    # without a users file the secret is checked as a token: that is the operator token
    assert response.status_code == 303
    anon.cookies.clear()
    response = await anon.post(
        "/login",
        data={"username": "bob", "password": "bob-pass-22"},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.status_code == 401


# --- 4. CSRF and origins ------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{"origin": ORIGIN}, {}], ids=["same-origin", "no-origin"])
async def test_logout_without_the_csrf_token_is_refused(
    client: Client, headers: dict[str, str]
) -> None:
    response = await client.post("/logout", headers=headers, follow_redirects=False)
    assert response.status_code == 403
    assert response.json()["detail"] == "missing or wrong CSRF token"
    assert (await client.get("/api/events")).status_code == 200


async def test_logout_with_a_wrong_csrf_token_is_refused(client: Client) -> None:
    right = await csrf_token(client)
    for wrong in ("nope", right[:-1], right + "x", ""):
        response = await client.post(
            "/logout", headers={"origin": ORIGIN, "x-csrf-token": wrong}, follow_redirects=False
        )
        assert response.status_code == 403, wrong
    assert (await client.get("/api/events")).status_code == 200


async def test_logout_with_the_csrf_token_ends_the_session_server_side(client: Client) -> None:
    session = client.cookies["eventscope_session"]
    token = await csrf_token(client)
    response = await client.post(
        "/logout", headers={"origin": ORIGIN, "x-csrf-token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert "max-age=0" in session_cookie(response)
    client.cookies.clear()
    client.cookies.set("eventscope_session", session)  # a copied cookie is now worthless
    assert (await client.get("/api/events")).status_code == 401


async def test_the_csrf_token_is_per_session(client: Client) -> None:
    first = await csrf_token(client)
    client.cookies.clear()
    response = await client.get("/login", params={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    second = await csrf_token(client)
    assert first != second
    response = await client.post(
        "/logout", headers={"origin": ORIGIN, "x-csrf-token": first}, follow_redirects=False
    )
    assert response.status_code == 403


async def test_logout_by_get_changes_nothing(client: Client) -> None:
    response = await client.get("/logout", follow_redirects=False)
    assert response.status_code == 405
    assert (await client.get("/api/events")).status_code == 200


async def test_a_bearer_post_needs_no_csrf_token(anon: Client) -> None:
    assert not anon.cookies
    response = await anon.post(ACTION, headers=bearer(TOKEN))
    assert response.status_code == 200
    assert response.json() == {"done": True}


async def test_a_session_post_to_an_action_needs_the_csrf_token(client: Client) -> None:
    response = await client.post(ACTION, headers={"origin": ORIGIN})
    assert response.status_code == 403
    token = await csrf_token(client)
    response = await client.post(ACTION, headers={"origin": ORIGIN, "x-csrf-token": token})
    assert response.status_code == 200
    assert response.json() == {"done": True}


@pytest.mark.parametrize(
    "foreign",
    [
        {"origin": FOREIGN},
        {"origin": "null"},
        {"origin": "http://testserver.local.evil.example"},
        {"referer": f"{FOREIGN}/page"},
    ],
    ids=["origin", "null", "suffix", "referer"],
)
async def test_a_foreign_origin_is_refused_even_with_the_csrf_token(
    client: Client, foreign: dict[str, str]
) -> None:
    token = await csrf_token(client)
    response = await client.post(
        "/logout", headers={**foreign, "x-csrf-token": token}, follow_redirects=False
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "cross-origin request refused"
    assert (await client.get("/api/events")).status_code == 200  # still logged in

    response = await client.post(ACTION, headers={**foreign, "x-csrf-token": token})
    assert response.status_code == 403


async def test_login_from_a_foreign_origin_is_refused(anon: Client) -> None:
    response = await anon.post(
        "/login", data={"token": TOKEN}, headers={"origin": FOREIGN}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert (await anon.get("/api/events")).status_code == 401


# --- 5. read-only --------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"read_only": True}], indirect=True)
async def test_read_only_refuses_actions_even_to_the_operator(client: Client) -> None:
    response = await client.post(ACTION, headers=bearer(TOKEN))
    assert response.status_code == 403
    assert response.json()["detail"] == "eventscope runs read-only: actions are disabled."

    token = await csrf_token(client)
    response = await client.post(ACTION, headers={"origin": ORIGIN, "x-csrf-token": token})
    assert response.status_code == 403

    page = await client.get("/", headers=HTML)
    assert page.status_code == 200
    assert ">read-only</span>" in page.text
    assert '<span title="role">operator</span>' in page.text


async def test_without_read_only_the_operator_acts_and_the_viewer_does_not(client: Client) -> None:
    page = await client.get("/", headers=HTML)
    assert ">read-only</span>" not in page.text
    assert (await client.post(ACTION, headers=bearer(TOKEN))).status_code == 200

    response = await client.post(ACTION, headers=bearer(VIEWER))
    assert response.status_code == 403
    assert response.json()["detail"] == "Operators only."


async def test_a_viewer_session_cannot_act_even_with_its_csrf_token(viewer: Client) -> None:
    token = await csrf_token(viewer)
    response = await viewer.post(ACTION, headers={"origin": ORIGIN, "x-csrf-token": token})
    assert response.status_code == 403
    assert response.json()["detail"] == "Operators only."


# --- 6. hosts and websocket origins ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/login", "/api/events"])
async def test_a_host_that_is_not_allowed_is_a_400(client: Client, path: str) -> None:
    response = await client.get(path, headers={"host": "evil.example"})
    assert response.status_code == 400
    assert response.json() == {"message": "invalid host header"}
    assert "location" not in response.headers
    assert_hardened(response.headers)


async def test_the_allowed_host_is_served(client: Client) -> None:
    assert (
        await client.get("/api/events", headers={"host": "testserver.local"})
    ).status_code == 200


@pytest.mark.parametrize("origin", [FOREIGN, "https://testserver.local.evil.example"])
async def test_the_websocket_from_a_foreign_origin_is_refused(viewer: Client, origin: str) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        session = await viewer.websocket_connect("/ws/live", headers={"origin": origin})
        with session:
            session.receive_text(timeout=5)
    assert refused.value.code == 4403


# --- 7. CORS -----------------------------------------------------------------------------


async def test_no_cors_headers_on_a_cross_origin_request(client: Client) -> None:
    response = await client.get("/api/events", headers={"origin": FOREIGN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("path", ["/api/events", "/logout", "/login"])
@pytest.mark.parametrize("logged_in", [True, False], ids=["session", "anonymous"])
async def test_no_cors_headers_on_a_preflight(client: Client, path: str, logged_in: bool) -> None:
    if not logged_in:
        client.cookies.clear()
    response = await client.options(
        path,
        headers={
            "origin": FOREIGN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-csrf-token, authorization",
        },
    )
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert "access-control-allow-headers" not in response.headers
    assert "access-control-allow-methods" not in response.headers
    assert response.status_code == (204 if logged_in or path == "/login" else 401)


# --- 8. body size --------------------------------------------------------------------------


async def test_a_login_body_over_64_kib_is_a_413(anon: Client) -> None:
    response = await anon.post(
        "/login", data={"token": "x" * (100 * 1024)}, headers={"origin": ORIGIN}
    )
    assert response.status_code == 413
    assert "set-cookie" not in response.headers
    small = await anon.post(
        "/login", data={"token": TOKEN}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    assert small.status_code == 303


# --- 9. login rate limit -------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"login_attempts_per_minute": 3}], indirect=True)
async def test_failed_logins_are_rate_limited_per_client(anon: Client, web_db: str) -> None:
    async def attempt(token: str) -> int:
        response = await anon.post(
            "/login", data={"token": token}, headers={"origin": ORIGIN}, follow_redirects=False
        )
        return response.status_code

    assert [await attempt(f"guess-{n}") for n in range(3)] == [401, 401, 401]
    limited = await anon.post(
        "/login", data={"token": "guess-4"}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    assert limited.status_code == 429
    assert "Too many failed attempts" in limited.text

    # within the window wrong credentials stay refused, by form and by link
    assert await attempt("guess-5") == 429
    link = await anon.get("/login", params={"token": "guess-6"}, follow_redirects=False)
    assert link.status_code == 429
    assert "eventscope_session" not in anon.cookies
    assert (await anon.get("/api/events")).status_code == 401
    # a blocked client cannot switch to guessing Bearer tokens either
    assert (await anon.get("/api/events", headers=bearer("guess-7"))).status_code == 429
    # ... and the right credential still gets in: nobody can lock anyone out
    # (more in tests/web/test_login_lockout.py)
    assert await attempt(TOKEN) == 303

    entries = await stored_audit(web_db)
    results = [(e["actor"], e["result"]) for e in entries]
    assert results == [
        ("operator token", "ok"),
        ("anonymous", "failed"),  # the rest of the flood, summarised before the login
        ("token form", "failed"),  # the first failure, written at once
    ]
    assert entries[1]["reason"] == "6 more failed attempts from testclient"
    assert json.loads(entries[1]["details"])["rate-limited"] == 4


@pytest.mark.parametrize("settings_overrides", [{"login_attempts_per_minute": 3}], indirect=True)
async def test_wrong_bearer_tokens_are_audited_and_rate_limited(
    anon: Client, app: Litestar, web_db: str
) -> None:
    codes = [
        (await anon.get("/api/events", headers=bearer(f"guess-{n}"))).status_code for n in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    assert (await anon.get("/api/events", headers=bearer(TOKEN))).status_code == 200
    app.state.web.attempts.audit.clock = lambda: time.monotonic() + 61  # the window closed
    failed = [e for e in await audit_items(anon) if e["result"] != "ok"]
    assert [e["actor"] for e in failed] == ["anonymous", "bearer token"]
    assert failed[0]["reason"] == "3 more failed attempts from testclient"
    assert all("guess" not in (e["details"] or "") for e in failed)


@pytest.mark.parametrize("settings_overrides", [{"login_attempts_per_minute": 3}], indirect=True)
async def test_successful_logins_do_not_count_towards_the_limit(anon: Client) -> None:
    for _ in range(5):
        anon.cookies.clear()
        response = await anon.get("/login", params={"token": TOKEN}, follow_redirects=False)
        assert response.status_code == 303


# --- 10. cookies ---------------------------------------------------------------------------


async def test_the_session_cookie_is_httponly_lax_and_not_secure_over_http(anon: Client) -> None:
    response = await anon.get("/login", params={"token": TOKEN}, follow_redirects=False)
    attributes = session_cookie(response)
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes
    assert "path=/" in attributes


@pytest.mark.parametrize("settings_overrides", [{"secure_cookies": True}], indirect=True)
async def test_the_session_cookie_is_secure_when_configured(anon: Client) -> None:
    response = await anon.get("/login", params={"token": TOKEN}, follow_redirects=False)
    attributes = session_cookie(response)
    assert "secure" in attributes
    assert "httponly" in attributes
    assert "samesite=lax" in attributes


async def test_the_session_cookie_is_secure_over_https(app: Litestar) -> None:
    async with AsyncTestClient(app, base_url="https://testserver.local") as tls:
        response = await tls.get("/login", params={"token": TOKEN}, follow_redirects=False)
        assert response.status_code == 303
        attributes = session_cookie(response)
        assert "secure" in attributes
        assert "httponly" in attributes
        assert "samesite=lax" in attributes

        token = await csrf_token(tls)
        logout = await tls.post(
            "/logout",
            headers={"origin": "https://testserver.local", "x-csrf-token": token},
            follow_redirects=False,
        )
        assert logout.status_code == 303
        assert "secure" in session_cookie(logout)


# --- 11. audit -----------------------------------------------------------------------------


async def test_login_and_logout_are_audited_newest_first(client: Client) -> None:
    token = await csrf_token(client)
    response = await client.post(
        "/logout", headers={"origin": ORIGIN, "x-csrf-token": token}, follow_redirects=False
    )
    assert response.status_code == 303

    logout, login = await audit_items(client)
    assert logout["id"] > login["id"]
    assert logout["at"] >= login["at"]
    for entry, action in ((logout, "logout"), (login, "login")):
        assert entry["actor"] == "operator token"
        assert entry["role"] == "operator"
        assert entry["action"] == action
        assert entry["result"] == "ok"
        assert entry["client"] == "testclient"
    assert json.loads(login["details"]) == {"via": "link"}
    assert TOKEN not in json.dumps([logout, login])

    page = await client.get("/audit", headers={**HTML, **bearer(TOKEN)})
    assert page.status_code == 200
    assert page.text.count("operator token") >= 2
    assert page.text.index("<td>logout</td>") < page.text.index("<td>login</td>")


async def test_audit_api_pages_with_before(anon: Client) -> None:
    response = await anon.get("/login", params={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    anon.cookies.clear()
    for n in range(3):
        response = await anon.get("/login", params={"token": f"wrong-{n}"})
        assert response.status_code == 401
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303

    everything = await audit_items(anon)
    # viewer login, the summary of the failures after the first, the first failure, operator
    assert [e["result"] for e in everything] == ["ok", "failed", "failed", "ok"]
    assert everything[0]["actor"] == "viewer token 1"
    assert everything[1]["reason"] == "2 more failed attempts from testclient"

    first = (await anon.get("/api/audit", params={"limit": 2})).json()  # the viewer's session
    assert [e["id"] for e in first["items"]] == [e["id"] for e in everything[:2]]
    assert first["next_before"] == everything[1]["id"]
    second = (
        await anon.get("/api/audit", params={"limit": 2, "before": first["next_before"]})
    ).json()
    assert [e["id"] for e in second["items"]] == [e["id"] for e in everything[2:]]
    assert second["next_before"] == everything[3]["id"]
    last = (await anon.get("/api/audit", params={"limit": 2, "before": everything[3]["id"]})).json()
    assert last == {"items": [], "next_before": None}


async def test_the_audit_page_shows_failed_logins(anon: Client) -> None:
    assert (await anon.get("/login", params={"token": "wrong"})).status_code == 401
    page = await anon.get("/audit", headers={**HTML, **bearer(TOKEN)})
    assert page.status_code == 200
    assert '<span class="badge dl">failed</span>' in page.text
    assert "token link" in page.text
    assert ">wrong<" not in page.text  # the guessed token is not logged


# --- 12. error pages -----------------------------------------------------------------------


async def test_the_500_page_shows_nothing_internal(client: Client, settings: Settings) -> None:
    response = await client.get(CRASH, headers=HTML)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "Internal error" in response.text
    for leak in ("Traceback", "RuntimeError", "boom-detail", TOKEN, settings.database_url):
        assert leak not in response.text, leak
    assert_hardened(response.headers)


async def test_the_500_answer_under_api_is_json(client: Client, settings: Settings) -> None:
    response = await client.get(API_CRASH, headers=HTML)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status_code": 500, "detail": "Internal error"}
    for leak in ("Traceback", "boom-detail", TOKEN, settings.database_url):
        assert leak not in response.text, leak
    assert_hardened(response.headers)


# --- 13. --no-auth refused off loopback ------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",  # noqa: S104
        "::",
        "192.168.1.10",
        "",
        "127.attacker.example",  # a name, not an address: it resolves wherever its owner likes
        "127.0.0.1.nip.io",
        "localhost.attacker.example",
        "::ffff:192.168.1.10",
    ],
)
def test_no_auth_off_loopback_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match=r"--no-auth is refused"):
        load_settings({}, {"no_auth": True, "host": host})


def test_no_auth_from_the_environment_off_loopback_is_refused() -> None:
    with pytest.raises(ValueError, match=r"--no-auth is refused on 0\.0\.0\.0"):
        load_settings({"EVENTSCOPE_NO_AUTH": "true", "EVENTSCOPE_HOST": "0.0.0.0"})  # noqa: S104


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "::ffff:127.0.0.1"])
def test_no_auth_on_loopback_is_allowed(host: str) -> None:
    assert load_settings({}, {"no_auth": True, "host": host}).no_auth is True


def test_the_cli_refuses_no_auth_on_all_interfaces(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env["EVENTSCOPE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/never.db"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("eventscope")),
            "serve",
            "--no-auth",
            "--host",
            ALL_INTERFACES,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "eventscope: --no-auth is refused on 0.0.0.0" in result.stderr
    assert "Traceback" not in result.stderr
    assert "open http" not in result.stdout  # it never started
    assert not (tmp_path / "never.db").exists()
