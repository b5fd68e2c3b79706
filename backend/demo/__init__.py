"""The demo: the seed's order flow published to RabbitMQ, with both kinds of dead letter.

`eventscope demo` runs `run_demo_for(settings)` on its own; `eventscope serve --demo` runs it
as a background task of the runtime (backend/runtime.py). `scenario` generates events (pure),
`topology` declares the bounded demo queues, `publisher` does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from eventscope.backend.demo.publisher import DemoPublisher
from eventscope.backend.demo.scenario import DemoEvent, interleave, order_flow
from eventscope.backend.demo.topology import DEMO_DLX_EXCHANGE, DemoTopology

if TYPE_CHECKING:
    from eventscope.backend.settings import Settings

__all__ = [
    "DEMO_DLX_EXCHANGE",
    "DemoEvent",
    "DemoTopology",
    "interleave",
    "order_flow",
    "run_demo",
    "run_demo_for",
]

log = logging.getLogger("eventscope.backend.demo")


async def run_demo(
    amqp_url: str,
    *,
    exchange: str = "events",
    dlx_exchange: str = DEMO_DLX_EXCHANGE,
    rate: float = 5.0,
    failure_rate: float = 0.1,
    stop: asyncio.Event | None = None,
    max_events: int | None = None,
    seed: int | None = None,
    connection_name: str = "eventscope-demo",
    queue_prefix: str = "demo",
) -> int:
    """Publish demo events until `stop` is set or `max_events` were published; return the count.

    `rate` is messages per second over everything published (<= 0: as fast as possible). A lost
    broker is retried with backoff and never raises while `stop` is not set.
    """
    if not 0.0 <= failure_rate <= 1.0:
        raise ValueError(f"failure_rate must be between 0 and 1, not {failure_rate}")
    topology = DemoTopology(exchange, dlx_exchange, queue_prefix)
    log.info(
        "demo: publishing the order flow to exchange %r at %s; %.0f%% fail: seed-style "
        "dlq.<key> messages on %r, rejected order.paid dead-lettered via %r into queue %r "
        "(record %r too to see those)",
        exchange,
        f"{rate:g} msg/s" if rate > 0 else "full speed",
        failure_rate * 100,
        exchange,
        dlx_exchange,
        topology.dead_letters,
        dlx_exchange,
    )
    publisher = DemoPublisher(
        amqp_url,
        topology,
        rate=rate,
        failure_rate=failure_rate,
        stop=stop if stop is not None else asyncio.Event(),
        max_events=max_events,
        seed=seed,
        connection_name=connection_name,
    )
    return await publisher.run()


async def run_demo_for(settings: Settings, stop: asyncio.Event) -> int:
    """The demo as `serve --demo` and `eventscope demo` run it: to the first recorded exchange,
    at the configured rate and failure share, until `stop`."""
    return await run_demo(
        settings.amqp_url,
        exchange=settings.exchanges[0],
        rate=settings.demo_rate,
        failure_rate=settings.demo_failure_rate,
        stop=stop,
    )
