"""The comforts in a real browser: UTC or local time (remembered, live rows too), keyboard
navigation, copy buttons, foldable JSON, jump to time, and comparing two picked events.

The browser runs in Asia/Kolkata (UTC+05:30, no daylight saving), so local time always differs
from UTC by a known amount.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import EXPECT_TIMEOUT_MS, PAGE_PROBE, Publisher, Server, log_in
from tests.browser.test_dashboard import row, row_id, seed_event, tag, wait_for, wait_live

ZONE = "Asia/Kolkata"
OFFSET = dt.timedelta(hours=5, minutes=30)


@pytest.fixture
def tab(browser: Browser, server: Server) -> Iterator[Page]:
    """A logged-in page in a browser set to ZONE, allowed to use the clipboard; it fails the
    test on any page error or CSP violation."""
    context = browser.new_context(
        base_url=server.base_url,
        viewport={"width": 1400, "height": 900},
        color_scheme="light",
        timezone_id=ZONE,
        permissions=["clipboard-read", "clipboard-write"],
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    context.add_init_script(PAGE_PROBE)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, server)
    yield page
    violations = page.evaluate("() => window.__cspViolations || []")
    context.close()
    assert not errors, errors
    assert not violations, violations


def filtered_live(page: Page, t: str) -> None:
    """The live timeline showing only this test's events (routing keys ending in `t`)."""
    page.goto(f"/?routing_key=%23.{t}")
    wait_live(page)


def received_at(page: Page, routing_key: str) -> dt.datetime:
    stamp = row(page, routing_key).locator("td.t time").get_attribute("datetime") or ""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_times_switch_to_local_time_are_remembered_and_apply_to_live_rows(
    tab: Page, publisher: Publisher, artifacts: Path
) -> None:
    t = tag()
    filtered_live(tab, t)
    publisher.publish(f"order.created.{t}", seed_event("order.created"))
    first = row(tab, f"order.created.{t}").locator("td.t time")
    expect(first).to_have_count(1)
    when = received_at(tab, f"order.created.{t}")
    utc_text = when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    local = when + OFFSET
    local_text = local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    expect(first).to_have_text(utc_text)

    tab.locator(".tz-switch [data-tz=local]").click()
    expect(first).to_have_text(local_text)
    expect(tab.locator(".tz-switch [data-tz=local]")).to_have_attribute("aria-pressed", "true")
    expect(tab.locator("[data-tz-label]")).to_have_text("local (UTC+05:30)")

    publisher.publish(f"order.paid.{t}", seed_event("order.paid"))
    live = row(tab, f"order.paid.{t}").locator("td.t time")
    expect(live).to_have_count(1)
    arrived = received_at(tab, f"order.paid.{t}") + OFFSET
    expect(live).to_have_text(arrived.strftime("%H:%M:%S.") + f"{arrived.microsecond // 1000:03d}")

    tab.reload()
    wait_live(tab)
    expect(row(tab, f"order.created.{t}").locator("td.t time")).to_have_text(local_text)
    tab.screenshot(path=artifacts / "comforts-local-time.png")
    tab.goto(f"/events/{row_id(tab, f'order.created.{t}')}")
    received = tab.locator("dt:text-is('Received') + dd time")
    expect(received).to_have_text(local.isoformat(timespec="milliseconds")[:23] + "+05:30")

    tab.locator(".tz-switch [data-tz=utc]").click()
    expect(received).to_have_text(when.isoformat(timespec="milliseconds")[:23] + "Z")
    filtered_live(tab, t)
    expect(row(tab, f"order.created.{t}").locator("td.t time")).to_have_text(utc_text)


def test_keyboard_moves_through_rows_and_opens_one(tab: Page, publisher: Publisher) -> None:
    t = tag()
    filtered_live(tab, t)
    for name in ("first", "second", "third"):
        publisher.publish(f"k.{name}.{t}", seed_event(name))
    expect(tab.locator("#rows tr[id]")).to_have_count(3)
    second = row_id(tab, f"k.second.{t}")  # newest first: third, second, first

    tab.keyboard.press("j")
    expect(tab.locator("#rows tr.sel")).to_have_count(1)
    tab.keyboard.press("j")
    expect(tab.locator("#rows tr.sel")).to_have_attribute("id", f"e{second}")
    tab.keyboard.press("Enter")
    tab.wait_for_url(f"**/events/{second}")

    filtered_live(tab, t)
    tab.keyboard.press("p")
    expect(tab.locator("#live-controls")).to_contain_text("Paused")
    tab.keyboard.press("p")
    expect(tab.locator("#live-controls")).to_contain_text("live")
    tab.keyboard.press("?")
    expect(tab.locator("#keys-help")).to_be_visible()
    expect(tab.locator("#keys-help")).to_contain_text("open the selected event")
    tab.keyboard.press("Escape")
    expect(tab.locator("#keys-help")).to_be_hidden()

    tab.keyboard.press("/")
    wait_for(tab, "document.activeElement && document.activeElement.id === 'filter-q'")
    tab.keyboard.press("j")  # typed into the search box, not a row move
    expect(tab.locator("#filter-q")).to_have_value("j")
    expect(tab.locator("#rows tr.sel")).to_have_count(0)


def test_copy_buttons_put_whole_values_on_the_clipboard(
    tab: Page, publisher: Publisher, artifacts: Path
) -> None:
    t = tag()
    filtered_live(tab, t)
    body = seed_event("order.created")
    publisher.publish(f"order.created.{t}", body)
    tab.goto(f"/events/{row_id(tab, f'order.created.{t}')}")

    button = tab.locator("dt:text-is('Correlation id') + dd button.copy")
    button.click()
    expect(button).to_have_class("copy done")
    assert tab.evaluate("() => navigator.clipboard.readText()") == body["metadata"]["correlationId"]
    tab.locator("dt:text-is('Event id') + dd button.copy").click()
    expect(tab.locator("dt:text-is('Event id') + dd button.copy")).to_have_class("copy done")
    assert tab.evaluate("() => navigator.clipboard.readText()") == body["id"]

    tab.locator(".body-head button.copy").click()
    expect(tab.locator(".body-head button.copy")).to_have_class("copy done")
    assert json.loads(tab.evaluate("() => navigator.clipboard.readText()")) == body
    tab.screenshot(path=artifacts / "comforts-copied.png")


def test_json_bodies_fold(tab: Page, publisher: Publisher) -> None:
    t = tag()
    filtered_live(tab, t)
    publisher.publish(f"order.created.{t}", seed_event("order.created"))
    tab.goto(f"/events/{row_id(tab, f'order.created.{t}')}")
    pretty = tab.locator("pre.body.json")
    data = pretty.locator(".jc .jc").first  # "data": {...}
    expect(data).not_to_have_class("jc folded")
    data.locator("> button.jf").click()
    expect(data).to_have_class("jc folded")
    expect(data.locator("> .jb")).to_be_hidden()
    expect(pretty).not_to_contain_text("customerId", use_inner_text=True)
    tab.locator("[data-fold=open]").click()
    expect(pretty).to_contain_text("customerId", use_inner_text=True)
    tab.locator("[data-fold=close]").click()
    expect(pretty.locator(".jc.folded")).to_have_count(2)  # data and metadata


def test_jump_to_time_opens_history_at_that_local_time(tab: Page, publisher: Publisher) -> None:
    t = tag()
    filtered_live(tab, t)
    publisher.publish(f"jump.before.{t}", seed_event("before"))
    expect(row(tab, f"jump.before.{t}")).to_have_count(1)
    time.sleep(2.2)  # the box takes whole seconds: the next event must fall in a later one
    publisher.publish(f"jump.after.{t}", seed_event("after"))
    expect(row(tab, f"jump.after.{t}")).to_have_count(1)
    earlier = received_at(tab, f"jump.before.{t}")
    moment = earlier.replace(microsecond=0) + dt.timedelta(seconds=1)

    tab.locator(".tz-switch [data-tz=local]").click()
    tab.fill("#jump-at", (moment + OFFSET).strftime("%Y-%m-%dT%H:%M:%S"))  # wall time in ZONE
    expect(tab.locator("#timeline h1")).to_contain_text("History at or before")
    expect(row(tab, f"jump.before.{t}")).to_have_count(1)
    expect(row(tab, f"jump.after.{t}")).to_have_count(0)
    assert "at=" in tab.url and f"routing_key=%23.{t}" in tab.url


def test_two_picked_events_are_compared_side_by_side(
    tab: Page, publisher: Publisher, artifacts: Path
) -> None:
    t = tag()
    filtered_live(tab, t)
    publisher.publish(f"order.created.{t}", seed_event("order.created", version=1))
    publisher.publish(f"order.updated.{t}", seed_event("order.created", version=2))
    expect(tab.locator("#rows tr[id]")).to_have_count(2)

    row(tab, f"order.created.{t}").hover()
    row(tab, f"order.created.{t}").locator("button.pick").click()
    expect(tab.locator("#compare-bar")).to_contain_text("pick another event")
    tab.keyboard.press("j")  # the newest row: order.updated
    tab.keyboard.press("x")
    expect(tab.locator("#compare-bar")).to_contain_text("Picked #")
    tab.locator("#compare-bar a", has_text="Compare").click()

    tab.wait_for_url("**/compare?a=*")
    changes = tab.locator("#body-changes table.changes tbody tr")
    version = changes.filter(has=tab.locator("td.path", has_text="version"))
    expect(version).to_have_count(1)
    expect(version.locator("td.kind")).to_have_text("changed")
    expect(version.locator("td.before")).to_have_text("1")
    expect(version.locator("td.after")).to_have_text("2")
    expect(tab.locator(".sides pre.body.json")).to_have_count(2)
    tab.screenshot(path=artifacts / "comforts-compare.png", full_page=True)
