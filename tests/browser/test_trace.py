"""Traces in a real browser: open a correlation from a timeline row, see the waterfall, the
service lanes and a dead letter marked next to its event; new events arrive live; a long
trace loads its rest on scroll."""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import Publisher, Server
from tests.browser.test_dashboard import row, tag, wait_for, wait_live

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


def flow_event(
    n: int, key: str, correlation: str, source: str, cause: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"evt_{correlation}_{n}",
        "type": key.rsplit(".", 1)[0],
        "timestamp": (T0 + dt.timedelta(milliseconds=250 * n)).isoformat(),
        "data": {"orderId": f"order_{correlation}"},
        "metadata": {"correlationId": correlation, "source": source, "version": "1.0"},
    }
    if cause is not None:
        body["metadata"]["causationId"] = f"evt_{correlation}_{cause}"
    return body


def test_open_a_trace_from_a_row_and_see_waterfall_lanes_and_a_dead_letter(
    page: Page, publisher: Publisher, artifacts: Path
) -> None:
    wait_live(page)
    t = tag()
    correlation = f"req_{uuid.uuid4().hex[:10]}"
    created = flow_event(1, f"order.created.{t}", correlation, "order-service")
    reserved = flow_event(2, f"inventory.reserved.{t}", correlation, "inventory-service", 1)
    paid = flow_event(3, f"payment.succeeded.{t}", correlation, "payment-service", 2)
    publisher.publish_many(
        [
            (f"order.created.{t}", created, None),
            (f"inventory.reserved.{t}", reserved, None),
            (f"dlq.inventory.reserved.{t}", {"originalEvent": reserved, "error": "boom"}, None),
            (f"payment.succeeded.{t}", paid, None),
        ]
    )
    expect(row(page, f"payment.succeeded.{t}")).to_have_count(1)
    row(page, f"payment.succeeded.{t}").locator("td.co a.tl").click()

    expect(page.locator("#trace-id")).to_have_text(correlation)
    steps = page.locator("#steps tr.step")
    expect(steps).to_have_count(4)
    keys = page.locator("#steps tr.step td.rk").all_text_contents()
    assert keys == [
        f"order.created.{t}",
        f"inventory.reserved.{t}",
        f"dlq.inventory.reserved.{t}",
        f"payment.succeeded.{t}",
    ], "the dead letter right after the event it failed"
    dead = page.locator("#steps tr.dead_letter")
    expect(dead).to_have_count(1)
    expect(dead.locator("td.fl")).to_contain_text("dead letter of #")
    expect(dead.locator("svg.seq path.mark.dead_letter")).to_have_count(1)
    expect(page.locator("#lane-names .lane-name")).to_have_text(
        ["order-service", "inventory-service", "payment-service"]
    )
    # created→reserved and reserved→paid cross lanes; the dead letter loops on its own lane
    expect(page.locator("#steps svg.seq line.msg")).to_have_count(2)
    expect(page.locator("#steps svg.seq path.msg.self.fail")).to_have_count(1)
    expect(page.locator("#sum-events")).to_have_text("4")
    expect(page.locator("#sum-dead")).to_contain_text("1")
    expect(page.locator("#tree li")).to_have_count(4)
    lanes = page.locator("#lane-names").bounding_box()
    lane_row = page.locator("#steps tr.step").first.locator("svg.seq").bounding_box()
    assert lanes and lane_row and abs(lanes["x"] - lane_row["x"]) < 2, "names over their lanes"
    assert abs(lanes["width"] - lane_row["width"]) < 2
    page.screenshot(path=artifacts / "trace.png", full_page=True)

    # Live: a new event of this correlation shows up without a reload.
    wait_live(page)
    page.evaluate("window.__marker = 1")
    shipped = flow_event(4, f"order.shipped.{t}", correlation, "shipping-service", 3)
    publisher.publish(f"order.shipped.{t}", shipped)
    publisher.publish(f"order.shipped.{t}.other", flow_event(5, "x", "req_other", "x"))
    expect(row(page, f"order.shipped.{t}")).to_have_count(1)
    expect(page.locator("#rows tr[id]")).to_have_count(1)
    assert page.evaluate("window.__marker") == 1
    assert page.evaluate("window.__cspViolations") == []

    page.locator("#refresh-trace").click()
    expect(page.locator("#steps tr.step")).to_have_count(5)
    expect(page.locator("#lane-names .lane-name")).to_have_count(4)


def test_a_long_trace_loads_the_rest_on_scroll_and_stays_readable(
    page: Page, publisher: Publisher, artifacts: Path
) -> None:
    correlation = f"req_long_{uuid.uuid4().hex[:8]}"
    services = ["order-service", "inventory-service", "payment-service", "shipping-service"]
    messages = [
        (
            f"step{n}.{tag()}",
            flow_event(n, "step", correlation, services[n % 4], n - 1 if n else None),
            None,
        )
        for n in range(500)
    ]
    publisher.publish_many(messages)
    page.goto(f"/correlations?id={correlation}")
    wait_for(page, "document.querySelector('#sum-events') !== null")
    for _ in range(60):  # the server records them in batches
        if page.locator("#sum-events").text_content() == "500":
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.locator("#sum-events")).to_have_text("500")
    expect(page.locator("#steps tr.step")).to_have_count(300)
    page.screenshot(path=artifacts / "trace-500-top.png")
    steps = page.locator("#steps tr.step")
    for _ in range(100):  # scrolling to the loader row at the end fetches the next events
        if steps.count() == 500:
            break
        page.evaluate("() => document.querySelector('#steps tr.more')?.scrollIntoView()")
        page.wait_for_timeout(150)
    expect(page.locator("#steps tr.step")).to_have_count(500)
    ids = page.locator("#steps tr.step").evaluate_all("rows => rows.map(r => r.id)")
    assert len(set(ids)) == 500
    height = page.locator("#steps tr.step").first.bounding_box()
    assert height and height["height"] < 24, "one dense line per event"
    assert page.evaluate("window.__cspViolations") == []
    page.screenshot(path=artifacts / "trace-500-bottom.png")


def recorded(server: Server, correlation: str) -> None:
    """Wait until the server has stored an event of the correlation (its trace answers)."""
    query = urllib.parse.urlencode({"id": correlation})
    for _ in range(100):
        try:
            server.get_json(f"/api/correlations?{query}")
            return
        except urllib.error.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{correlation!r} was not recorded")


def test_the_traces_list_opens_a_trace_and_keeps_the_filter_bar(
    page: Page, publisher: Publisher, server: Server, artifacts: Path
) -> None:
    t = tag()
    correlation = f"req/{uuid.uuid4().hex[:6]}/../admin"  # a path-like id: only ever data
    publisher.publish(f"order.created.{t}", flow_event(1, "order.created", correlation, "svc"))
    recorded(server, correlation)
    page.get_by_role("link", name="Traces").click()
    expect(page.locator("#filter-bar")).to_be_visible()
    page.fill("#filter-bar input[name=routing_key]", f"order.created.{t}")
    link = page.locator("#correlation-rows td.co a")
    expect(link).to_have_count(1, timeout=20_000)
    expect(link).to_have_text(correlation)
    assert "routing_key=order.created." in page.url
    page.screenshot(path=artifacts / "traces-list.png")
    link.click()
    expect(page.locator("#trace-id")).to_have_text(correlation)
    expect(page.locator("#steps tr.step")).to_have_count(1)
    assert page.url.endswith("/correlations?id=" + correlation.replace("/", "%2F"))
