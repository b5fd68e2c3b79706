"""Find in a real browser: type a wildcard filter, see only matching rows (live ones too),
click a correlation id in a row, remove a chip."""

from __future__ import annotations

import uuid
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Publisher
from tests.browser.test_dashboard import row, seed_event, tag, wait_live


def test_typing_a_wildcard_filter_shows_only_matching_rows_live_ones_too(
    page: Page, publisher: Publisher, artifacts: Path
) -> None:
    wait_live(page)
    t = tag()
    publisher.publish(f"order.created.{t}", seed_event("order.created"))
    publisher.publish(f"payment.failed.{t}", seed_event("payment.failed"))
    expect(row(page, f"payment.failed.{t}")).to_have_count(1)

    page.fill("input[name=routing_key]", f"order.*.{t}")
    expect(page.locator(".chip")).to_have_count(1, timeout=10_000)
    expect(row(page, f"order.created.{t}")).to_have_count(1)
    expect(row(page, f"payment.failed.{t}")).to_have_count(0)
    assert "routing_key=order.%2A." in page.url, "the filter is in the URL, to bookmark and share"
    wait_live(page)

    publisher.publish(f"order.paid.{t}", seed_event("order.paid"))
    publisher.publish(f"payment.done.{t}", seed_event("payment.done"))
    expect(row(page, f"order.paid.{t}")).to_have_count(1)
    expect(row(page, f"payment.done.{t}")).to_have_count(0)
    page.screenshot(path=artifacts / "find-wildcard.png")

    page.locator(".chip").first.click()
    expect(page.locator(".chip")).to_have_count(0)
    expect(row(page, f"payment.failed.{t}")).to_have_count(1)


def test_clicking_a_correlation_id_filters_by_it(
    page: Page, publisher: Publisher, artifacts: Path
) -> None:
    wait_live(page)
    t = tag()
    correlation = f"req_{uuid.uuid4().hex[:8]}"
    for key in (f"order.created.{t}", f"order.paid.{t}"):
        body = seed_event(key.rsplit(".", 1)[0])
        body["metadata"]["correlationId"] = correlation
        publisher.publish(key, body)
    publisher.publish(f"other.{t}", seed_event("other"))
    expect(row(page, f"other.{t}")).to_have_count(1)

    row(page, f"order.paid.{t}").locator("td.co a.fv").click()
    expect(page.locator(".chip")).to_contain_text(correlation)
    expect(row(page, f"order.created.{t}")).to_have_count(1)
    expect(row(page, f"order.paid.{t}")).to_have_count(1)
    expect(row(page, f"other.{t}")).to_have_count(0)
    expect(page.locator("#match-count")).to_contain_text("2 matching")
    page.screenshot(path=artifacts / "find-correlation.png")
