"""Aggregates in a real browser, on the demo's orders (`eventscope serve --demo`, which folds
them with the seed's Order rules): open an Order from the list, step back to version 1 and
forward with the keys, see the diff highlight `status` going from `created` to `paid`, move the
slider, and watch the current state follow a new event — without a CSP violation."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import (
    AMQP_URL,
    EXPECT_TIMEOUT_MS,
    PAGE_PROBE,
    STARTUP_TIMEOUT,
    Publisher,
    Server,
    _delete_topology,
    _free_port,
    _wait_for_server,
)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`eventscope serve --demo` recording its own exchange (the demo publishes there), with no
    failures so every order that is paid has its OrderPaid folded."""
    workdir = tmp_path_factory.mktemp("eventscope-demo")
    suffix = uuid.uuid4().hex[:8]
    port = _free_port()
    token = secrets.token_urlsafe(24)
    exchange, tap_queue = f"test.browser.demo.{suffix}", f"test.browser.demo.tap.{suffix}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update(
        EVENTSCOPE_TOKEN=token,
        EVENTSCOPE_AMQP_URL=AMQP_URL,
        EVENTSCOPE_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/events.db",
        EVENTSCOPE_EXCHANGES=exchange,
        EVENTSCOPE_TAP_QUEUE=tap_queue,
        EVENTSCOPE_HOST="127.0.0.1",
        EVENTSCOPE_PORT=str(port),
        EVENTSCOPE_BATCH_MAX_WAIT_MS="50",
        EVENTSCOPE_DEMO_RATE="25",
        EVENTSCOPE_DEMO_FAILURE_RATE="0",
        PYTHONUNBUFFERED="1",
    )
    log_path = workdir / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "eventscope.web.cli", "serve", "--demo"],
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Server(f"http://127.0.0.1:{port}", token, exchange, tap_queue, process, log_path)
    try:
        _wait_for_server(running, STARTUP_TIMEOUT)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        _delete_topology(exchange, tap_queue)


def a_shipped_order(server: Server, timeout: float = 60.0) -> dict[str, Any]:
    """A finished Order of the demo: created (v1), paid (v2), shipped (v3)."""
    deadline = time.monotonic() + timeout
    while True:
        items = server.get_json("/api/aggregates?type=Order&limit=200")["items"]
        for item in items:
            if item["last_event_type"] == "OrderShipped" and item["version"] == 3:
                return dict(item)
        assert time.monotonic() < deadline, f"no paid Order within {timeout}s: {items[:3]}"
        time.sleep(0.5)


@pytest.fixture
def demo_page(browser: Browser, demo_server: Server) -> Iterator[Page]:
    """Logged in to the demo server, with the page probe (socket state, CSP violations)."""
    context = browser.new_context(
        base_url=demo_server.base_url, viewport={"width": 1400, "height": 900}, color_scheme="light"
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    context.add_init_script(PAGE_PROBE)
    tab = context.new_page()
    tab.goto(f"/login?token={demo_server.token}")
    yield tab
    context.close()


def test_an_order_steps_back_to_version_1_and_forward_with_the_diff_highlighted(
    demo_page: Page, demo_server: Server, artifacts: Path
) -> None:
    page = demo_page
    chosen = a_shipped_order(demo_server)
    ident = chosen["aggregate_id"]
    page.goto(f"{demo_server.base_url}/aggregates?type=Order&q={ident}")
    page.locator("#aggregates td.id a", has_text=ident).first.click()
    title = page.locator("#state-title")
    expect(title).to_contain_text(f"version {chosen['version']}")
    expect(page.locator("#fold-order")).to_contain_text("version order")
    expect(page.locator("#fold-order")).to_contain_text("order.toml (demo)")

    for shown in ("State after version 2", "State after version 1"):  # back with ←
        page.keyboard.press("ArrowLeft")
        expect(title).to_have_text(shown)
    expect(page).to_have_url(f"{demo_server.base_url}/aggregates/Order/{ident}?version=1")
    expect(page.locator("#state")).to_contain_text('"status": "created"')
    expect(page.locator("#state-changes tr.added", has_text="status")).to_have_count(1)

    page.keyboard.press("ArrowRight")  # forward to version 2: created → paid
    expect(title).to_have_text("State after version 2")
    changed = page.locator("#state-changes tr.changed", has_text="status")
    expect(changed).to_have_count(1)
    expect(changed.locator("td.before")).to_have_text('"created"')
    expect(changed.locator("td.after")).to_have_text('"paid"')
    highlight = changed.locator("td.after").evaluate("e => getComputedStyle(e).backgroundColor")
    assert highlight not in ("rgba(0, 0, 0, 0)", "transparent"), highlight
    expect(page.locator("#state")).to_contain_text('"status": "paid"')

    page.go_back()  # each step is a URL in the history
    expect(title).to_have_text("State after version 1")

    slider = page.locator("#step-slider")
    slider.fill("0")
    expect(title).to_have_text("Before the first event")
    expect(page).to_have_url(f"{demo_server.base_url}/aggregates/Order/{ident}?step=0")
    for shown in ("State after version 1", "State after version 2"):
        page.locator('[data-step="next"]').click()
        expect(title).to_have_text(shown)
    assert page.evaluate("window.__cspViolations") == []
    # (last: Playwright's screenshot leaves style="" on the focused slider, which htmx would
    # then copy into the next step and the CSP would refuse)
    page.screenshot(path=artifacts / "aggregate.png", full_page=True)


def test_the_current_state_follows_a_new_event_of_the_aggregate(
    demo_page: Page, demo_server: Server
) -> None:
    page = demo_page
    chosen = a_shipped_order(demo_server)
    ident = chosen["aggregate_id"]
    page.goto(f"{demo_server.base_url}/aggregates/Order/{ident}")
    page.wait_for_function("() => window.__wsOpen === true")
    version = int(chosen["version"]) + 1
    Publisher(demo_server.exchange).publish(
        "order.cancelled",
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "order.cancelled",
            "eventType": "OrderCancelled",
            "aggregateType": "Order",
            "aggregateId": ident,
            "version": version,
            "timestamp": "2030-01-01T00:00:00.000Z",
            "data": {"orderId": ident, "reason": "browser test"},
        },
    )
    expect(page.locator("#state-title")).to_have_text(f"State after version {version}")
    expect(page.locator("#state")).to_contain_text('"status": "cancelled"')
    expect(page.locator("#rows tr", has_text="OrderCancelled")).to_have_count(1)
    assert page.evaluate("window.__cspViolations") == []
