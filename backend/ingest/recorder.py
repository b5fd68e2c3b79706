"""The recorder: tap queue → batches → one transaction → cumulative ack.

aio-pika owns the connection and the topology; deliveries are consumed through the underlying
aiormq channel, because aio-pika's per-message machinery costs a third of the throughput, and
SQLite batches go through one dedicated writer thread (see docs/performance.md). Invariants:

- nothing is acked before its batch is committed, and an ack with `multiple=True` covers only
  tags below which everything is committed (`AckWatermark`);
- a database that is down keeps the batch, retried with backoff; the broker stops delivering
  once `prefetch` deliveries are held, so memory stays bounded and nothing is nacked; a batch
  the database refuses is split to isolate the row, which is stored reduced (`Committer`);
- no message can stop it: frames pamqp cannot decode are read leniently (`amqp_lenient`);
- a lost connection drops the uncommitted deliveries of that channel (the broker redelivers
  them, flagged, and the writer skips what was already stored) and reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq

from eventscope.backend import amqp_lenient
from eventscope.backend.amqp_session import connect, run_reconnecting
from eventscope.backend.envelope import Delivery, properties_from_header, to_row
from eventscope.backend.ingest.acks import AckWatermark
from eventscope.backend.ingest.committer import CommitFailure, Committer
from eventscope.backend.ingest.status import RecorderStatus
from eventscope.backend.ingest.topology import TapSpec, bind_everything, declare_tap_queue
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0


@dataclass
class _Session:
    """One channel's consumption: its tags are meaningless on any other channel."""

    channel: Any  # aiormq channel
    watermark: AckWatermark = field(default_factory=AckWatermark)
    rows: list[dict[str, Any]] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)
    body_bytes: int = 0
    first_at: float = 0.0


class Recorder:
    """Consumes the tap queue and stores every event exactly once. Run with `run(stop)`."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        *,
        connection_name: str = "eventscope-recorder",
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_commit = on_commit
        self.connection_name = connection_name
        amqp_lenient.install()  # before the first frame is read: no message may stop us
        self.status = RecorderStatus()
        self._session: _Session | None = None
        self._batch_ready = asyncio.Event()
        self._max_events = settings.batch_max_events
        self._max_bytes = settings.batch_max_bytes
        self._max_body = settings.max_body_bytes
        self._window = settings.batch_max_wait_ms / 1000
        self._committer = Committer(store.write, store.ping, self._on_commit_error)

    # -- hot path -------------------------------------------------------------------------

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        session = self._session
        if session is None or message.channel is not session.channel:
            return  # a late delivery from a channel we gave up: the broker redelivers it
        deliver: Any = message.delivery  # always Basic.Deliver on a consumer
        content = message.header
        props, headers = properties_from_header(content.properties)
        body = message.body
        undecodable = getattr(content, "undecodable", None)
        try:
            row = to_row(
                Delivery(
                    exchange=deliver.exchange,
                    routing_key=deliver.routing_key,
                    redelivered=bool(deliver.redelivered),
                    properties=props,
                    headers=headers,
                    body=body,
                    received_at=dt.datetime.now(dt.UTC),
                    raw_properties=getattr(content, "raw_properties", None),
                    problem=f"properties could not be decoded ({undecodable}); raw bytes kept"
                    if undecodable
                    else None,
                ),
                self._max_body,
            )
        except Exception:  # envelope is defensive; this is the last line, never lose ingest
            log.exception("could not describe delivery %s; storing it raw", deliver.delivery_tag)
            row = _raw_row(deliver, content, body, self._max_body)
        if row.get("problem"):
            self.status.undecodable += 1
            self.status.note_error(f"message on {row['routing_key']!r}: {row['problem']}")
        if not session.rows:
            session.first_at = time.monotonic()
        session.rows.append(row)
        session.tags.append(deliver.delivery_tag)
        session.body_bytes += len(body)
        self.status.holding += 1
        if len(session.rows) >= self._max_events or session.body_bytes >= self._max_bytes:
            self._batch_ready.set()

    # -- writer ---------------------------------------------------------------------------

    def _take_batch(self, session: _Session) -> tuple[list[dict[str, Any]], list[int]]:
        n = min(len(session.rows), self._max_events)
        rows, tags = session.rows[:n], session.tags[:n]
        del session.rows[:n], session.tags[:n]
        session.body_bytes = sum(r["body_size"] for r in session.rows) if session.rows else 0
        session.first_at = time.monotonic()
        return rows, tags

    async def _writer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            session = self._session
            if session is None or not session.rows:
                if not self.status.tap_depth:
                    self.status.note_idle()
                self._batch_ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_ready.wait(), timeout=self._window or 0.05)
                continue
            wait = self._window - (time.monotonic() - session.first_at)
            full = len(session.rows) >= self._max_events or session.body_bytes >= self._max_bytes
            if wait > 0 and not full:
                self._batch_ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_ready.wait(), timeout=wait)
                continue
            rows, tags = self._take_batch(session)
            reduced_before = self._committer.reduced_rows
            result = await self._committer.commit(rows, stop)
            if result is None:
                return
            self.status.reduced += self._committer.reduced_rows - reduced_before
            self.status.holding = max(0, self.status.holding - len(rows))
            self.status.record_commit(result.stored, result.skipped_redeliveries, result.duplicates)
            if result.stored:
                self.on_commit()
            await self._ack(session, tags)

    def _on_commit_error(self, failure: CommitFailure | None) -> None:
        if failure is None:
            self.status.set_database_error(None)
        elif failure.transient:
            self.status.set_database_error(failure.message)
        else:
            self.status.note_error(f"database refused a batch: {failure.message}")

    async def _ack(self, session: _Session, tags: list[int]) -> None:
        mark = session.watermark.commit(tags)
        if mark is None or session is not self._session:
            return
        try:
            await session.channel.basic_ack(mark, multiple=True)
        except Exception as exc:  # channel gone: the broker redelivers, the writer skips
            log.info("ack up to %s not sent (%s); those deliveries will be redelivered", mark, exc)

    # -- connection -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Record until `stop` is set, reconnecting to the broker for as long as it takes."""
        writer = asyncio.create_task(self._writer(stop), name="eventscope-writer")

        def lost(exc: BaseException, wait: float) -> None:
            self.status.broker_error = f"{type(exc).__name__}: {exc}"[:300] or "unreachable"
            self.status.note_error(f"broker: {self.status.broker_error}")
            log.warning("broker unreachable (%s); retrying in %.1fs", exc, wait)

        def ended() -> None:
            self.status.broker_connected = False
            self._drop_session()

        try:
            await run_reconnecting(
                lambda: self._consume_until_lost(stop), stop, on_lost=lost, on_ended=ended
            )
        finally:
            stop.set()
            self._batch_ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _drop_session(self) -> None:
        if self._session is not None:
            self.status.holding = max(0, self.status.holding - len(self._session.rows))
        self._session = None

    async def _consume_until_lost(self, stop: asyncio.Event) -> None:
        settings = self.settings
        connection = await connect(settings.amqp_url, self.connection_name)
        try:
            channel = await connection.channel(publisher_confirms=False)
            queue, mismatch = await declare_tap_queue(
                channel,
                TapSpec(settings.tap_queue, settings.tap_queue_max_length, settings.tap_queue_type),
            )
            self.status.tap_queue_args_mismatch = mismatch
            self.status.exchanges = await bind_everything(
                connection, channel, queue, settings.exchanges
            )
            raw = await channel.get_underlay_channel()
            await raw.basic_qos(prefetch_count=settings.prefetch)
            self._session = _Session(channel=raw)
            await raw.basic_consume(settings.tap_queue, self._on_message, no_ack=False)
            self.status.broker_connected = True
            self.status.broker_error = None
            log.info("recording %s into %s", ", ".join(settings.exchanges), settings.tap_queue)
            await self._watch(connection, raw, stop)
        finally:
            self._drop_session()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _watch(
        self, connection: aio_pika.abc.AbstractConnection, raw: Any, stop: asyncio.Event
    ) -> None:
        """Poll the tap queue's depth until the channel closes or `stop` is set."""
        status_channel = await connection.channel(publisher_confirms=False)
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                done, _ = await asyncio.wait(
                    [stop_wait, raw.closing],
                    timeout=STATUS_INTERVAL,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if raw.closing in done or raw.is_closed:
                    raise ConnectionError("channel closed by the broker or the network")
                if stop.is_set():
                    return
                await self._poll_depth(status_channel)
        finally:
            stop_wait.cancel()

    async def _poll_depth(self, channel: aio_pika.abc.AbstractChannel) -> None:
        declared = await channel.declare_queue(self.settings.tap_queue, passive=True)
        result = declared.declaration_result
        depth = int(result.message_count or 0)
        self.status.tap_depth = depth
        if depth >= self.settings.tap_queue_max_length:
            self.status.tap_bound_hit_at = time.time()
        if int(result.consumer_count or 0) == 0:
            raise ConnectionError("the broker cancelled our consumer")


def _raw_row(deliver: Any, content: Any, body: bytes, max_body: int) -> dict[str, Any]:
    """Fallback row when interpreting failed: raw bytes and delivery fields only."""
    bare = Delivery(
        exchange=deliver.exchange if isinstance(deliver.exchange, str) else "",
        routing_key=deliver.routing_key if isinstance(deliver.routing_key, str) else "",
        redelivered=bool(deliver.redelivered),
        properties={},
        headers=None,
        body=body,
        received_at=dt.datetime.now(dt.UTC),
        raw_properties=getattr(content, "raw_properties", None),
        problem="could not be interpreted; stored raw",
    )
    return to_row(bare, max_body, interpret=False)
