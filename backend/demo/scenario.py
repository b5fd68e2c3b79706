"""The demo's order flow, generated without I/O so that it can be tested without a broker.

One order follows the seed's event-driven example: order.created → inventory.reserved →
payment.succeeded → order.paid → order.shipped, or payment.failed → order.cancelled for about
15% of orders. Order events are event-sourced (aggregateId, eventType, version 1, 2, 3). Every
event of one order shares a correlationId; causationId names the event that caused it.

A share `failure_rate` of the events fails at some consumer, so that both kinds of dead letter
show up on the dashboard:

- order.paid carries `x-demo-fail: true`: the demo's shipping consumer rejects it and the broker
  dead-letters it with real `x-death` headers (and the order never ships);
- any other event is followed by the seed's `dlq.<routing key>` message
  `{"originalEvent", "error", "retries"}`, as a consumer that gave up after 3 retries publishes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

FAIL_HEADER = "x-demo-fail"
CORRELATION_HEADER = "x-correlation-id"
NATIVE_FAILURE_KEY = "order.paid"  # the only key the demo consumes itself (demo.shipping)
DECLINE_RATE = 0.15
RETRIES = 3

# Producers that also put the correlation id in a header (others only have it in the body).
_HEADER_SOURCES = frozenset({"order-service", "payment-service"})
_CATALOG = (
    ("sku_mug_black", 12.50),
    ("sku_tee_white_m", 19.99),
    ("sku_hoodie_navy_l", 49.00),
    ("sku_cap_red", 15.00),
    ("sku_socks_3pack", 9.95),
    ("sku_bottle_steel", 24.90),
)
_PAYMENT_METHODS = ("credit_card", "paypal", "sepa_debit")
_DECLINE_REASONS = ("card_declined", "insufficient_funds", "expired_card")
_CARRIERS = ("DHL", "UPS", "PostNL")
_WAREHOUSES = ("ams-1", "fra-2")
# Which consumer fails on which event, and how (the seed's dlq.<key> convention).
_FAILING_CONSUMERS: dict[str, tuple[str, str]] = {
    "order.created": ("notification-service", "SMTP timeout sending the order confirmation"),
    "inventory.reserved": ("analytics-service", "warehouse insert failed: connection reset"),
    "payment.succeeded": ("notification-service", "template 'payment_receipt' not found"),
    "payment.failed": ("notification-service", "template 'payment_declined' not found"),
    "order.shipped": ("order-service", "read model update failed: deadlock detected"),
    "order.cancelled": ("inventory-service", "reservation not found: already released"),
}


@dataclass(frozen=True, slots=True)
class DemoEvent:
    """One message to publish: routing key, JSON body, headers, producing service.

    `fail` tells the consumer side that a consumer fails on this event: for order.paid the
    demo's shipping consumer rejects it (header `x-demo-fail`), for any other event the flow
    holds the seed's `dlq.<key>` message right after it.
    """

    routing_key: str
    body: dict[str, Any]
    headers: dict[str, Any]
    app_id: str
    fail: bool = False

    @property
    def message_id(self) -> str:
        """The event id; a seed dead letter keeps its original's, as the broker's DLX does."""
        original = self.body.get("originalEvent")
        return str(original["id"] if isinstance(original, dict) else self.body["id"])

    @property
    def is_dead_letter(self) -> bool:
        return "originalEvent" in self.body


def iso(at: dt.datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as in the seed's Good event."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_id(rng: random.Random) -> str:
    return f"evt_{uuid.UUID(int=rng.getrandbits(128), version=4).hex}"


class _Flow:
    """Builds one order's events, keeping the version, causation chain and clock."""

    def __init__(
        self, rng: random.Random, now: dt.datetime, failure_rate: float, order_id: str
    ) -> None:
        self.rng = rng
        self.at = now
        self.failure_rate = failure_rate
        self.order_id = order_id
        self.correlation_id = f"req_{rng.getrandbits(48):012x}"
        self.version = 0
        self.cause: str | None = None
        self.events: list[DemoEvent] = []

    def emit(
        self, key: str, source: str, data: dict[str, Any], event_type: str | None = None
    ) -> bool:
        """Append the event (and its seed dead letter when it fails); True when it fails."""
        body: dict[str, Any] = {"id": _event_id(self.rng), "type": key, "timestamp": iso(self.at)}
        if event_type is not None:
            self.version += 1
            body.update(
                aggregateId=self.order_id,
                aggregateType="Order",
                eventType=event_type,
                version=self.version,
            )
        metadata: dict[str, Any] = {
            "source": source,
            "version": "1.0",
            "correlationId": self.correlation_id,
        }
        if self.cause is not None:
            metadata["causationId"] = self.cause
        body["data"] = {"orderId": self.order_id, **data}
        body["metadata"] = metadata
        fail = self.rng.random() < self.failure_rate
        headers: dict[str, Any] = {}
        if source in _HEADER_SOURCES:
            headers[CORRELATION_HEADER] = self.correlation_id
        if fail and key == NATIVE_FAILURE_KEY:
            headers[FAIL_HEADER] = True
        self.events.append(DemoEvent(key, body, headers, source, fail))
        if fail and key != NATIVE_FAILURE_KEY:
            consumer, error = _FAILING_CONSUMERS[key]
            wrapper = {"originalEvent": body, "error": error, "retries": RETRIES}
            self.events.append(DemoEvent(f"dlq.{key}", wrapper, {}, consumer))
        self.cause = body["id"]
        self.at += dt.timedelta(milliseconds=self.rng.randint(20, 400))
        return fail


def order_flow(
    rng: random.Random,
    now: dt.datetime,
    failure_rate: float,
    *,
    order_no: int | None = None,
    decline_rate: float = DECLINE_RATE,
) -> list[DemoEvent]:
    """All messages of one order, in publishing order, its first event stamped `now`."""
    number = order_no if order_no is not None else rng.randrange(10**9)
    flow = _Flow(rng, now, failure_rate, f"order_{number}")
    lines = [
        (sku, rng.randint(1, 3), price) for sku, price in rng.sample(_CATALOG, rng.randint(1, 3))
    ]
    items = [{"sku": sku, "qty": qty, "price": price} for sku, qty, price in lines]
    total = round(sum(qty * price for _, qty, price in lines), 2)
    user = f"user_{rng.getrandbits(24):06x}"
    flow.emit(
        "order.created",
        "order-service",
        {"userId": user, "items": items, "total": total, "currency": "EUR"},
        "OrderCreated",
    )
    flow.emit(
        "inventory.reserved",
        "inventory-service",
        {
            "reservationId": f"res_{rng.getrandbits(40):010x}",
            "warehouse": rng.choice(_WAREHOUSES),
            "items": [{"sku": sku, "qty": qty} for sku, qty, _ in lines],
        },
    )
    payment = {
        "paymentId": f"pay_{rng.getrandbits(40):010x}",
        "amount": total,
        "currency": "EUR",
        "paymentMethod": rng.choice(_PAYMENT_METHODS),
    }
    if rng.random() < decline_rate:
        reason = rng.choice(_DECLINE_REASONS)
        flow.emit("payment.failed", "payment-service", {**payment, "reason": reason})
        flow.emit("order.cancelled", "order-service", {"reason": reason}, "OrderCancelled")
        return flow.events
    flow.emit("payment.succeeded", "payment-service", payment)
    paid = {"paymentId": payment["paymentId"], "paymentMethod": payment["paymentMethod"]}
    if flow.emit("order.paid", "order-service", paid, "OrderPaid"):
        return flow.events  # shipping rejected it: the order is stuck, its dead letter says why
    flow.emit(
        "order.shipped",
        "shipping-service",
        {
            "carrier": rng.choice(_CARRIERS),
            "trackingNumber": f"TRK{rng.randrange(10**12):012d}",
        },
        "OrderShipped",
    )
    return flow.events


def interleave(
    rng: random.Random,
    *,
    failure_rate: float,
    clock: Callable[[], dt.datetime],
    concurrency: int = 3,
    first_order: int = 1,
) -> Iterator[DemoEvent]:
    """Endless messages of `concurrency` orders at once, each order's in its own order.

    Each event is stamped with `clock()` when it is taken, so that pulling right before
    publishing gives bodies the real publishing time; a seed dead letter carries its original
    exactly as that was stamped.
    """
    active: list[deque[DemoEvent]] = []
    stamped: dict[str, dict[str, Any]] = {}  # failed originals whose dead letter is still due
    number = first_order
    while True:
        while len(active) < concurrency:
            active.append(deque(order_flow(rng, clock(), failure_rate, order_no=number)))
            number += 1
        index = rng.randrange(len(active))
        event = active[index].popleft()
        if not active[index]:
            del active[index]
        if event.is_dead_letter:
            original = stamped.pop(event.message_id, event.body["originalEvent"])
            yield dataclasses.replace(event, body={**event.body, "originalEvent": original})
            continue
        body = {**event.body, "timestamp": iso(clock())}
        if event.fail and event.routing_key != NATIVE_FAILURE_KEY:
            stamped[body["id"]] = body
        yield dataclasses.replace(event, body=body)
