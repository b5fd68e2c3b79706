"""Publishes the demo's order flow and plays the shipping consumer that rejects some events.

One connection carries both: the publisher (with confirms, paced to `rate`) and a consumer of
the shipping queue that rejects events marked `x-demo-fail` the first time, so the broker
dead-letters them with real `x-death` headers (a replay, which carries them, is accepted). A
lost broker is waited out with backoff; the event being sent is sent again after the reconnect
(at least once, as a real producer would).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random

import aio_pika

from eventscope.backend.amqp_session import connect, run_reconnecting
from eventscope.backend.demo.scenario import FAIL_HEADER, NATIVE_FAILURE_KEY, DemoEvent, interleave
from eventscope.backend.demo.topology import DemoTopology, declare
from eventscope.backend.waiting import sleep_unless_stopped

log = logging.getLogger("eventscope.backend.demo")

CONCURRENT_ORDERS = 3
PREFETCH = 100
PUBLISH_TIMEOUT = 10.0
DRAIN_TIMEOUT = 5.0
STOP_GRACE = 2.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def to_message(event: DemoEvent) -> aio_pika.Message:
    """The AMQP message for one event: persistent JSON, ids and producer in the properties."""
    return aio_pika.Message(
        json.dumps(event.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.message_id,
        timestamp=_now(),
        app_id=event.app_id,
        headers=event.headers or None,
    )


def _describe(exc: BaseException) -> str:
    """A short reason, unwrapping the exception groups that TaskGroup raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


class DemoPublisher:
    """State that outlives a connection: events not yet sent, counts, pacing."""

    def __init__(
        self,
        amqp_url: str,
        topology: DemoTopology,
        *,
        rate: float,
        failure_rate: float,
        stop: asyncio.Event,
        max_events: int | None,
        seed: int | None,
        connection_name: str,
    ) -> None:
        rng = random.Random(seed)
        self.amqp_url = amqp_url
        self.topology = topology
        self.stop = stop
        self.max_events = max_events
        self.connection_name = connection_name
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.events = interleave(
            rng,
            failure_rate=failure_rate,
            clock=_now,
            concurrency=CONCURRENT_ORDERS,
            first_order=rng.randrange(10**4, 10**5) * 10**4,
        )
        self.pending: DemoEvent | None = None
        self.published = 0
        self.unsettled: set[str] = set()  # order.paid ids our consumer has not acked/rejected
        self.settled = asyncio.Event()
        self.next_at = 0.0
        self.retrying = False

    def done(self) -> bool:
        return self.stop.is_set() or (
            self.max_events is not None and self.published >= self.max_events
        )

    async def run(self) -> int:
        """Publish until done, reconnecting for as long as it takes; the number published."""

        def lost(exc: BaseException, wait: float) -> None:  # wait it out, never raise
            self.retrying = True
            log.warning(
                "demo: broker unreachable or connection lost (%s); retrying in %.1fs",
                _describe(exc),
                wait,
            )

        await run_reconnecting(self._session_until_stopped, self.stop, on_lost=lost, done=self.done)
        return self.published

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when `stop` is set."""
        await sleep_unless_stopped(self.stop, seconds)

    async def _session_until_stopped(self) -> None:
        """Run one session; once `stop` is set it gets a moment to finish, then is cancelled.

        A session finishes by itself soon after `stop`, unless it hangs in a connect or a
        declare on a half-dead network: shutting down must not wait for that.
        """
        session = asyncio.create_task(self._session(), name="eventscope-demo-session")
        stopped = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait([session, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not session.done():
                await asyncio.wait([session], timeout=STOP_GRACE)
        finally:
            stopped.cancel()
            session.cancel()  # no-op when it is done
            await asyncio.gather(session, return_exceptions=True)
        if not session.cancelled():
            session.result()  # a lost broker surfaces here

    async def _session(self) -> None:
        connection = await connect(self.amqp_url, self.connection_name)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=PREFETCH)
            exchange, shipping = await declare(channel, self.topology)
            if self.retrying:
                log.info("demo: broker reachable again; %d published so far", self.published)
            self.retrying = False
            self.unsettled.clear()  # the broker redelivers them to this session's consumer
            async with asyncio.TaskGroup() as group:
                consumer = group.create_task(
                    self._consume(shipping), name="eventscope-demo-consumer"
                )
                await self._publish(exchange)
                await self._drain()
                consumer.cancel()
        finally:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _pace(self) -> None:
        """Wait for the next slot of `rate`; late slots are skipped, not caught up in a burst."""
        if self.interval <= 0:
            await asyncio.sleep(0)  # let the consumer run
            return
        loop = asyncio.get_running_loop()
        if self.next_at > loop.time():
            await self._sleep(self.next_at - loop.time())
        self.next_at = max(self.next_at, loop.time()) + self.interval

    async def _publish(self, exchange: aio_pika.abc.AbstractExchange) -> None:
        while not self.done():
            await self._pace()
            if self.stop.is_set():
                return
            if self.pending is None:
                self.pending = next(self.events)
            event = self.pending
            if event.routing_key == NATIVE_FAILURE_KEY:  # before: our consumer may see it first
                self.unsettled.add(event.message_id)
                self.settled.clear()
            await exchange.publish(
                to_message(event),
                routing_key=event.routing_key,
                mandatory=False,
                timeout=PUBLISH_TIMEOUT,
            )
            self.pending = None
            self.published += 1

    async def _drain(self) -> None:
        """After the last event, give our consumer a moment to settle what it still holds."""
        if self.stop.is_set() or not self.unsettled:
            return
        waiters = [
            asyncio.ensure_future(self.stop.wait()),
            asyncio.ensure_future(self.settled.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=DRAIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _consume(self, queue: aio_pika.abc.AbstractQueue) -> None:
        """Shipping: reject what is marked to fail (the broker dead-letters it), ack the rest.
        A message that died before (it carries `x-death`: a replay of its dead letter) is
        acked, so a replay from eventscope succeeds."""
        async with queue.iterator() as messages:
            async for message in messages:
                headers = message.headers or {}
                if headers.get(FAIL_HEADER) is True and "x-death" not in headers:
                    await message.reject(requeue=False)
                else:
                    await message.ack()
                self.unsettled.discard(message.message_id or "")
                if not self.unsettled:
                    self.settled.set()
        raise ConnectionError("the broker closed the demo's shipping consumer")
