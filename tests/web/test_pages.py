"""HTML pages: timeline, history, event detail, raw download; hostile data shown inert."""

from __future__ import annotations

import datetime as dt
import html as html_lib
import json
import re
from collections.abc import Callable
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from markupsafe import escape

from tests.web.conftest import delivery

Client = AsyncTestClient[Litestar]
HTML = {"accept": "text/html"}

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
TEMPLATE = "{{7*7}}"
HTMX = '<div hx-get="/api/events" hx-trigger="load">'


OUR_HTMX_ATTRIBUTES = {
    "hx-ext",
    "hx-disable",
    "hx-swap-oob",
    "hx-vals",
    "hx-headers",
    "hx-post",
    "ws-connect",
    "ws-send",
}


# Only the filter bar form (id="filter-bar") fetches: typing a filter replaces the timeline.
FILTER_BAR_ATTRIBUTES = {"hx-get", "hx-target", "hx-select", "hx-swap", "hx-push-url", "hx-trigger"}


class _Elements(HTMLParser):
    """The real elements and the visible text of a page, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.script_text if self._in_script else self.text).append(data)


def parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def assert_inert(page: str) -> None:
    """No markup from the bus became an element: no img, no inline script, no handler, no htmx."""
    parsed = parse(page)
    for tag, attrs in parsed.tags:
        assert tag not in {"img", "iframe", "object", "embed", "base"}, (tag, attrs)
        if tag == "script":
            assert (attrs.get("src") or "").startswith("/static/"), attrs
        for name in attrs:
            assert not name.startswith("on"), (tag, attrs)
            if name.startswith(("hx-", "data-hx-", "ws-")):
                ours = OUR_HTMX_ATTRIBUTES | (
                    FILTER_BAR_ATTRIBUTES if attrs.get("id") == "filter-bar" else set()
                )
                assert name in ours, (tag, attrs)
    assert "".join(parsed.script_text).strip() == ""


def visible_text(page: str) -> str:
    return "".join(parse(page).text)


async def test_timeline_lists_stored_events(client: Client, put: Callable[..., Any]) -> None:
    await put(
        delivery("order.created"), delivery("payment.completed"), delivery("dlq.order.shipped")
    )
    response = await client.get("/", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for key in ("order.created", "payment.completed", "dlq.order.shipped"):
        assert key in _keys(page)
    assert (
        page.index("dlq.order.shipped")
        < page.index("payment.completed")
        < page.index("order.created")
    )
    assert 'ws-connect="/ws/live?after=' in page


async def test_timeline_rows_link_to_their_event(client: Client, put: Callable[..., Any]) -> None:
    [event_id] = await put(delivery("order.created"))
    page = (await client.get("/", headers=HTML)).text
    assert f'href="/events/{event_id}"' in page


async def test_empty_store_shows_the_empty_state(client: Client) -> None:
    page = (await client.get("/", headers=HTML)).text
    assert "No events yet" in page
    assert '<tr id="e' not in page


@pytest.mark.parametrize("settings_overrides", [{"page_size": 2, "live_rows": 3}])
async def test_history_page_shows_the_older_page(client: Client, put: Callable[..., Any]) -> None:
    ids = await put(*(delivery(f"history.k{i:02d}") for i in range(6)))
    live = (await client.get("/", headers=HTML)).text
    assert [k for k in _keys(live)] == ["history.k05", "history.k04", "history.k03"]

    response = await client.get("/", params={"before": ids[3]}, headers=HTML)
    assert response.status_code == 200
    page = response.text
    assert _keys(page) == ["history.k02", "history.k01"]
    listing = (await client.get("/api/events", params={"limit": 100})).json()["items"]
    cursors = {item["id"]: item["cursor"] for item in listing}
    assert f'href="/?before={cursors[ids[1]]}"' in page
    assert f'href="/?after={cursors[ids[2]]}"' in page, "a link back to newer events"
    assert "ws-connect=" not in page

    last = (await client.get("/", params={"before": ids[1]}, headers=HTML)).text
    assert _keys(last) == ["history.k00"]
    assert "/?before=" not in last


def _keys(page: str) -> list[str]:
    return re.findall(r'<td class="rk"[^>]*><bdi class="v">([^<]*)</bdi></td>', page)


async def test_event_page_shows_every_amqp_header_type(
    client: Client, put: Callable[..., Any]
) -> None:
    when = dt.datetime(2025, 10, 22, 14, 30, 5, tzinfo=dt.UTC)
    headers = {
        "h-string": "acme-tenant",
        "h-int": 424242,
        "h-bool": True,
        "h-float": 2.5,
        "h-decimal": Decimal("9.99"),
        "h-timestamp": when,
        "h-table": {"inner-key": "inner-value"},
        "h-array": ["first-item", 77],
        "h-bytearray": bytearray(b"ab\x00"),
        "h-bytes": b"\xff\xferaw",
        "h-void": None,
    }
    [event_id] = await put(delivery("typed.headers", b'{"a": 1}', headers=headers))
    response = await client.get(f"/events/{event_id}", headers=HTML)
    assert response.status_code == 200
    page = response.text
    for name in headers:
        assert f'<th scope="row"><bdi class="v">{name}</bdi></th>' in page
    for type_name in (
        "string",
        "integer",
        "boolean",
        "float",
        "decimal",
        "timestamp",
        "table",
        "array",
        "byte array",
        "bytes (not UTF-8)",
        "void",
    ):
        assert f'<td class="type">{type_name}</td>' in page, type_name
    for shown in (
        "acme-tenant",
        "424242",
        "9.99",
        "2.5",
        when.isoformat(),
        "inner-value",
        "first-item",
    ):
        assert shown in page, shown
    assert "3 bytes" in page  # the byte array's note


async def test_event_page_pretty_prints_a_json_body(
    client: Client, put: Callable[..., Any]
) -> None:
    [event_id] = await put(delivery("pretty", b'{"orderId":"ord_1","items":[1,2]}'))
    page = (await client.get(f"/events/{event_id}", headers=HTML)).text
    body = re.search(r'<pre class="body json">(.*?)</pre>', page, re.S)
    assert body is not None
    text = html_lib.unescape(re.sub(r"<[^>]+>", "", body.group(1)))
    assert text == '{\n  "orderId": "ord_1",\n  "items": [\n    1,\n    2\n  ]\n}'


async def test_event_page_shows_a_hex_view_for_binary_bodies(
    client: Client, put: Callable[..., Any]
) -> None:
    [event_id] = await put(delivery("binary", b"\x00\x01\xffABC"))
    page = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert '<table class="hex">' in page
    assert '<td class="off">00000000</td>' in page
    assert '<td class="hx">00 01 ff 41 42 43</td>' in page
    assert '<td class="asc">···ABC</td>' in page


async def test_event_page_shows_a_hex_view_for_invalid_utf8(
    client: Client, put: Callable[..., Any]
) -> None:
    [event_id] = await put(delivery("bad.utf8", b'{"id": "\xff"}'))
    response = await client.get(f"/events/{event_id}", headers=HTML)
    assert response.status_code == 200
    assert '<td class="hx">7b 22 69 64 22 3a 20 22 ff 22 7d</td>' in response.text


async def test_event_page_for_unknown_id_is_a_404_page(client: Client) -> None:
    response = await client.get("/events/987654", headers=HTML)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Traceback" not in response.text


async def test_raw_download_returns_the_exact_bytes(
    client: Client, put: Callable[..., Any]
) -> None:
    body = bytes(range(256)) + b"<script>alert(1)</script>"
    [event_id] = await put(delivery("raw", body))
    response = await client.get(f"/events/{event_id}/raw")
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_raw_download_of_unknown_id_is_404(client: Client) -> None:
    assert (await client.get("/events/987654/raw")).status_code == 404


@pytest.mark.parametrize("payload", [SCRIPT, IMG, TEMPLATE, HTMX])
async def test_hostile_strings_are_shown_escaped_everywhere(
    client: Client, put: Callable[..., Any], payload: str
) -> None:
    body = ('{"id": %s, "type": %s, "note": %s}' % ((_json(payload),) * 3)).encode()
    [event_id] = await put(
        delivery(
            payload,
            body,
            exchange=payload,
            headers={payload: payload, "nested": {"k": [payload]}},
            properties={"message_id": payload, "content_type": payload},
        )
    )
    timeline = (await client.get("/", headers=HTML)).text
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    for page in (timeline, detail):
        assert_inert(page)
        assert str(escape(payload)) in page
        assert payload in visible_text(page)  # shown as text, not markup
    assert visible_text(detail).count(payload) >= 4  # exchange, routing key, header, ids...


def _json(value: str) -> str:
    return json.dumps(value)


async def test_template_syntax_is_shown_literally(client: Client, put: Callable[..., Any]) -> None:
    [event_id] = await put(
        delivery("tpl.{{7*7}}", b'{"id": "{{7*7}} ${7*7}"}', headers={"h": "{{7*7}}"})
    )
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert detail.count("{{7*7}}") >= 3
    assert "${7*7}" in detail
    assert "tpl.49" not in detail
    timeline = (await client.get("/", headers=HTML)).text
    assert "tpl.{{7*7}}" in timeline


async def test_message_data_is_inside_hx_disable(client: Client, put: Callable[..., Any]) -> None:
    [event_id] = await put(delivery("x", HTMX.encode()))
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert '<article class="event" hx-disable>' in detail
    timeline = (await client.get("/", headers=HTML)).text
    assert re.search(r'<tbody id="rows" hx-disable', timeline)


@pytest.mark.parametrize("where", ["timeline", "detail"])
async def test_invisible_characters_in_routing_key_are_made_visible(
    client: Client, put: Callable[..., Any], where: str
) -> None:
    """Nowhere on the page, tooltips included, may a bidi override or zero-width space act."""
    [event_id] = await put(
        delivery("invoice.\u202efdp.exe\u200b🐇", headers={"x-\u202ename": "v\u200b"})
    )
    path = "/" if where == "timeline" else f"/events/{event_id}"
    page = (await client.get(path, headers=HTML)).text
    assert ">U+202E</span>" in page
    assert ">U+200B</span>" in page
    assert "🐇" in page
    assert "\u202e" not in page
    assert "\u200b" not in page


async def test_nul_in_routing_key_is_shown_and_flagged(
    client: Client, put: Callable[..., Any]
) -> None:
    [event_id] = await put(delivery("order\x00created", b"{}"))
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert "order␀created" in detail
    assert "\x00" not in detail
    assert 'id="originals"' in detail, "the original is listed as kept"
    assert "U+0000" in detail.split('id="originals"')[1], "its NUL shown as a visible badge"


async def test_truncated_body_is_flagged_with_its_real_size(
    client: Client, put: Callable[..., Any]
) -> None:
    [event_id] = await put(delivery("big.body", b"x" * 5000), max_body=1000)
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert "stored truncated" in detail
    assert "5,000 bytes" in detail
    timeline = (await client.get("/", headers=HTML)).text
    assert '<span class="badge warn">truncated</span>' in timeline
    raw = await client.get(f"/events/{event_id}/raw")
    assert raw.content == b"x" * 1000


async def test_large_text_body_is_previewed_not_rendered_whole(
    client: Client, put: Callable[..., Any]
) -> None:
    body = b"line of text\n" * 40_000  # ~508 KiB
    [event_id] = await put(delivery("large.text", body))
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert "Showing the first 256.0 KiB" in detail
    assert len(detail) < 400 * 1024


async def test_duplicate_publish_is_flagged(client: Client, put: Callable[..., Any]) -> None:
    first, second = await put(
        delivery("dup.key", b'{"id": "same"}'), delivery("dup.key", b'{"id": "same"}')
    )
    timeline = (await client.get("/", headers=HTML)).text
    assert "dup×2" in timeline
    detail = (await client.get(f"/events/{second}", headers=HTML)).text
    assert "duplicate publish · observation 2" in detail
    assert f'href="/events/{first}"' in detail


async def test_message_id_reused_with_another_body_is_flagged(
    client: Client, put: Callable[..., Any]
) -> None:
    first, second = await put(
        delivery("a", b'{"v": 1}', properties={"message_id": "m-1"}),
        delivery("b", b'{"v": 2}', properties={"message_id": "m-1"}),
    )
    detail = (await client.get(f"/events/{second}", headers=HTML)).text
    assert "Message id conflict" in detail
    assert f'href="/events/{first}"' in detail


async def test_missing_fields_are_shown_as_a_dash(client: Client, put: Callable[..., Any]) -> None:
    [event_id] = await put(delivery("bare", b"plain text body"))
    detail = (await client.get(f"/events/{event_id}", headers=HTML)).text
    assert "No AMQP properties set." in detail
    assert "No headers." in detail
    for label in ("Event id", "Event type", "Correlation id", "Aggregate", "Occurred"):
        cell = re.search(rf"<dt>{label}</dt><dd>(.*?)</dd>", detail)
        assert cell is not None, label
        assert re.sub(r"<[^>]+>", "", cell.group(1)).strip() == "—", label


async def test_the_status_bar_says_when_search_lags(
    client: Client, app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Search is kept behind ingest; when it lags, a text search may miss the newest events."""
    indexer = app.state.web.runtime.indexer

    async def hold_still() -> int:  # the running indexer must not update `behind` meanwhile
        return 0

    monkeypatch.setattr(indexer, "index_some", hold_still)
    indexer.behind = 3.0  # a few seconds is normal: nothing shown
    assert 'id="search-behind"' not in (await client.get("/", headers=HTML)).text
    indexer.behind = 95.4
    page = (await client.get("/", headers=HTML)).text
    assert 'id="search-behind"' in page and "search 95 s behind" in page
    assert (await client.get("/api/status")).json()["search_behind_seconds"] == 95.4
