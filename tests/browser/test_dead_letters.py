"""Dead letters in a real browser: two failures of one kind published under the seed's
`dlq.<key>` convention are one group on /dlq; the group opens its members, a member opens the
event page with its failure, whose group link leads back; nothing breaks the CSP."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Publisher
from tests.browser.test_dashboard import seed_event, tag


def test_failures_of_one_kind_are_one_group_that_opens_down_to_the_event(
    page: Page, publisher: Publisher, artifacts: Path
) -> None:
    word = tag()
    key = f"stock.{word}"
    for n in (41, 42):
        original = seed_event(key)
        wrapper = {"originalEvent": original, "error": f"stock {n} missing", "retries": 3}
        publisher.publish(f"dlq.{key}", {"data": wrapper})

    group = page.locator("#dlq-groups tr").filter(has_text=key)
    deadline = time.monotonic() + 20
    while True:  # recorded within a batch window or two
        page.goto("/dlq")
        if group.count() and group.locator("td.num").inner_text() == "2":
            break
        assert time.monotonic() < deadline, f"{key} never showed 2 dead letters on /dlq"
        page.wait_for_timeout(300)
    expect(group.locator("td.err")).to_have_text("stock <n> missing")
    page.screenshot(path=artifacts / "dlq.png", full_page=True)

    group.locator("td.num a").click()
    members = page.locator("table.dlq-members tbody tr")
    expect(members).to_have_count(2)
    expect(members.first.locator("td.err")).to_have_text("stock 42 missing")
    members.first.locator("td a").first.click()

    section = page.locator("#dead-letter")
    expect(section).to_contain_text("stock 42 missing")
    expect(section).to_contain_text("3 retries")
    section.locator("#open-group").click()
    expect(page.locator("table.dlq-members tbody tr")).to_have_count(2)
    assert page.evaluate("window.__cspViolations") == []
