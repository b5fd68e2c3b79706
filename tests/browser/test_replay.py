"""Replaying a dead letter in a real browser: a consumer rejects a message into the recorded
dead-letter exchange; on /dlq its group opens, Replay… previews the target (the queue it died
in), Replay delivers it there exactly once; the ledger, the audit log and the event page show
it, and once the quiet period passes the dead letter is resolved. Nothing breaks the CSP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Publisher, Server, _in_worker_thread
from tests.browser.test_dashboard import seed_event, tag
from tests.conftest import AMQP_URL

REPLAY_ID = "x-eventscope-replay-id"


@pytest.fixture
def work_queue(server: Server) -> Iterator[str]:
    """A working queue bound to order.paid.<tag>, dead-lettering into the recorded DLX."""
    name = f"test.browser.work.{tag()}"

    async def declare() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.declare_exchange(
                f"{server.exchange}.dlx", aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(
                name, arguments={"x-dead-letter-exchange": f"{server.exchange}.dlx"}
            )
            await queue.bind(server.exchange, f"{name}.order.paid")

    async def delete() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            await (await connection.channel()).queue_delete(name)

    _in_worker_thread(declare)
    try:
        yield name
    finally:
        _in_worker_thread(delete)


def reject_one(queue: str) -> None:
    """The failing consumer: takes one message and rejects it without requeue."""

    async def reject() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            for _ in range(200):
                message = await declared.get(fail=False)
                if message is not None:
                    await message.reject(requeue=False)
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"nothing arrived in {queue}")

    _in_worker_thread(reject)


def drain(queue: str) -> list[dict[str, Any]]:
    """Everything in the queue now, acked: body and headers of each."""

    async def take() -> list[dict[str, Any]]:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            taken = []
            while (message := await declared.get(fail=False, no_ack=True)) is not None:
                taken.append({"body": message.body, "headers": dict(message.headers or {})})
            return taken

    return list(_in_worker_thread(take))


def test_clicking_replay_delivers_the_dead_letter_to_its_queue_exactly_once(
    page: Page, publisher: Publisher, work_queue: str, server: Server, artifacts: Path
) -> None:
    key = f"{work_queue}.order.paid"
    original = seed_event(key)
    publisher.publish(key, original)
    reject_one(work_queue)

    group = page.locator("#dlq-groups tr").filter(has_text=key)
    deadline = time.monotonic() + 20
    while True:  # recorded within a batch window or two
        page.goto("/dlq")
        if group.count():
            break
        assert time.monotonic() < deadline, f"the dead letter of {key} never showed on /dlq"
        page.wait_for_timeout(300)
    expect(group.locator("td").nth(1)).to_contain_text(work_queue)
    group.locator("td.num a").click()
    member = page.locator("table.dlq-members tbody tr")
    expect(member).to_have_count(1)
    member.get_by_role("link", name="Replay…").click()

    expect(page.locator("#verdict")).to_contain_text(work_queue)
    expect(page.locator("#target-allowed")).to_be_visible()
    page.screenshot(path=artifacts / "replay-preview.png", full_page=True)
    page.fill("input[name=reason]", "consumer fixed")
    page.click("#replay-button")
    outcome = page.locator("#replay-outcome")
    expect(outcome).to_contain_text("delivered")
    page.screenshot(path=artifacts / "replay-done.png", full_page=True)

    time.sleep(0.5)  # a second delivery, if any, would be in the queue by now
    delivered = drain(work_queue)
    assert len(delivered) == 1, delivered
    assert json.loads(delivered[0]["body"]) == original
    replay_id = delivered[0]["headers"][REPLAY_ID]
    assert "x-death" in delivered[0]["headers"]

    page.goto("/replays")
    row = page.locator("#ledger tr").first
    expect(row).to_contain_text(work_queue)
    expect(row).to_contain_text("consumer fixed")
    expect(row.locator("code.rid")).to_have_text(replay_id[:8])
    page.goto("/audit")
    expect(page.locator("table.audit tbody tr").first).to_contain_text("replay")
    expect(page.locator("table.audit tbody tr").first).to_contain_text("delivered")

    page.goto("/dlq")
    expect(page.locator("#dlq-groups tr").filter(has_text=key)).to_have_count(0)
    page.goto("/dlq?state=handled")
    handled = page.locator("#dlq-groups tr").filter(has_text=key)
    expect(handled).to_have_count(1)
    handled.locator("td.num a").click()
    page.locator("table.dlq-members tbody tr td a").first.click()
    time.sleep(1.2)  # the quiet period (1 s here) passes without the message dying again
    page.reload()
    expect(page.locator("#dl-state")).to_contain_text("resolved")
    page.screenshot(path=artifacts / "replay-resolved.png", full_page=True)
    assert page.evaluate("window.__cspViolations") == []


def test_a_group_is_replayed_in_bulk_with_live_progress(
    page: Page, publisher: Publisher, work_queue: str, artifacts: Path
) -> None:
    key = f"{work_queue}.order.paid"
    sent = [seed_event(key) for _ in range(3)]
    for event in sent:
        publisher.publish(key, event)
        reject_one(work_queue)

    group = page.locator("#dlq-groups tr").filter(has_text=key)
    deadline = time.monotonic() + 20
    while True:
        page.goto("/dlq")
        if group.count() and group.locator("td.num").inner_text() == "3":
            break
        assert time.monotonic() < deadline, f"the 3 dead letters of {key} never showed"
        page.wait_for_timeout(300)
    group.locator("td.num a").click()
    page.click("#replay-group")
    expect(page.locator("h1")).to_have_text("Replay 3 dead letters")
    expect(page.locator("table.bulk-targets")).to_contain_text(work_queue)
    page.fill("input[name=reason]", "bulk after the fix")
    page.click("#bulk-button")
    page.wait_for_url("**/replays/batches/*")
    expect(page.locator("#batch-state")).to_have_text("finished", timeout=20_000)
    expect(page.locator("#batch-delivered")).to_have_text("3 delivered")
    expect(page.locator("#batch-entries tbody tr")).to_have_count(3)  # sent over the socket
    page.screenshot(path=artifacts / "replay-bulk.png", full_page=True)

    time.sleep(0.5)
    delivered = drain(work_queue)
    assert sorted(json.loads(m["body"])["id"] for m in delivered) == sorted(e["id"] for e in sent)
    page.goto("/replays")
    expect(page.locator("#batches tbody tr").first).to_contain_text("bulk after the fix")
    assert page.evaluate("window.__cspViolations") == []
