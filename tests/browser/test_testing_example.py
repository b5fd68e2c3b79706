"""The worked example of docs/testing.md, run for real: a Playwright test clicks "Pay" in a
small shop, then asserts on the events eventscope recorded — the sequence, that nothing failed,
a body, and a fixture of the flow compared with a second click.

The shop is a plain web app (a form, no script) whose checkout publishes the seed's order flow
to RabbitMQ and shows the request's correlation id. The `eventscope` fixture is the plugin's
(`eventscope.testing.plugin`), pointed at the session's `eventscope serve`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from eventscope.testing import EventscopeClient, load_fixture
from tests.browser.conftest import AMQP_URL, Server, _free_port

SHOP_PAGE = """<!doctype html><title>Shop</title>
<h1>Cart: 2 × A-1</h1>
<form method="post" action="/checkout">
  <input type="hidden" name="total" value="{total}">
  <button type="submit">Pay</button>
</form>"""
RECEIPT = """<!doctype html><title>Paid</title>
<p>Order <b id="order">{order}</b> paid.
Request <output id="correlation">{correlation}</output></p>"""


def order_flow(correlation: str, order: str, total: float) -> list[dict[str, Any]]:
    """What the shop's services publish for one checkout (the seed's event shape)."""

    def event(kind: str, event_type: str, cause: str | None, **data: Any) -> dict[str, Any]:
        return {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": kind,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "aggregateId": order,
            "aggregateType": "Order",
            "eventType": event_type,
            "version": 1,
            "data": {"orderId": order, **data},
            "metadata": {"correlationId": correlation, "causationId": cause, "source": "shop"},
        }

    created = event("order.created", "OrderCreated", None, total=total, currency="EUR")
    paid = event("payment.succeeded", "PaymentSucceeded", created["id"], amount=total)
    return [created, paid]


class Shop(BaseHTTPRequestHandler):
    exchange = ""

    def do_GET(self) -> None:
        self._send(SHOP_PAGE.format(total="62.49"))

    def do_POST(self) -> None:
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["content-length"])).decode())
        correlation, order = f"req_{uuid.uuid4().hex[:12]}", f"ord_{uuid.uuid4().hex[:6]}"
        asyncio.run(self._publish(order_flow(correlation, order, float(form["total"][0]))))
        self._send(RECEIPT.format(order=html.escape(order), correlation=html.escape(correlation)))

    async def _publish(self, events: list[dict[str, Any]]) -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.exchange)
            for item in events:
                body = json.dumps(item).encode()
                message = aio_pika.Message(body, content_type="application/json")
                await exchange.publish(message, routing_key=item["type"])

    def _send(self, page: str) -> None:
        body = page.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def shop(server: Server) -> Iterator[str]:
    """The shop on a free port, publishing to the exchange eventscope records."""
    handler = type("ShopForTest", (Shop,), {"exchange": server.exchange})
    httpd = ThreadingHTTPServer(("127.0.0.1", _free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(10)


@pytest.fixture
def eventscope(server: Server) -> EventscopeClient:
    """The plugin's fixture, configured as `--eventscope-url` / `EVENTSCOPE_TOKEN` would."""
    return EventscopeClient(server.base_url, server.token)


@pytest.fixture
def shop_page(context: BrowserContext, shop: str) -> Page:
    tab = context.new_page()
    tab.goto(shop)
    return tab


# --- the example, as docs/testing.md shows it ------------------------------------------------


def test_paying_emits_the_order_flow(shop_page: Page, eventscope: EventscopeClient) -> None:
    page = shop_page
    page.get_by_role("button", name="Pay").click()
    correlation = page.locator("#correlation").inner_text()

    events = eventscope.assert_sequence(
        correlation, ["order.created", "payment.succeeded"], quiet=1
    )
    eventscope.assert_no_event(routing_key="dlq.#", quiet=0.5)  # nothing dead-lettered
    payment = eventscope.event(events[1]["id"])
    assert payment["body_json"]["data"]["amount"] == 62.49


def test_a_second_checkout_matches_the_recorded_fixture(
    shop_page: Page, eventscope: EventscopeClient, tmp_path: Path
) -> None:
    page = shop_page
    page.get_by_role("button", name="Pay").click()
    first = page.locator("#correlation").inner_text()
    eventscope.wait_for(correlation_id=first, min_count=2)
    fixture = eventscope.export_fixture(first, tmp_path / "checkout.json")

    page.go_back()
    page.get_by_role("button", name="Pay").click()
    expect(page.locator("#correlation")).not_to_have_text(first)
    second = page.locator("#correlation").inner_text()
    eventscope.assert_matches_fixture(second, load_fixture(fixture))


# --- and what its failure looks like -------------------------------------------------------------


def test_a_missing_event_fails_with_what_did_arrive(
    shop_page: Page, eventscope: EventscopeClient
) -> None:
    shop_page.get_by_role("button", name="Pay").click()
    correlation = shop_page.locator("#correlation").inner_text()
    with pytest.raises(AssertionError) as failure:
        eventscope.assert_sequence(
            correlation, ["order.created", "payment.succeeded", "order.shipped"], timeout=1
        )
    message = str(failure.value)
    assert "3 expected, 2 arrived" in message
    assert "order.shipped" in message and "(nothing)" in message
    assert "PaymentSucceeded" in message, "what did arrive is shown"
