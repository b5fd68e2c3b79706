"""The test API as a client sees it: a correlation's events oldest first, `wait`/`min_count`/
`after` on `/api/events` too, the cursor to take before acting, and a correlation exported as
a fixture that gives back every body byte for byte (masked for viewers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.backend.export_read import body_bytes, message
from eventscope.testing.fixtures import parse_fixture
from eventscope.web.routes import correlation_events
from tests.integration.test_hostile_ingest import ALL_HEADER_TYPES, CORPUS
from tests.web.conftest import delivery
from tests.web.test_security import MASK, VIEWER, bearer

Client = AsyncTestClient[Litestar]


def order(routing_key: str, correlation: str, **extra: Any) -> Any:
    body = {"type": routing_key, "metadata": {"correlationId": correlation}, **extra}
    return delivery(routing_key, body)


def keys(answer: Any) -> list[str]:
    return [item["routing_key"] for item in answer.json()["items"]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"viewer_tokens": (VIEWER,)}


async def test_a_correlations_events_are_listed_oldest_first_and_matched_exactly(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(order("order.created", "req-1"), order("order.created", "req-10"))
    await put(order("payment.succeeded", "req-1"), order("order.created", "REQ-1"))
    await put(order("order.confirmed", "req-1"))
    answer = await client.get("/api/correlations/req-1/events")
    assert answer.status_code == 200, answer.text
    assert keys(answer) == ["order.created", "payment.succeeded", "order.confirmed"]
    data = answer.json()
    assert data["count"] == 3 and data["timed_out"] is False
    assert data["next_after"] == data["items"][-1]["cursor"]
    assert {item["correlation_id"] for item in data["items"]} == {"req-1"}


async def test_after_and_limit_page_through_a_correlation_without_overlap(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(*(order(f"step.{n}", "req-2") for n in range(7)))
    seen: list[str] = []
    after: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 3, **({"after": after} if after else {})}
        page = (await client.get("/api/correlations/req-2/events", params=params)).json()
        seen += [item["routing_key"] for item in page["items"]]
        after = page["next_after"]
    assert seen == [f"step.{n}" for n in range(7)]


async def test_other_filters_narrow_a_correlation(client: Client, put: Callable[..., Any]) -> None:
    await put(order("order.created", "req-3"), order("payment.failed", "req-3"))
    answer = await client.get("/api/correlations/req-3/events", params={"routing_key": "payment.#"})
    assert keys(answer) == ["payment.failed"]
    twice = await client.get("/api/correlations/req-3/events", params={"correlation_id": "x"})
    assert twice.status_code == 400 and "correlation_id" in twice.json()["detail"]


async def test_wait_on_the_events_list_counts_from_the_first_event_without_after(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(order("order.created", "req-4"), order("order.created", "req-5"))
    answer = await client.get(
        "/api/events", params={"routing_key": "order.created", "wait": 5, "min_count": 2}
    )
    data = answer.json()
    assert data["timed_out"] is False
    assert [item["correlation_id"] for item in data["items"]] == ["req-4", "req-5"], "oldest first"
    short = await client.get(
        "/api/events", params={"routing_key": "order.created", "wait": 0.2, "min_count": 3}
    )
    assert short.json()["timed_out"] is True and short.json()["count"] == 2


async def test_the_cursor_taken_before_acting_leaves_out_what_came_before(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(order("order.created", "before"))
    cursor = (await client.get("/api/cursor")).json()["cursor"]
    await put(order("order.created", "after"))
    answer = await client.get("/api/events", params={"after": cursor, "wait": 1})
    assert [item["correlation_id"] for item in answer.json()["items"]] == ["after"]
    empty = await client.get(
        "/api/events", params={"after": answer.json()["next_after"], "wait": 0}
    )
    assert empty.json() == {**empty.json(), "items": [], "count": 0, "timed_out": True}


async def test_an_empty_store_has_a_cursor_from_which_everything_is_new(client: Client) -> None:
    assert (await client.get("/api/cursor")).json() == {"cursor": "0-0"}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/correlations/req/events", {"wait": -1}),
        ("/api/correlations/req/events", {"wait": 3601}),
        ("/api/correlations/req/events", {"wait": "soon"}),
        ("/api/correlations/req/events", {"min_count": 0}),
        ("/api/correlations/req/events", {"min_count": 20, "limit": 10}),
        ("/api/correlations/req/events", {"before": "1-1"}),
        ("/api/events", {"wait": 1, "before": "1-1"}),
        ("/api/events", {"wait": 1, "min_count": 101}),
        ("/api/events", {"wait": 1, "after": "nope"}),
    ],
)
async def test_wait_parameters_that_cannot_work_are_a_400(
    client: Client, path: str, params: dict[str, Any]
) -> None:
    answer = await client.get(path, params=params)
    assert answer.status_code == 400, answer.text


async def test_the_test_api_needs_credentials(anon: Client) -> None:
    for path in ("/api/correlations/x/events", "/api/correlations/x/fixture", "/api/cursor"):
        assert (await anon.get(path)).status_code == 401, path


async def test_an_id_with_a_slash_is_asked_by_query(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(order("order.created", "tenant/req-6"))
    answer = await client.get("/api/events", params={"correlation_id": "tenant/req-6", "wait": 1})
    assert keys(answer) == ["order.created"]
    fixture = await client.get("/api/fixture", params={"correlation_id": "tenant/req-6"})
    assert [e["routing_key"] for e in fixture.json()["events"]] == ["order.created"]


# -- fixtures ------------------------------------------------------------------------------------


HEADER_TYPES = {k: v for k, v in ALL_HEADER_TYPES.items() if k != "x-correlation-id"}


def hostile_corpus() -> list[tuple[str, bytes, dict[str, Any]]]:
    """The hostile corpus, with the one message that names its own correlation id (a seed
    event with an `x-correlation-id` header) made anonymous, so all can share one."""
    return [
        (key, b'{"kind": "every header type"}', {"headers": HEADER_TYPES})
        if key == "all.header.types"
        else (key, body, props)
        for key, body, props in CORPUS
    ]


def on_correlation(correlation: str) -> list[Any]:
    """The corpus as deliveries, every one with this AMQP correlation_id."""
    out = []
    for routing_key, body, props in hostile_corpus():
        props = dict(props)
        headers = props.pop("headers", None)
        props["correlation_id"] = correlation
        out.append(delivery(routing_key, body, headers=headers, properties=props))
    return out


HOSTILE_ID = '<script>alert(1)</script>"\u202e{{7*7}}'


async def test_a_fixture_gives_back_every_body_and_header_byte_for_byte(
    client: Client, put: Callable[..., Any]
) -> None:
    await put(*on_correlation(HOSTILE_ID))
    answer = await client.get("/api/fixture", params={"correlation_id": HOSTILE_ID})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["content-disposition"] == (
        'attachment; filename="correlation-_script_alert_1___script_____7_7__.json"'
    )
    assert answer.content.isascii(), "ASCII escapes: a lone surrogate cannot break the file"
    document = json.loads(answer.content)
    assert document["correlation_id"] == HOSTILE_ID
    assert document["masked"] is False and document["truncated"] is False
    records = document["events"]
    assert [message(r).routing_key for r in records] == [key for key, _, _ in hostile_corpus()]
    assert [body_bytes(r) for r in records] == [body for _, body, _ in hostile_corpus()]
    typed = next(r for r in records if r["routing_key"] == "all.header.types")
    assert message(typed).headers.keys() == HEADER_TYPES.keys()
    fixture = parse_fixture(answer.content)
    assert len(fixture.events) == len(CORPUS)


async def test_a_viewers_fixture_is_masked_and_holds_no_raw_bytes(
    anon: Client, put: Callable[..., Any]
) -> None:
    body = {
        "metadata": {"correlationId": "req-7"},
        "password": "hunter2",
        "card": "4111111111111111",
    }
    await put(delivery("user.created", body, headers={"x-api-token": "tok-secret"}))
    answer = await anon.get("/api/correlations/req-7/fixture", headers=bearer(VIEWER))
    assert answer.status_code == 200, answer.text
    text = answer.content.decode()
    for secret in ("hunter2", "4111111111111111", "tok-secret"):
        assert secret not in text
    (record,) = answer.json()["events"]
    assert answer.json()["masked"] is True and record["masked"] is True
    assert record["raw_properties"] is None and "body_base64" not in record
    assert record["body"]["password"] == MASK


async def test_a_viewer_cannot_wait_on_a_value_viewers_see_masked(anon: Client) -> None:
    answer = await anon.get(
        "/api/correlations/4111111111111111/events", params={"wait": 1}, headers=bearer(VIEWER)
    )
    assert answer.status_code == 400


async def test_a_large_correlation_is_cut_at_the_fixture_bound(
    client: Client, put: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(correlation_events, "MAX_FIXTURE_EVENTS", 3)
    await put(*(order(f"step.{n}", "req-8") for n in range(5)))
    document = (await client.get("/api/correlations/req-8/fixture")).json()
    assert document["truncated"] is True
    assert [r["routing_key"] for r in document["events"]] == ["step.0", "step.1", "step.2"]


async def test_an_unknown_correlation_is_an_empty_fixture(client: Client) -> None:
    document = (await client.get("/api/correlations/nobody/fixture")).json()
    assert document["events"] == [] and document["truncated"] is False
