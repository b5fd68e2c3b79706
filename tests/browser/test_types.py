"""The types page in a real browser: a recorded type appears with its rate chart, its shape
opens on a click, its name leads to the timeline filtered by it, and nothing breaks the CSP."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Publisher
from tests.browser.test_dashboard import seed_event, tag


def open_types_until(page: Page, name: str, events: int, timeout: float = 20.0) -> None:
    """The catalog counts behind ingest: reload /types until the type shows `events`."""
    deadline = time.monotonic() + timeout
    count = page.locator("tbody.type").filter(has=page.locator("td.name", has_text=name))
    while True:
        page.goto("/types")
        if count.count() and count.locator("td.num").inner_text() == str(events):
            return
        assert time.monotonic() < deadline, f"{name} never showed {events} events on /types"
        page.wait_for_timeout(300)


def test_a_recorded_type_is_listed_opens_its_shape_and_leads_to_its_events(
    page: Page, publisher: Publisher, artifacts: Path
) -> None:
    name = f"Shipped{tag()}"
    for _ in range(3):
        publisher.publish("order.shipped", {**seed_event("order.shipped"), "eventType": name})
    open_types_until(page, name, 3)
    body = page.locator("tbody.type").filter(has=page.locator("td.name", has_text=name))
    expect(body.locator("svg.spark rect")).not_to_have_count(0)
    body.locator("details summary").click()
    expect(body.locator("table.shape")).to_contain_text("data.orderId")
    expect(body.locator("pre.body")).to_contain_text(name)
    page.screenshot(path=artifacts / "types.png", full_page=True)
    assert page.evaluate("window.__cspViolations") == []

    body.locator("td.name a").click()
    expect(page.locator(".chip")).to_contain_text(name)
    expect(page.locator("#rows tr td.ty", has_text=name)).to_have_count(3)
