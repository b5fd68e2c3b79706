"""What a viewer sees of hostile and secret-laden events: every page renders, nothing masked
shows anywhere (detail page, API, timeline, live rows, headers, properties, ids, kept
originals, raw property bytes), and no body makes masking stall the server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.envelope import Delivery
from eventscope.web.app import create_app
from tests.conftest import Broker, Names, eventually, make_settings
from tests.integration.test_hostile_ingest import CORPUS
from tests.web.conftest import TOKEN, delivery, hub_ready
from tests.web.test_live_socket import NEW_ROWS, receive_until
from tests.web.test_security import HTML, MASK, VIEWER, bearer, live

Client = AsyncTestClient[Litestar]
NOW = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)
VIEWER_BYTES = 256 * 1024  # web/event_view.py: the most of a body masked for a viewer

# A body Python's json reads (NaN) but strict JSON does not: it used to fall back to text
# masking, which masked only the first word of a quoted value, and missed arrays and keys
# written with escapes.
NAN_BODY = (
    b'{"total": NaN, "max": Infinity, "password": "horse battery staple",\n'
    b' "tokens": ["t-one-secret", "t-two-secret"],\n'
    b' "pass\\u0077ord": "escaped-key-secret",\n'
    b' "nested": {"apiToken": {"inner": "deep-object-secret"}},\n'
    b' "note": "login password=note-pair-secret", "card": 4111111111111111}'
)
NAN_SECRETS = (
    "battery",
    "staple",
    "t-one-secret",
    "t-two-secret",
    "escaped-key-secret",
    "deep-object-secret",
    "note-pair-secret",
    "4111111111111111",
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,)}


@pytest.fixture
async def viewer(anon: Client) -> Client:
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return anon


def _leaks(text: str, secrets: tuple[str, ...]) -> list[str]:
    return [secret for secret in secrets if secret in text]


async def test_a_json_body_with_nan_shows_no_secret_to_a_viewer(
    viewer: Client, put: Callable[..., Any]
) -> None:
    (event_id,) = await put(
        delivery("nan.secrets", NAN_BODY, properties={"content_type": "application/json"})
    )
    page = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert page.status_code == 200
    assert _leaks(page.text, NAN_SECRETS) == []
    assert "NaN" in page.text  # still the JSON view, values as sent
    assert "Infinity" in page.text
    assert MASK + "1111" in page.text

    api = await viewer.get(f"/api/events/{event_id}")
    assert api.status_code == 200
    assert _leaks(api.text, NAN_SECRETS) == []
    data = api.json()
    assert data["body_json"] is None  # not strict JSON, for the viewer as for the operator
    assert "NaN" in data["body_text"]
    assert data["body_cut"] is False

    operator = (await viewer.get(f"/api/events/{event_id}", headers=bearer(TOKEN))).json()
    assert "horse battery staple" in operator["body_text"]  # masking never touches the store


async def test_every_hostile_corpus_event_renders_for_a_viewer(
    viewer: Client, put: Callable[..., Any]
) -> None:
    ids = []
    for routing_key, body, props, *_ in CORPUS:
        properties = {k: v for k, v in props.items() if k != "headers"}
        ids += await put(
            delivery(routing_key, body, headers=props.get("headers"), properties=properties)
        )
    for event_id, (routing_key, *_) in zip(ids, CORPUS, strict=True):
        page = await viewer.get(f"/events/{event_id}", headers=HTML)
        assert page.status_code == 200, routing_key
        assert "<script>alert(1)</script>" not in page.text
        assert "masked for viewers" in page.text
        api = await viewer.get(f"/api/events/{event_id}")
        assert api.status_code == 200, routing_key
        data = api.json()
        assert data["redacted"] is True and data["body_base64"] is None
        if data["body_text"] is not None:
            assert len(data["body_text"].encode()) <= VIEWER_BYTES * 3 + 64  # bounded (U+FFFD)
    timeline = await viewer.get("/", headers=HTML)
    assert timeline.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in timeline.text


async def test_a_large_body_is_masked_and_cut_for_the_viewer(
    viewer: Client, put: Callable[..., Any]
) -> None:
    body = b"password=first-secret " + b"x" * (2 * VIEWER_BYTES) + b" password=last-secret"
    (event_id,) = await put(delivery("large.text", body))
    data = (await viewer.get(f"/api/events/{event_id}")).json()
    assert data["body_cut"] is True
    assert data["body_text"].startswith(f"password={MASK} xxx")
    assert "first-secret" not in data["body_text"]
    assert "last-secret" not in data["body_text"]  # past the cut: not shown at all
    assert len(data["body_text"]) <= VIEWER_BYTES
    page = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert page.status_code == 200
    assert "first-secret" not in page.text and "last-secret" not in page.text
    assert "Showing the first" in page.text

    operator = (await viewer.get(f"/api/events/{event_id}", headers=bearer(TOKEN))).json()
    assert operator["body_cut"] is False
    assert operator["body_text"].endswith("password=last-secret")


# Every place an event shows something for a viewer, each holding a secret in its own way.
SURFACE_SECRETS = (
    "rk-pair-secret",
    "corr-pair-secret",
    "hdr-pair-secret",
    "hdr-bearer-secret",
    "nested-hdr-secret",
    "orig-pair-secret",
    "raw-props-secret",
    "problem-secret",
    "4111111111111111",
    "4111 1111 1111 1111",
)


def _surface_delivery() -> Delivery:
    return Delivery(
        "events",
        "pay.password=rk-pair-secret.4111111111111111.token=orig-pair-secret\x00",  # NUL: kept
        False,
        {
            "correlation_id": "corr password=corr-pair-secret",
            "message_id": "msg 4111 1111 1111 1111",
            "app_id": "app token=problem-secret-no",
        },
        {
            "x-note": "password=hdr-pair-secret",
            "authorization": "Bearer hdr-bearer-secret",
            "x-blob": bytearray(b"card 4111111111111111"),
            "ctx": {"inner": {"session_token": "nested-hdr-secret"}},
            "x-list": ["password=hdr-pair-secret"],
        },
        b'{"ok": true}',
        NOW,
        raw_properties=b"\x00\x10" + b"authorization: Bearer raw-props-secret" + b"\x00",
        problem="stored reduced: refused (value 'token=problem-secret')",
    )


async def test_no_viewer_surface_shows_a_masked_value(
    viewer: Client, app: Litestar, put: Callable[..., Any]
) -> None:
    await hub_ready(app)
    async with live(viewer, app, {}) as session:
        (event_id,) = await put(_surface_delivery())
        rows, _ = receive_until(session, lambda m: NEW_ROWS in m, "the viewer's live rows")
        assert _leaks(rows, SURFACE_SECRETS) == []
        assert "pay.password=" in rows
    surfaces = {
        "timeline": await viewer.get("/", headers=HTML),
        "detail": await viewer.get(f"/events/{event_id}", headers=HTML),
        "api list": await viewer.get("/api/events"),
        "api detail": await viewer.get(f"/api/events/{event_id}"),
    }
    for name, response in surfaces.items():
        assert response.status_code == 200, name
        assert _leaks(response.text, SURFACE_SECRETS) == [], name
    detail = surfaces["detail"].text
    assert 'id="originals"' in detail  # the kept-as-sent section is shown, masked
    assert 'id="raw-properties"' not in detail  # raw property bytes hold the headers
    assert 'id="problem"' in detail

    operator = await viewer.get(f"/events/{event_id}", headers={**HTML, **bearer(TOKEN)})
    assert 'id="raw-properties"' in operator.text
    for secret in ("rk-pair-secret", "hdr-pair-secret", "nested-hdr-secret", "problem-secret"):
        assert secret in operator.text, secret


DEPTH = 400  # stored by the recorder; the page's template recursion broke at about 150


async def test_a_deeply_nested_header_table_renders_for_viewer_and_operator(
    viewer: Client, put: Callable[..., Any]
) -> None:
    nested: dict[str, Any] = {"token": "deep-header-secret"}
    for n in range(DEPTH):
        nested = {f"l{n}": nested}
    (event_id,) = await put(delivery("deep.header", headers={"deep": nested}))
    page = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert page.status_code == 200
    assert "deep-header-secret" not in page.text
    assert (await viewer.get(f"/api/events/{event_id}")).status_code == 200
    operator = await viewer.get(f"/events/{event_id}", headers={**HTML, **bearer(TOKEN)})
    assert operator.status_code == 200
    assert "deep-header-secret" in operator.text


async def test_json_view_renders_the_masked_structure_for_viewers(
    viewer: Client, put: Callable[..., Any]
) -> None:
    body = json.dumps({"user": "ann", "password": "p w", "list": [1, 2]}).encode()
    (event_id,) = await put(delivery("json.view", body))
    page = await viewer.get(f"/events/{event_id}", headers=HTML)
    assert '<pre class="body json">' in page.text
    assert f"&#34;password&#34;: &#34;{MASK}&#34;" in page.text
    assert "p w" not in page.text


async def test_recorder_errors_in_the_status_bar_are_masked(
    web_db: str, names: Names, broker: Broker
) -> None:
    """The recorder's last error quotes the routing key of the message it concerns; the status
    bar and /api/status go to every viewer."""
    settings = make_settings(web_db, names, token=TOKEN, viewer_tokens=(VIEWER,))
    app = create_app(settings, migrate=False)  # with its recorder, on the real broker
    async with AsyncTestClient(app) as client:
        recorder = app.state.web.runtime.recorder
        await eventually(lambda: recorder.status.broker_connected, 20, "the recorder to connect")
        recorder.status.note_error(  # an injected error, worded as the recorder words it
            "message on 'pay.4111111111111111.password=status-secret': stored reduced"
        )
        status = await client.get("/api/status", headers=bearer(VIEWER))
        page = await client.get("/", headers={**HTML, **bearer(VIEWER)})
    assert status.json()["health"] == "warning"
    for response in (status, page):
        assert response.status_code == 200
        assert "status-secret" not in response.text
        assert "4111111111111111" not in response.text
    assert f"pay.{MASK}1111.password={MASK}" in status.json()["last_error"]
