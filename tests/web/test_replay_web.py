"""Replaying from the pages and the API, against the real broker: the operator replays a stored
dead letter back to the queue it died in and sees the ledger entry; the dead letter leaves the
unresolved view; viewers and read-only mode are refused and shown no buttons; a target outside
the allowlist is refused naming the entry to add; discard and restore; the audit log says who."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pamqp.commands import Basic

from eventscope.backend.envelope import Delivery
from eventscope.backend.replay_publisher import REPLAY_ID_HEADER
from tests.conftest import AMQP_URL
from tests.web.conftest import NOW, ORIGIN, TOKEN, csrf_token, delivery
from tests.web.test_security import HTML, VIEWER, bearer

Client = AsyncTestClient[Litestar]
QUEUE = f"test.replay-web.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    values: dict[str, Any] = {
        "viewer_tokens": (VIEWER,),
        "replay_targets": ("exchange:events", f"queue:{QUEUE}"),
    }
    values.update(getattr(request, "param", {}))
    return values


@pytest.fixture
async def work_queue() -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(QUEUE, auto_delete=False)
    try:
        yield queue
    finally:
        await channel.queue_delete(QUEUE)
        await connection.close()


def dead_letter(queue: str, body: dict[str, Any], **extra_headers: Any) -> Delivery:
    """A native dead letter as the recorder stores it, with its wire property bytes."""
    headers = {
        "x-death": [
            {
                "queue": queue,
                "reason": "rejected",
                "count": 1,
                "time": dt.datetime(2025, 10, 22, 14, 0, tzinfo=dt.UTC),
                "exchange": "events",
                "routing-keys": ["order.paid"],
            }
        ],
        "x-first-death-queue": queue,
        "x-first-death-reason": "rejected",
        "x-first-death-exchange": "events",
        **extra_headers,
    }
    raw = Basic.Properties(
        content_type="application/json", message_id=body.get("id"), headers=headers
    ).marshal()
    return Delivery(
        "events.dlx",
        "order.paid",
        False,
        {"content_type": "application/json", "message_id": body.get("id")},
        headers,
        json.dumps(body).encode(),
        NOW,
        raw_properties=raw,
    )


async def take(queue: aio_pika.abc.AbstractQueue) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in the queue now (after a moment for in-flight publishes)."""
    await asyncio.sleep(0.2)
    taken = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        taken.append(message)
    return taken


async def test_the_operator_replays_a_dead_letter_through_the_api_once(
    client: Client, put: Callable[..., Any], work_queue: aio_pika.abc.AbstractQueue
) -> None:
    (dead,) = await put(dead_letter(QUEUE, {"id": "evt_1", "type": "order.paid"}))
    preview = (await client.get(f"/api/events/{dead}/replay")).json()
    assert preview["ready"] and preview["target"]["kind"] == "queue"
    assert preview["target"]["name"] == QUEUE

    response = await client.post(
        f"/api/dlq/{dead}/replay", json={"reason": "bug 42 fixed"}, headers=bearer(TOKEN)
    )
    assert response.status_code == 201, response.text
    entry = response.json()
    assert entry["state"] == "delivered" and entry["reason"] == "bug 42 fixed"
    (message,) = await take(work_queue)
    assert json.loads(message.body) == {"id": "evt_1", "type": "order.paid"}
    assert (message.headers or {})[REPLAY_ID_HEADER] == entry["replay_id"]

    detail = (await client.get(f"/api/dlq/{dead}")).json()
    assert detail["state"]["state"] == "replayed"
    assert [r["replay_id"] for r in detail["replays"]] == [entry["replay_id"]]
    assert (await client.get("/api/dlq")).json()["dead_letters"] == 0  # not unresolved now
    handled = (await client.get("/api/dlq", params={"state": "handled"})).json()
    assert handled["dead_letters"] == 1
    ledger = (await client.get("/api/replays")).json()["items"]
    assert [e["replay_id"] for e in ledger] == [entry["replay_id"]]
    audit = (await client.get("/api/audit")).json()
    actions = [(a["action"], a["result"]) for a in audit["items"] if a["action"] == "replay"]
    assert actions == [("replay", "delivered"), ("replay", "requested")]


async def test_the_page_form_replays_and_shows_the_outcome(
    client: Client, put: Callable[..., Any], work_queue: aio_pika.abc.AbstractQueue
) -> None:
    (dead,) = await put(dead_letter(QUEUE, {"id": "evt_2"}))
    event_page = await client.get(f"/events/{dead}", headers=HTML)
    assert f'href="/events/{dead}/replay"' in event_page.text
    page = await client.get(f"/events/{dead}/replay", headers=HTML)
    assert page.status_code == 200
    assert 'id="target-allowed"' in page.text and "disabled" not in _button(page.text)
    token = await csrf_token(client)
    result = await client.post(
        f"/events/{dead}/replay",
        data={"choice": "default", "reason": "retry after deploy"},
        headers={"origin": ORIGIN, "x-csrf-token": token, "hx-request": "true"},
    )
    assert result.status_code == 200
    assert 'id="replay-outcome"' in result.text and ">delivered<" in result.text
    assert len(await take(work_queue)) == 1
    again = await client.get(f"/events/{dead}", headers=HTML)
    assert 'id="dl-state"' in again.text and ">replayed<" in again.text


async def test_a_target_outside_the_allowlist_is_refused_and_names_the_entry(
    client: Client, put: Callable[..., Any]
) -> None:
    (dead,) = await put(dead_letter("payments", {"id": "evt_3"}))  # died in a queue not allowed
    page = await client.get(f"/events/{dead}/replay", headers=HTML)
    assert 'id="target-refused"' in page.text and "queue:payments" in page.text
    assert "disabled" in _button(page.text)
    response = await client.post(f"/api/dlq/{dead}/replay", headers=bearer(TOKEN))
    assert response.status_code == 409
    assert "queue:payments" in response.json()["detail"]
    forged = {"target": {"kind": "exchange", "name": "payments.internal", "routing_key": "x"}}
    response = await client.post(f"/api/dlq/{dead}/replay", json=forged, headers=bearer(TOKEN))
    assert response.status_code == 409 and "exchange:payments.internal" in response.text
    assert (await client.get("/api/replays")).json()["items"] == []


@pytest.mark.parametrize("path", ["replay", "discard", "restore"])
async def test_viewers_are_refused_and_shown_no_action(
    client: Client, put: Callable[..., Any], path: str
) -> None:
    (dead,) = await put(dead_letter(QUEUE, {"id": "evt_4"}))
    response = await client.post(f"/api/dlq/{dead}/{path}", headers=bearer(VIEWER))
    assert response.status_code == 403
    viewer = {**bearer(VIEWER), **HTML}
    assert (await client.get(f"/events/{dead}/replay", headers=viewer)).status_code == 403
    page = await client.get(f"/events/{dead}", headers=viewer)
    assert f"/events/{dead}/replay" not in page.text and "discard-button" not in page.text
    assert (await client.get("/api/replays")).json()["items"] == []


@pytest.mark.parametrize("settings_overrides", [{"read_only": True}], indirect=True)
async def test_read_only_refuses_the_operator_and_hides_the_buttons(
    client: Client, put: Callable[..., Any]
) -> None:
    (dead,) = await put(dead_letter(QUEUE, {"id": "evt_5"}))
    response = await client.post(f"/api/dlq/{dead}/replay", headers=bearer(TOKEN))
    assert response.status_code == 403
    page = await client.get(f"/events/{dead}", headers=HTML)
    assert 'id="replay-link"' not in page.text and "discard-button" not in page.text
    dlq = await client.get("/dlq", headers=HTML)
    assert "Replay…" not in dlq.text


async def test_discard_hides_a_dead_letter_until_restored(
    client: Client, put: Callable[..., Any]
) -> None:
    (dead,) = await put(dead_letter(QUEUE, {"id": "evt_6"}))
    assert (await client.get("/api/dlq")).json()["dead_letters"] == 1
    response = await client.post(
        f"/api/dlq/{dead}/discard", json={"reason": "test data"}, headers=bearer(TOKEN)
    )
    assert response.status_code == 200
    assert (await client.get("/api/dlq")).json()["dead_letters"] == 0
    assert (await client.get(f"/api/dlq/{dead}")).json()["state"]["state"] == "discarded"
    assert (await client.post(f"/api/dlq/{dead}/discard", headers=bearer(TOKEN))).status_code == 409
    replay = await client.post(f"/api/dlq/{dead}/replay", headers=bearer(TOKEN))
    assert replay.status_code == 409 and "restore it first" in replay.text
    token = await csrf_token(client)
    restored = await client.post(
        f"/dlq/{dead}/restore", headers={"origin": ORIGIN, "x-csrf-token": token}
    )
    assert restored.status_code == 200
    audit = (await client.get("/api/audit")).json()["items"]
    assert {"discard", "restore"} <= {a["action"] for a in audit}


async def test_bad_requests_get_clear_errors(client: Client, put: Callable[..., Any]) -> None:
    (dead,) = await put(dead_letter(QUEUE, {"id": "evt_7"}))
    for body, status in (
        (b"not json", 400),
        (b"[1]", 400),
        (b'{"target": {"kind": "topic", "name": "x"}}', 400),
        (b'{"target": {"kind": "queue", "name": ""}}', 400),
        (b'{"target": {"kind": "queue", "name": "a\\u0000b"}}', 400),
        (b'{"headers": {"x-eventscope-replay-id": "mine"}}', 409),
        (b'{"headers": {"nested": {"a": 1}}}', 422),
    ):
        response = await client.post(
            f"/api/dlq/{dead}/replay",
            content=body,
            headers={**bearer(TOKEN), "content-type": "application/json"},
        )
        assert response.status_code == status, (body, response.text)
    missing = await client.post("/api/dlq/999999/replay", headers=bearer(TOKEN))
    assert missing.status_code == 404
    assert (await client.get("/api/replays")).json()["items"] == []


def _button(page: str) -> str:
    found = re.search(r'<button type="submit" class="primary" id="replay-button"[^>]*>', page)
    assert found, "no Replay button"
    return found.group(0)


# -- bulk ------------------------------------------------------------------------------------


async def _ended(client: Client, batch_id: str) -> dict[str, Any]:
    for _ in range(200):
        batch = (await client.get(f"/api/replays/batches/{batch_id}")).json()
        if batch["state"] in ("finished", "cancelled", "failed"):
            return dict(batch)
        await asyncio.sleep(0.05)
    raise AssertionError(f"bulk replay {batch_id} never ended")


async def test_a_group_is_replayed_in_bulk_from_the_api(
    client: Client, put: Callable[..., Any], work_queue: aio_pika.abc.AbstractQueue
) -> None:
    failing = [dead_letter(QUEUE, {"id": f"evt_{i}"}, **{"x-error": f"order {i} not found"})
               for i in range(5)]  # fmt: skip
    other = [dead_letter(QUEUE, {"id": "evt_x"}, **{"x-error": "disk full"})]
    await put(*failing, *other)
    groups = (await client.get("/api/dlq")).json()["groups"]
    fingerprint = next(g["fingerprint"] for g in groups if g["error"] == "order <n> not found")

    preview = (await client.get("/api/replays/preview", params={"group": fingerprint})).json()
    assert preview["count"] == 5 and preview["targets"][0]["allowed"] is True
    refused = await client.post(
        "/api/dlq/replay", json={"group": fingerprint}, headers=bearer(TOKEN)
    )
    assert refused.status_code == 422 and "reason" in refused.text
    viewer = await client.post(
        "/api/dlq/replay", json={"group": fingerprint, "reason": "x"}, headers=bearer(VIEWER)
    )
    assert viewer.status_code == 403

    started = await client.post(
        "/api/dlq/replay", json={"group": fingerprint, "reason": "fixed"}, headers=bearer(TOKEN)
    )
    assert started.status_code == 202, started.text
    batch = await _ended(client, started.json()["batch_id"])
    assert (batch["total"], batch["delivered"], batch["failed"]) == (5, 5, 0)
    bodies = sorted(json.loads(m.body)["id"] for m in await take(work_queue))
    assert bodies == [f"evt_{i}" for i in range(5)]  # the group, each once; not "disk full"
    remaining = (await client.get("/api/dlq")).json()
    assert remaining["dead_letters"] == 1
    cancel = await client.post(
        f"/api/replays/batches/{batch['batch_id']}/cancel", headers=bearer(TOKEN)
    )
    assert cancel.status_code == 409  # it has ended


async def test_the_bulk_pages_preview_start_and_show_progress(
    client: Client, put: Callable[..., Any], work_queue: aio_pika.abc.AbstractQueue
) -> None:
    ids = await put(*(dead_letter(QUEUE, {"id": f"evt_{i}"}) for i in range(3)))
    page = await client.get("/replays/new", params=[("id", str(i)) for i in ids[:2]], headers=HTML)
    assert page.status_code == 200 and "Replay 2 dead letters" in page.text
    assert f"queue {QUEUE}" in page.text
    token = await csrf_token(client)
    response = await client.post(
        "/replays/batches",
        data={"id": [str(i) for i in ids[:2]], "reason": "retry"},
        headers={"origin": ORIGIN, "x-csrf-token": token, "hx-request": "true"},
    )
    location = response.headers.get("hx-redirect", "")
    assert response.status_code == 200 and location.startswith("/replays/batches/"), response.text
    batch = await _ended(client, location.rsplit("/", 1)[1])
    assert batch["delivered"] == 2
    assert len(await take(work_queue)) == 2
    shown = await client.get(location, headers=HTML)
    assert 'id="batch-state"' in shown.text and ">finished<" in shown.text
    ledger = await client.get("/replays", headers=HTML)
    assert 'id="batches"' in ledger.text and "2 selected" in ledger.text
    no_reason = await client.post(
        "/replays/batches",
        data={"id": str(ids[2])},
        headers={"origin": ORIGIN, "x-csrf-token": token, "hx-request": "true"},
    )
    assert 'id="replay-refused"' in no_reason.text and "reason" in no_reason.text
    viewer = {**bearer(VIEWER), **HTML}
    assert (await client.get("/replays/new", headers=viewer)).status_code == 403


async def test_the_preview_shows_what_the_replay_would_do_to_its_aggregate(
    client: Client, put: Callable[..., Any]
) -> None:
    order = {"aggregateType": "Order", "aggregateId": "ord_9"}
    created = {"id": "evt_c", "type": "OrderCreated", "version": 1, **order,
               "data": {"status": "created"}}  # fmt: skip
    paid = {"id": "evt_p", "type": "OrderPaid", "version": 2, **order,
            "data": {"status": "paid", "paidBy": "card"}}  # fmt: skip

    await put(delivery("order.created", created))
    (dead,) = await put(dead_letter(QUEUE, paid))
    page = await client.get(f"/events/{dead}/replay", headers=HTML)
    assert 'id="what-if"' in page.text and 'id="what-if-changes"' in page.text
    assert "paidBy" in page.text and "card" in page.text
    preview = (await client.get(f"/api/events/{dead}/replay")).json()
    changes = {c["path_text"]: c for c in preview["aggregate_what_if"]["changes"]}
    assert any("paidBy" in path for path in changes), changes
    viewer = await client.get(f"/api/events/{dead}/replay", headers=bearer(VIEWER))
    assert viewer.status_code == 403  # previews (states are not masked) are for operators


async def test_a_filtered_timeline_offers_to_replay_what_it_matches(
    client: Client, put: Callable[..., Any], work_queue: aio_pika.abc.AbstractQueue
) -> None:
    await put(delivery("order.created", {"id": "evt_a"}), delivery("order.shipped", {"id": "b"}))
    page = await client.get("/", params={"routing_key": "order.created"}, headers=HTML)
    assert 'id="replay-matching"' in page.text
    assert 'id="replay-matching"' not in (await client.get("/", headers=HTML)).text  # unfiltered
    viewer = await client.get(
        "/", params={"routing_key": "order.created"}, headers={**bearer(VIEWER), **HTML}
    )
    assert 'id="replay-matching"' not in viewer.text
    preview = (
        await client.get(
            "/api/replays/preview", params={"events": "1", "routing_key": "order.created"}
        )
    ).json()
    assert preview["count"] == 1
    assert preview["targets"] == [
        {"target": "exchange events → order.created", "count": 1, "allowed": True}
    ]


# -- publishing a new event --------------------------------------------------------------------


async def test_the_operator_publishes_a_new_event_to_an_allowed_target(
    client: Client, work_queue: aio_pika.abc.AbstractQueue
) -> None:
    request = {
        "kind": "queue",
        "name": QUEUE,
        "body": {"id": "evt_new", "type": "OrderCreated"},
        "message_id": "evt_new",
        "headers": {"x-tenant": "acme"},
        "reason": "backfill",
    }
    response = await client.post("/api/publish", json=request, headers=bearer(TOKEN))
    assert response.status_code == 201, response.text
    entry = response.json()
    assert entry["state"] == "delivered" and entry["event_id"] == 0
    (message,) = await take(work_queue)
    assert json.loads(message.body) == {"id": "evt_new", "type": "OrderCreated"}
    assert message.message_id == "evt_new" and message.content_type == "application/json"
    headers = message.headers or {}
    assert headers["x-tenant"] == "acme" and headers[REPLAY_ID_HEADER] == entry["replay_id"]
    audit = (await client.get("/api/audit")).json()["items"]
    assert [(a["action"], a["result"]) for a in audit[:2]] == [
        ("publish", "delivered"),
        ("publish", "requested"),
    ]


async def test_publishing_is_refused_where_it_may_not_go_and_to_viewers(client: Client) -> None:
    elsewhere = {"kind": "exchange", "name": "payments", "routing_key": "x", "body": "{}"}
    refused = await client.post("/api/publish", json=elsewhere, headers=bearer(TOKEN))
    assert refused.status_code == 409 and "exchange:payments" in refused.text
    bad = {"kind": "queue", "name": QUEUE, "headers": {"x": {"nested": 1}}}
    assert (await client.post("/api/publish", json=bad, headers=bearer(TOKEN))).status_code == 422
    viewer = await client.post(
        "/api/publish", json={"kind": "queue", "name": QUEUE}, headers=bearer(VIEWER)
    )
    assert viewer.status_code == 403
    assert (await client.get("/publish", headers={**bearer(VIEWER), **HTML})).status_code == 403
    assert (await client.get("/api/replays")).json()["items"] == []


async def test_the_publish_form_sends_and_shows_the_outcome(
    client: Client, work_queue: aio_pika.abc.AbstractQueue
) -> None:
    page = await client.get("/publish", headers=HTML)
    assert page.status_code == 200 and 'id="publish-form"' in page.text
    token = await csrf_token(client)
    result = await client.post(
        "/publish",
        data={
            "kind": "queue",
            "name": QUEUE,
            "body": '{"hello": 1}',
            "headers": "",
            "content_type": "application/json",
            "reason": "try it",
        },
        headers={"origin": ORIGIN, "x-csrf-token": token, "hx-request": "true"},
    )
    assert 'id="replay-outcome"' in result.text and ">delivered<" in result.text
    assert len(await take(work_queue)) == 1
    bad = await client.post(
        "/publish",
        data={"kind": "queue", "name": QUEUE, "headers": "{not json"},
        headers={"origin": ORIGIN, "x-csrf-token": token, "hx-request": "true"},
    )
    assert 'id="replay-refused"' in bad.text and "JSON object" in bad.text


async def test_previews_are_for_operators(client: Client, put: Callable[..., Any]) -> None:
    (dead,) = await put(dead_letter(QUEUE, {"id": "evt_v"}))
    viewer = bearer(VIEWER)
    assert (await client.get(f"/api/events/{dead}/replay", headers=viewer)).status_code == 403
    assert (await client.get("/api/replays/preview", headers=viewer)).status_code == 403
    detail = (await client.get(f"/api/dlq/{dead}", headers=viewer)).json()
    assert detail["preview"] is None and detail["state"]["state"] == "unresolved"
