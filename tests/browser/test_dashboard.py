"""The dashboard in a real chromium against a real server, broker and SQLite store.

Each test publishes its own events (routing keys carry a per-test tag) and waits for them to
show up, so tests do not depend on each other's order.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, expect

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Publisher, Server

RLO = "\u202e"
HOSTILE = {
    "script": "<script>alert(1)</script>",
    "attribute": '"><img src=x onerror=alert(1)>',
    "htmx": '<div hx-get="/api/events" hx-trigger="load">x</div>',
    "template": "{{7*7}}",
}
# Pages the hostile event is opened on; `{id}` is its row id. Add a page with one line.
HOSTILE_PAGES = [
    "/",
    "/events/{id}",
    "/correlations?id=%22%3E%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E",  # its correlation id
    "/compare?a={id}&b={id}",
    "/aggregates/view?event={id}",  # its aggregate, the hostile data folded into the state
    "/events/{id}/replay",  # the replay preview: its body in the edit box
]
# Pages that must load without console messages, page errors, failed requests or CSP reports.
CLEAN_PAGES = [
    "/",
    "/events/{id}",
    "/?before={cursor}",
    "/?after={cursor}",
    "/audit",
    "/correlations",
    "/compare?a={id}&b={id}",
    "/aggregates",
    "/aggregates/view?event={id}",
    "/dlq",
    "/replays",
    "/publish",
    "/events/{id}/replay",
    "/login",
]


def tag() -> str:
    """A per-test word for routing keys, so a test finds exactly its own rows."""
    return "t" + uuid.uuid4().hex[:8]


def seed_event(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A body shaped like the seed's events (order flow, event-sourced aggregate)."""
    aggregate_id = f"ord_{uuid.uuid4().hex[:10]}"
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "data": {"orderId": aggregate_id, "customerId": "cus_42", "items": 2, "total": 42.5},
        "metadata": {"correlationId": str(uuid.uuid4()), "source": "browser-test"},
        "aggregateId": aggregate_id,
        "aggregateType": "Order",
        "eventType": event_type,
        "version": 1,
    }
    body.update(overrides)
    return body


def wait_for(page: Page, predicate: str) -> None:
    """`page.wait_for_function` that survives the page's CSP.

    Playwright evals the expression in the page. The first eval runs inside a devtools call,
    which CSP allows; later polls run from requestAnimationFrame, where `script-src 'self'`
    (no 'unsafe-eval') refuses eval. A function is evaled once and then called, so it is safe;
    a bare expression would be re-evaled on every poll and fail with EvalError.
    """
    page.wait_for_function(f"() => ({predicate})")


def wait_live(page: Page) -> None:
    """Wait until htmx-ext-ws reports the live socket open (htmx:wsOpen, seen by the probe)."""
    wait_for(page, "window.__wsOpen === true")


def row(page: Page, routing_key: str) -> Locator:
    return page.locator("#rows tr").filter(has=page.locator("td.rk", has_text=routing_key))


def row_id(page: Page, routing_key: str) -> int:
    expect(row(page, routing_key)).to_have_count(1)
    return int((row(page, routing_key).get_attribute("id") or "e0")[1:])


def test_rows_appear_live_without_reload(page: Page, publisher: Publisher, artifacts: Path) -> None:
    wait_live(page)
    page.evaluate("window.__marker = 1")
    t = tag()
    keys = [f"order.created.{t}", f"inventory.reserved.{t}", f"payment.succeeded.{t}"]
    for key in keys:
        publisher.publish(key, seed_event(key.rsplit(".", 1)[0]))
        expect(row(page, key)).to_have_count(1)

    shown = [k for k in page.locator("#rows tr td.rk").all_text_contents() if t in k]
    assert shown == keys[::-1], "newest first"
    ids = page.locator("#rows tr[id]").evaluate_all("rows => rows.map(r => Number(r.id.slice(1)))")
    assert ids == sorted(ids, reverse=True)
    expect(page.locator("#rows tr.empty")).to_be_hidden()
    clipped = page.locator("#rows td.t, #rows td.oc").evaluate_all(
        "cells => cells.filter(c => c.scrollWidth > c.clientWidth).map(c => c.textContent)"
    )
    assert clipped == [], "times (HH:MM:SS.mmm) must fit their column"
    expect(page.locator("#rows .cc")).to_have_count(0)  # a missing value is not a control char
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    page.screenshot(path=artifacts / "timeline.png")


def test_pause_shows_counter_then_resume_reloads(
    page: Page, publisher: Publisher, artifacts: Path
) -> None:
    wait_live(page)
    toggle, missed = page.locator("#toggle-live"), page.locator("#missed")
    expect(toggle).to_have_text("Pause")
    toggle.click()
    expect(missed).to_have_text("0")
    expect(toggle).to_have_text("Resume")

    t = tag()
    keys = [f"order.paused{i}.{t}" for i in range(5)]
    publisher.publish_many([(key, seed_event("order.created"), None) for key in keys])
    expect(missed).to_have_text("5")
    for key in keys:
        expect(row(page, key)).to_have_count(0)
    page.screenshot(path=artifacts / "paused.png")

    toggle.click()
    for key in keys:
        expect(row(page, key)).to_have_count(1)
    expect(toggle).to_have_text("Pause")
    expect(page.locator("#live-controls .pill.live")).to_be_visible()
    expect(missed).to_have_count(0)

    page.keyboard.press("p")
    expect(toggle).to_have_text("Resume")
    expect(missed).to_have_text("0")
    key = f"order.keyboard.{t}"
    publisher.publish(key, seed_event("order.created"))
    expect(missed).to_have_text("1")
    expect(row(page, key)).to_have_count(0)
    page.keyboard.press("p")
    expect(toggle).to_have_text("Pause")
    expect(row(page, key)).to_have_count(1)


def test_event_detail_page(page: Page, publisher: Publisher, artifacts: Path) -> None:
    wait_live(page)
    key = f"order.shipped.{tag()}"
    body = seed_event("order.shipped", data={"carrier": "DHL", "parcels": [{"id": "p1"}]})
    correlation = body["metadata"]["correlationId"]
    headers = {"x-correlation-id": correlation, "x-retry-count": 2, "x-trace": {"sampled": True}}
    publisher.publish(key, body, headers)

    row(page, key).locator("td.t a").click()
    expect(page).to_have_url(re.compile(r"/events/\d+$"))
    event_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("h1")).to_have_text(f"#{event_id} {key}")

    section = page.locator("section").filter(
        has=page.get_by_role("heading", name="Headers", exact=True)
    )
    header = section.locator("table.fields > tbody > tr").filter(
        has=page.locator("th", has_text="x-correlation-id")
    )
    expect(header.locator("td").last).to_have_text(correlation)
    expect(section.locator("th", has_text="x-retry-count")).to_be_visible()
    expect(section.locator("table.nested th", has_text="sampled")).to_be_visible()

    causation = page.locator("dt", has_text="Causation id").locator(
        "xpath=following-sibling::dd[1]"
    )
    expect(causation.locator(".none")).to_have_text("—")
    expect(page.locator(".cc")).to_have_count(0)  # nothing invisible in this event

    pretty = page.locator("pre.body.json")
    expect(pretty).to_have_text(json.dumps(body, indent=2))
    page.screenshot(path=artifacts / "event-detail.png", full_page=True)

    link = page.get_by_role("link", name="Download raw body")
    expect(link).to_have_attribute("href", f"/events/{event_id}/raw")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == json.dumps(body).encode()


def test_status_bar_shows_broker_and_counts(page: Page, publisher: Publisher) -> None:
    wait_live(page)
    status = page.locator("#status")
    expect(status).to_contain_text("broker connected")
    count = status.locator("#events-recorded b")
    before = int((count.text_content() or "").replace(",", ""))

    t = tag()
    publisher.publish_many(
        [(f"order.counted{i}.{t}", seed_event("order.created"), None) for i in range(2)]
    )
    expect(count).to_have_text(f"{before + 2:,}")
    expect(status).to_contain_text("broker connected")


def test_no_console_errors_and_no_csp_violations(
    context: BrowserContext,
    login: Callable[[Page], Page],
    publisher: Publisher,
    server: Server,
) -> None:
    problems: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: problems.append(console_line(m)) if counts(m) else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
    page.on(
        "response",
        lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
    )
    login(page)
    wait_live(page)
    key = f"order.clean.{tag()}"
    publisher.publish(key, seed_event("order.created"))
    event_id = row_id(page, key)
    wait_for(page, "window.__wsMessages >= 2")  # a rows fragment and a status update
    violations = page.evaluate("window.__cspViolations")

    cursor = server.get_json(f"/api/events/{event_id}")["cursor"]
    for path in CLEAN_PAGES:
        page.goto(path.format(id=event_id, cursor=cursor))
        page.wait_for_load_state("load")
        violations += page.evaluate("window.__cspViolations")
    assert problems == []
    assert violations == []

    # The detector works: an inline script added by the page itself is refused and reported.
    ran = page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__inline = 1"; document.body.append(s);
                   return window.__inline === 1; }"""
    )
    assert ran is False
    wait_for(page, "window.__cspViolations.length > 0")


def counts(message: ConsoleMessage) -> bool:
    """Every console message is a problem, except Chrome's timing hints ("[Violation] handler
    took 60ms"): verbose, and they depend on the machine's load. Its [DOM] lints do count."""
    return message.type != "verbose" or message.text.startswith("[DOM]")


def console_line(message: ConsoleMessage) -> str:
    return f"console.{message.type}: {message.text} ({message.location.get('url')})"


def test_hostile_event_renders_as_text(
    context: BrowserContext,
    login: Callable[[Page], Page],
    publisher: Publisher,
    artifacts: Path,
) -> None:
    dialogs: list[str] = []
    requests: list[str] = []
    page = context.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    context.on("request", lambda r: requests.append(r.url))
    login(page)
    wait_live(page)

    t = tag()
    key = ".".join(["hostile", *HOSTILE.values(), RLO, t])
    hostile_headers = {f"x-{name}": value for name, value in HOSTILE.items()}
    hostile_headers[HOSTILE["script"]] = "hostile header name"
    hostile_headers["x-rlo"] = f"abc{RLO}def"
    body = seed_event(
        HOSTILE["htmx"],
        metadata={"correlationId": HOSTILE["attribute"]},
        aggregateType=HOSTILE["template"],
        aggregateId=f"ord{RLO}evil",
        data=HOSTILE,
    )
    publisher.publish(key, body, hostile_headers)
    event_id = row_id(page, t)  # arrived over the websocket
    expect(page.locator(f"#e{event_id} td.rk")).to_have_text(key.replace(RLO, "U+202E"))
    assert_rendered_as_text(page, dialogs, requests)

    for path in HOSTILE_PAGES:
        page.goto(path.format(id=event_id))
        assert_rendered_as_text(page, dialogs, requests)
        slug = re.sub(r"[^a-z]+", "-", path.format(id="detail")).strip("-") or "timeline"
        page.screenshot(path=artifacts / f"hostile-{slug}.png", full_page=True)


def assert_rendered_as_text(page: Page, dialogs: list[str], requests: list[str]) -> None:
    """Every hostile string is shown literally, nothing of it became markup or ran."""
    for text in HOSTILE.values():
        expect(page.get_by_text(text).first).to_be_visible()
    expect(page.locator(".cc", has_text="U+202E").first).to_be_visible()
    expect(page.locator("bdi.v", has_text=re.compile(r"^49$"))).to_have_count(0)  # not {{7*7}}
    expect(
        page.locator(
            "body script, img, [hx-get]:not(#filter-bar), [onerror], [hx-trigger]:not(#filter-bar)"
        )
    ).to_have_count(0)
    assert dialogs == []
    fired = [u for u in requests if "/api/events" in u or u.endswith("/x")]
    assert fired == []


def test_login_form_then_logout_button(context: BrowserContext, server: Server) -> None:
    """The way a person logs in without the link: the form posts, the session starts; the
    header's Log out (an htmx POST carrying the CSRF token) ends it."""
    page = context.new_page()
    page.goto("/login")
    page.fill("#token", "not the token")
    page.click("text=Log in with token")
    expect(page.get_by_role("alert")).to_contain_text("not valid")

    page.fill("#token", server.token)
    page.click("text=Log in with token")
    expect(page.locator("h1")).to_have_text("Live timeline")
    assert page.url == server.url("/")

    page.get_by_role("button", name="Log out").click()
    expect(page.locator("h1")).to_have_text("Log in to eventscope")
    page.goto("/")
    expect(page.locator("h1")).to_have_text("Log in to eventscope")  # the session is gone
