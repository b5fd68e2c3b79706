"""The detail page's comforts as the server writes them: times a browser can convert, copy buttons
that carry whole ids (masked for viewers), a foldable body, and ways to start a comparison."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.envelope import MAX_ID_CHARS
from tests.web.conftest import TOKEN, delivery
from tests.web.test_security import HTML, MASK, VIEWER, bearer

Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,)}


@pytest.fixture
async def viewer(anon: Client) -> Client:
    response = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return anon


def copies(page: str) -> dict[str, str]:
    """aria-label of each copy button → the value it copies (decoded as app.js decodes it)."""
    found = re.findall(
        r"""<button type="button" class="copy" data-copy='([^']*)'[^>]*"""
        r'aria-label="copy ([^"]+)"',
        page,
    )
    return {label: json.loads(html.unescape(raw)) for raw, label in found}


async def test_ids_have_copy_buttons_with_their_whole_values(
    client: Client, put: Callable[..., Any]
) -> None:
    long_id = "corr-" + "x" * (2 * MAX_ID_CHARS)
    body = {
        "id": "evt-1",
        "aggregateId": "order-7",
        "aggregateType": "Order",
        "metadata": {"correlationId": long_id, "causationId": "nul\u0000inside"},
    }
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    [event_id] = await put(
        delivery(
            "order.created",
            body,
            headers={"traceparent": traceparent},
            properties={"message_id": "msg-'quoted'\"<b>"},
        ),
    )
    page = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert copies(page) == {
        "event id": "evt-1",
        "message id": "msg-'quoted'\"<b>",
        "correlation id": long_id,
        "causation id": "nul\u0000inside",
        "aggregate id": "order-7",
        "trace id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    assert "msg-'quoted'\"<b>" not in page, "the attribute holds the value escaped"


async def test_a_viewer_copies_what_a_viewer_sees(viewer: Client, put: Callable[..., Any]) -> None:
    body = {"id": "evt-2", "metadata": {"correlationId": "card 4111111111111111"}}
    [event_id] = await put(delivery("order.created", body))
    page = (await viewer.get(f"/events/{event_id}", headers=HTML)).text
    assert "4111111111111111" not in page
    assert MASK in copies(page)["correlation id"]
    assert f'data-copy-url="/api/events/{event_id}" data-copy-field="body_text"' in page
    operator = (await viewer.get(f"/events/{event_id}", headers={**HTML, **bearer(TOKEN)})).text
    assert copies(operator)["correlation id"] == "card 4111111111111111"
    assert f'data-copy-url="/events/{event_id}/raw"' in operator


async def test_times_are_time_elements_a_browser_can_convert(
    client: Client, put: Callable[..., Any]
) -> None:
    [event_id] = await put(delivery("t", {"timestamp": "2025-10-22T14:29:59.5Z"}))
    page = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert (
        '<time datetime="2025-10-22T14:30:00.000Z" data-fmt="iso">2025-10-22T14:30:00.000Z</time>'
        in page
    )
    assert '<time datetime="2025-10-22T14:29:59.500Z" data-fmt="iso">' in page
    timeline = (await client.get("/", headers=HTML)).text
    assert (
        '<time datetime="2025-10-22T14:30:00.000Z" data-fmt="clock">14:30:00.000</time>' in timeline
    )
    assert 'data-tz="local"' in timeline, "the header offers the local-time switch"


async def test_the_body_is_a_foldable_tree_with_controls(
    client: Client, put: Callable[..., Any]
) -> None:
    [event_id, plain] = await put(
        delivery("j", {"data": {"items": [1, 2]}}), delivery("t", b"just text")
    )
    page = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert page.count('<button class="jf"></button>') == 3
    assert 'data-fold="close"' in page and 'data-fold="open"' in page
    text = (await client.get(f"/events/{plain}", headers=HTML)).text
    assert 'class="jf"' not in text and "data-fold=" not in text
    assert 'aria-label="copy body"' in text, "a text body can be copied too"


async def test_the_page_offers_to_compare_with_another_event(
    client: Client, put: Callable[..., Any]
) -> None:
    older, newer = await put(delivery("a", {"n": 1}), delivery("b", {"n": 2}))
    page = (await client.get(f"/events/{newer}", headers=HTML)).text
    form = '<form class="compare-with" method="get" action="/compare">'
    assert f'{form}<input type="hidden" name="a" value="{newer}">' in page
    assert f'name="b" value="{older}"' in page, "prefilled with the event just before"
    assert f'data-pick="{newer}"' in page
