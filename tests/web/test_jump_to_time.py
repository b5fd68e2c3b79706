"""Jump to a time (`at=`): the page of events received at or before it, newest first, with the
active filter, paged on from there — on SQLite and Postgres, in the API and on the page."""

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
from tests.web.test_security import HTML

Client = AsyncTestClient[Litestar]
T0 = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def web_db(database_url: str) -> str:
    return database_url


def received(n: int, when: dt.datetime, event_type: str) -> Delivery:
    body = json.dumps({"type": event_type, "n": n}).encode()
    return Delivery("events", f"order.e{n}", False, {}, None, body, when)


@pytest.fixture
async def six(put: Callable[..., Any]) -> list[int]:
    """Events e0..e5 received a minute apart; odd ones are OrderPaid, even OrderCreated."""
    return list(
        await put(
            *(
                received(n, T0 + n * MINUTE, "OrderPaid" if n % 2 else "OrderCreated")
                for n in range(6)
            )
        )
    )


async def keys(client: Client, **params: Any) -> tuple[list[str], dict[str, Any]]:
    response = await client.get("/api/events", params=params)
    assert response.status_code == 200, response.text
    data = response.json()
    return [item["routing_key"].removeprefix("order.") for item in data["items"]], data


def iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


async def test_at_opens_history_at_or_before_that_time(client: Client, six: list[int]) -> None:
    shown, _ = await keys(client, at=iso(T0 + 3 * MINUTE))
    assert shown == ["e3", "e2", "e1", "e0"], "the event received at that very time is included"
    shown, _ = await keys(client, at=iso(T0 + 3 * MINUTE + dt.timedelta(seconds=59)))
    assert shown == ["e3", "e2", "e1", "e0"]
    shown, _ = await keys(client, at="2025-10-22T14:33:00")  # no offset: UTC
    assert shown[0] == "e3"
    shown, _ = await keys(client, at="2025-10-22T16:33:00+02:00")
    assert shown[0] == "e3"


async def test_a_jump_pages_on_older_and_newer(client: Client, six: list[int]) -> None:
    shown, page = await keys(client, at=iso(T0 + 3 * MINUTE), limit=2)
    assert shown == ["e3", "e2"]
    older, _ = await keys(client, before=page["next_before"], limit=2)
    assert older == ["e1", "e0"]
    newer, _ = await keys(client, after=page["next_after"], limit=2)
    assert newer == ["e5", "e4"]


async def test_a_jump_combines_with_the_filter(client: Client, six: list[int]) -> None:
    shown, _ = await keys(client, at=iso(T0 + 4 * MINUTE), type="OrderPaid")
    assert shown == ["e3", "e1"]
    shown, _ = await keys(client, at=iso(T0 + 4 * MINUTE), routing_key="order.e4")
    assert shown == ["e4"]
    shown, _ = await keys(client, at=iso(T0 + 3 * MINUTE), routing_key="order.e5")
    assert shown == []


async def test_before_everything_is_empty_and_after_everything_is_the_newest(
    client: Client, six: list[int]
) -> None:
    shown, page = await keys(client, at=iso(T0 - MINUTE))
    assert shown == [] and page["next_before"] is None
    shown, _ = await keys(client, at=iso(T0 + 60 * MINUTE))
    assert shown[0] == "e5"
    shown, _ = await keys(client, at="1h")  # an age: an hour before now, long after 2025
    assert shown[0] == "e5"


async def test_events_received_at_the_same_instant_are_all_included(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(*(received(n, T0, "Same") for n in range(3)), received(3, T0 + MINUTE, "Later"))
    shown, _ = await keys(client, at=iso(T0))
    assert shown == ["e2", "e1", "e0"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"at": "yesterday"}, "at: 'yesterday' is not a time"),
        ({"at": "2h", "before": "1-1"}, "give one of `before`, `after` and `at`"),
        ({"at": "2h", "after": "1-1"}, "give one of `before`, `after` and `at`"),
    ],
)
async def test_a_bad_jump_is_a_400_saying_why(
    client: Client, params: dict[str, str], detail: str
) -> None:
    response = await client.get("/api/events", params=params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)


async def test_the_page_shows_the_jump_and_keeps_the_filter(client: Client, six: list[int]) -> None:
    when = T0 + 3 * MINUTE
    response = await client.get("/", params={"at": iso(when), "type": "OrderPaid"}, headers=HTML)
    assert response.status_code == 200
    page = response.text
    assert 'History at or before <time datetime="2025-10-22T14:33:00.000Z"' in page
    assert "ws-connect" not in page, "a jump is history, not live"
    rows = re.findall(r'<td class="rk"[^>]*><bdi class="v">order\.(e\d)', page)
    assert rows == ["e3", "e1"]
    assert 'name="at" id="jump-at" step="1" value="2025-10-22T14:33:00"' in page
    assert "Back to live" in page
    pushed = await client.get(
        "/",
        params={"type": "OrderPaid", "at": "2025-10-22T14:33:00"},
        headers={**HTML, "hx-request": "true"},
    )
    assert pushed.headers["hx-push-url"] == "/?type=OrderPaid&at=2025-10-22T14%3A33%3A00Z"


async def test_an_empty_jump_box_is_the_live_timeline(client: Client, six: list[int]) -> None:
    page = (await client.get("/", params={"at": "", "type": "OrderPaid"}, headers=HTML)).text
    assert "Live timeline" in page and "ws-connect" in page


async def test_the_page_says_when_nothing_is_that_old(client: Client, six: list[int]) -> None:
    page = (await client.get("/", params={"at": iso(T0 - MINUTE)}, headers=HTML)).text
    assert 'id="nothing-at"' in page
    assert '<a href="/?after=0-0">The oldest events →</a>' in page
