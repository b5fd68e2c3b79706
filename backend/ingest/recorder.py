"""The recorder: tap queue → batches → one transaction → cumulative ack.

aio-pika owns the connection and the topology; deliveries are consumed through the underlying
aiormq channel, because aio-pika's per-message machinery costs a third of the throughput, and
SQLite batches go through one dedicated writer thread (see docs/performance.md). Invariants:

- nothing is acked before its batch is committed, and an ack with `multiple=True` covers only
  tags below which everything is committed (`AckWatermark`);
- a database that is down keeps the batch, retried with backoff; nothing is nacked. The
  recorder holds at most `prefetch` deliveries and about `max_held_bytes` bytes: at the byte
  bound it cancels its consumer and consumes again once a commit frees room (`flow.py`); a
  batch the database refuses is split to isolate the row, which is stored reduced (`Committer`);
- no message can stop it: frames pamqp cannot decode are read leniently (`amqp_lenient`);
- a delivery whose routing key matches `exclude_routing_keys` is not stored: its tag joins the
  watermark as if committed (acked once every tag below it is committed, by the writer task,
  the one place that acks) and it is counted in the status;
- a lost connection drops the uncommitted deliveries of that channel, including a batch still
  being retried (the broker redelivers them, flagged) and reconnects with backoff.

Tap redeliveries (docs/architecture.md, "The recorder's guarantees"): each channel session is a
*holder* with a random key and an exclusive queue `eventscope.recorder.<key>` on its
connection, which the broker deletes when the connection goes. Every batch lists the
fingerprints it took in `pending_acks`, in its own transaction (backend/store/writer.py); the
listing is cleared once the broker confirmed the ack (a `basic.qos` round trip after the ack on
the same channel). A redelivered delivery is skipped only when a listing of a holder that is
gone (its queue no longer exists) still holds its fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq

from eventscope.backend import amqp_lenient
from eventscope.backend.amqp_session import connect, run_reconnecting
from eventscope.backend.envelope import Delivery, properties_from_header, to_row
from eventscope.backend.extraction import extractor_for
from eventscope.backend.ingest.acks import AckWatermark
from eventscope.backend.ingest.committer import CommitFailure, Committer, new_batch_key
from eventscope.backend.ingest.flow import HeldBytes, held_size
from eventscope.backend.ingest.status import RecorderStatus
from eventscope.backend.ingest.topology import TapSpec, bind_everything, declare_tap_queue
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.writer import BatchResult, Ledger
from eventscope.backend.topic import TopicPattern, any_matches

log = logging.getLogger(__name__)

STATUS_INTERVAL = 2.0
HOLDER_QUEUE_PREFIX = "eventscope.recorder."
GONE_RECHECK = 0.1  # seconds between checks of a holder that still looks connected
GONE_WAIT = 2.0  # a holder connected this long after its delivery came back is alive
PENDING_TTL = dt.timedelta(hours=24)  # listings older than this are dropped, see _expiry
EXPIRE_GRACE = 600.0  # ... by a session that has been committing for this long
EXPIRE_EVERY = 600.0
TIDY_RETRY = 5.0  # seconds before an idle clean-up that failed is tried again
HEADER_ALLOWANCE = 128 * 1024  # properties and headers of one delivery, at most (frame size)


def holder_queue(holder: int) -> str:
    """The exclusive queue that exists exactly as long as holder `holder`'s connection."""
    return f"{HOLDER_QUEUE_PREFIX}{holder:016x}"


@dataclass
class _Session:
    """One channel's consumption: its tags are meaningless on any other channel."""

    channel: Any  # aiormq channel
    connection: aio_pika.abc.AbstractConnection
    holder: int
    queue: str
    watermark: AckWatermark = field(default_factory=AckWatermark)
    rows: list[dict[str, Any]] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    excluded_tags: list[int] = field(default_factory=list)  # not stored: acked by the writer
    body_bytes: int = 0
    first_at: float = 0.0
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # dropped or stopping
    steer: asyncio.Event = field(default_factory=asyncio.Event)  # consumption may need a change
    consumer_tag: str | None = None  # None while no consumer runs (paused at the bound)
    window: int = 0  # prefetch count of the current (or last) consumer
    received: int = 0  # deliveries the current consumer brought
    consumers: int = 0  # consumers started on this channel
    window_hint: int = 1  # the delivery size that window was sized for
    qos: int = 1  # the channel's prefetch setting (re-sent to confirm acks)
    settings_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # qos + consume together
    unconfirmed: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    first_commit_at: float | None = None


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
        self.status = RecorderStatus(held_bound=settings.max_held_bytes)
        self._session: _Session | None = None
        self._batch_ready = asyncio.Event()
        self._max_events = settings.batch_max_events
        self._max_bytes = settings.batch_max_bytes
        self._max_body = settings.max_body_bytes
        self._window = settings.batch_max_wait_ms / 1000
        self._extractor = extractor_for(settings.extraction_rules)
        self._excluded = _exclusion(settings.exclude_routing_keys)
        self._committer = Committer(self._write_unlisted, store.ping, self._on_commit_error)
        self._held = HeldBytes(
            settings.max_held_bytes, settings.prefetch, settings.max_body_bytes + HEADER_ALLOWANCE
        )
        self._mark: Callable[[dict[str, Any]], None] | None = None  # a source's own row marks
        self._exclusive = False  # consume as the queue's only consumer
        self.queue = settings.tap_queue  # what this recorder consumes
        self._confirmed: list[int] = []  # batches whose ack the broker confirmed: to clear
        self._tidy_after = 0.0
        self._expired_at = time.monotonic()

    # -- hot path -------------------------------------------------------------------------

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        session = self._session
        if session is None or message.channel is not session.channel:
            return  # a late delivery from a channel we gave up: the broker redelivers it
        deliver: Any = message.delivery  # always Basic.Deliver on a consumer
        if self._excluded is not None and self._excluded(deliver.routing_key):
            self._exclude(session, deliver.delivery_tag)
            return
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
                extractor=self._extractor,
            )
        except Exception:  # envelope is defensive; this is the last line, never lose ingest
            log.exception("could not describe delivery %s; storing it raw", deliver.delivery_tag)
            row = _raw_row(deliver, content, body, self._max_body)
        if self._mark is not None:
            self._mark(row)
        if row.get("problem"):
            self.status.undecodable += 1
            self.status.note_error(f"message on {row['routing_key']!r}: {row['problem']}")
        if not session.rows:
            session.first_at = time.monotonic()
        size = held_size(row)
        session.rows.append(row)
        session.tags.append(deliver.delivery_tag)
        session.sizes.append(size)
        session.body_bytes += len(body)
        held = self._held
        held.add(size)
        self.status.holding += 1
        self.status.held_bytes = held.held
        if session.consumer_tag is not None:
            session.received += 1
            if (
                held.held >= held.bound
                or session.received == session.window
                or (size > 2 * session.window_hint and session.window > 1)
            ):
                session.steer.set()  # at the bound, window used up, or larger than sized for
        if len(session.rows) >= self._max_events or session.body_bytes >= self._max_bytes:
            self._batch_ready.set()

    def _exclude(self, session: _Session, tag: int) -> None:
        """Not stored, on purpose: the writer acks it with the committed tags around it."""
        session.excluded_tags.append(tag)
        self.status.excluded += 1
        if session.consumer_tag is not None:
            session.received += 1
            if session.received == session.window:
                session.steer.set()
        if len(session.excluded_tags) >= self._max_events:
            self._batch_ready.set()

    # -- writer ---------------------------------------------------------------------------

    def _take_batch(self, session: _Session) -> tuple[list[dict[str, Any]], list[int], int]:
        n = min(len(session.rows), self._max_events)
        rows, tags, size = session.rows[:n], session.tags[:n], sum(session.sizes[:n])
        del session.rows[:n], session.tags[:n], session.sizes[:n]
        session.body_bytes = sum(r["body_size"] for r in session.rows) if session.rows else 0
        session.first_at = time.monotonic()
        return rows, tags, size

    def _release(self, count: int, size: int) -> None:
        self.status.holding = max(0, self.status.holding - count)
        self._held.release(size)
        self.status.held_bytes = self._held.held
        if self._session is not None:
            self._session.steer.set()  # room freed: consumption may resume or widen

    async def _writer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            session = self._session
            if session is not None and session.excluded_tags:
                tags, session.excluded_tags = session.excluded_tags, []
                await self._ack(session, tags)  # once per turn: batches are never starved
                self.status.note_excluded_acked()
                session = self._session
            if session is None or not session.rows:
                if not self.status.tap_depth:
                    self.status.note_idle()
                await self._tidy(session)
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
            rows, tags, size = self._take_batch(session)
            reduced_before = self._committer.reduced_rows
            try:
                result = await self._commit(session, rows)
            finally:
                self._release(len(rows), size)
            if result is None:
                if stop.is_set():
                    return
                continue  # the session was lost: the broker redelivers these, flagged
            self.status.reduced += self._committer.reduced_rows - reduced_before
            self.status.record_commit(result.stored, result.skipped_redeliveries, result.duplicates)
            if result.stored:
                self.on_commit()
            if session.first_commit_at is None:
                session.first_commit_at = time.monotonic()
            if result.batches:
                session.unconfirmed.append((max(tags), result.batches))
            await self._ack(session, tags)

    async def _commit(self, session: _Session, rows: list[dict[str, Any]]) -> BatchResult | None:
        """Commit one batch of `session` (None when the session is lost or stopping first)."""
        clear = tuple(self._confirmed)
        expire = self._expiry(session)

        async def write(part: Sequence[dict[str, Any]], key: int, retry: bool) -> BatchResult:
            try:
                released = await self._released(session, part)
            except Exception as exc:  # retried (never split): nothing was written
                raise ConnectionError(f"could not look up pending batches: {exc}") from exc
            if session.gone.is_set():  # a check cut short: the broker redelivers these anyway
                raise ConnectionError("the broker session ended")
            ledger = Ledger(session.holder, key, released, clear, retry, expire)
            return await self.store.write(part, ledger)

        result = await self._committer.commit(rows, session.gone, write)
        if result is not None:
            self._cleared(clear, expire)
        return result

    async def _write_unlisted(
        self, rows: Sequence[dict[str, Any]], key: int, retry: bool
    ) -> BatchResult:
        """The committer's default store, never used by the recorder itself (every batch is
        written through `_commit`): rows without a pending listing."""
        return await self.store.write(rows)

    def _cleared(self, clear: tuple[int, ...], expire: dt.datetime | None) -> None:
        if clear:
            done = set(clear)
            self._confirmed = [b for b in self._confirmed if b not in done]
        if expire is not None:
            self._expired_at = time.monotonic()

    def _expiry(self, session: _Session | None) -> dt.datetime | None:
        """Listings older than `PENDING_TTL` are dropped, by a session that has been committing
        for `EXPIRE_GRACE` (the redeliveries a gone holder left come first in the queue, so by
        then they have been delivered to someone), at most every `EXPIRE_EVERY`."""
        now = time.monotonic()
        if (
            session is None
            or session.first_commit_at is None
            or now - session.first_commit_at < EXPIRE_GRACE
            or now - self._expired_at < EXPIRE_EVERY
        ):
            return None
        return dt.datetime.now(dt.UTC) - PENDING_TTL

    async def _tidy(self, session: _Session | None) -> None:
        """While idle: clear the listings of batches whose ack was confirmed (a crash now would
        otherwise leave them to absorb a later genuine duplicate), and expire old ones."""
        expire = self._expiry(session)
        if (not self._confirmed and expire is None) or time.monotonic() < self._tidy_after:
            return
        clear = tuple(self._confirmed)
        try:
            await self.store.clear_pending(clear, expire)
        except Exception as exc:  # the database is down: the next batch or idle turn retries
            log.info("could not clear confirmed batches yet: %s", exc)
            self._tidy_after = time.monotonic() + TIDY_RETRY
            return
        self._cleared(clear, expire)

    async def _released(self, session: _Session, rows: Sequence[dict[str, Any]]) -> frozenset[int]:
        """The holders that are gone among those whose pending listings hold a fingerprint of a
        redelivered row (only those listings may absorb a redelivery)."""
        redelivered = {row["fingerprint"] for row in rows if row["redelivered"]}
        if not redelivered:
            return frozenset()
        holders = await self.store.pending_holders(redelivered, session.holder)
        if not holders:
            return frozenset()
        return await self._gone(session, holders)

    async def _gone(self, session: _Session, holders: Collection[int]) -> frozenset[int]:
        """Which `holders` the broker says are gone. A holder whose queue still exists is
        rechecked for a moment: the broker may requeue a closed channel's deliveries just
        before it deletes its connection's exclusive queues."""
        gone: set[int] = set()
        deadline = time.monotonic() + GONE_WAIT
        while True:
            for holder in set(holders) - gone:
                if await self._holder_gone(session, holder):
                    gone.add(holder)
            if len(gone) == len(holders) or time.monotonic() > deadline or session.gone.is_set():
                return frozenset(gone)
            await asyncio.sleep(GONE_RECHECK)

    @staticmethod
    async def _holder_gone(session: _Session, holder: int) -> bool:
        """True when the broker says holder `holder`'s queue does not exist; raises when the
        broker cannot be asked (the batch is retried, or dropped with its session)."""
        channel = await session.connection.channel(publisher_confirms=False)
        try:
            await channel.declare_queue(holder_queue(holder), passive=True)
            return False
        except aiormq.exceptions.ChannelNotFoundEntity:
            return True
        except Exception:  # locked: another connection's exclusive queue, its holder is alive
            return False
        finally:
            if not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()

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
            # A round trip on the same channel: once it returns, the broker has processed the
            # ack (frames on a channel are handled in order), so those batches need no listing.
            # It repeats the channel's prefetch setting, never between a change and a consume.
            async with session.settings_lock:
                await session.channel.basic_qos(prefetch_count=session.qos)
        except Exception as exc:  # channel gone: the broker redelivers, the listings absorb
            log.info("ack up to %s not confirmed (%s); those deliveries may come back", mark, exc)
            return
        confirmed = [key for tag, keys in session.unconfirmed if tag <= mark for key in keys]
        session.unconfirmed = [(tag, keys) for tag, keys in session.unconfirmed if tag > mark]
        self._confirmed.extend(confirmed)

    # -- consumption ----------------------------------------------------------------------

    async def _steer(self, session: _Session) -> None:
        """Keep one consumer whose window fits the room under the byte bound: cancel it at the
        bound (or when deliveries grew much larger than it was sized for), start one when there
        is room again, or a wider one when the room grew. Runs until the session ends."""
        while not session.gone.is_set():
            await session.steer.wait()
            session.steer.clear()
            held = self._held
            room = held.window()
            self.status.paused = room == 0  # at the bound: nothing more until a commit
            if session.consumer_tag is not None:
                # Deliveries grew: is the window now wide enough to pass the bound?
                grown = held.hint > 2 * session.window_hint
                too_wide = grown and session.window > 1 and session.window * held.hint > held.bound
                wider = not held.full and room >= 2 * session.window
                if not (held.full or too_wide or wider):
                    if grown:
                        session.window_hint = held.hint  # still fits: stop re-checking
                    continue
                log.debug(
                    "new consumer window: held %s of %s bytes, window %s (%s-byte deliveries)",
                    held.held,
                    held.bound,
                    session.window,
                    held.hint,
                )
                tag, session.consumer_tag = session.consumer_tag, None  # paused from now on
                await session.channel.basic_cancel(tag)
                # Deliveries the broker sent before its CancelOk are being handed to
                # _on_message: let them land before sizing the next window.
                await asyncio.sleep(0)
            await self._consume(session)

    async def _consume(self, session: _Session) -> None:
        """Start a consumer sized to the room left, or stay paused when there is none."""
        window = self._held.window()
        if window < 1:
            self.status.paused = True
            return
        async with session.settings_lock:
            if window != session.qos:
                session.qos = window
                await session.channel.basic_qos(prefetch_count=window)
            session.window, session.window_hint, session.received = window, self._held.hint, 0
            session.consumers += 1
            # Named before the call: deliveries can reach _on_message before it returns.
            tag = session.consumer_tag = f"eventscope-{session.holder:016x}-{session.consumers}"
            await session.channel.basic_consume(
                session.queue,
                self._on_message,
                no_ack=False,
                consumer_tag=tag,
                exclusive=self._exclusive,
            )
        self.status.paused = False

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
            self._drop_session()
            self._batch_ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        session.gone.set()
        session.steer.set()
        self._release(len(session.rows), sum(session.sizes))
        session.rows.clear()
        session.tags.clear()
        session.sizes.clear()
        session.excluded_tags.clear()
        self.status.paused = False

    async def _consume_until_lost(self, stop: asyncio.Event) -> None:
        settings = self.settings
        connection = await connect(settings.amqp_url, self.connection_name)
        steering: asyncio.Task[None] | None = None
        try:
            channel = await connection.channel(publisher_confirms=False)
            await self._source(connection, channel)
            holder = new_batch_key()
            await self._declare_holder(channel, holder)
            raw = await channel.get_underlay_channel()
            session = _Session(channel=raw, connection=connection, holder=holder, queue=self.queue)
            session.qos = max(1, self._held.window())
            await raw.basic_qos(prefetch_count=session.qos)
            self._session = session
            await self._consume(session)
            steering = asyncio.create_task(self._steer(session), name="eventscope-steering")
            self.status.broker_connected = True
            self.status.broker_error = None
            self._started()
            await self._watch(connection, session, steering, stop)
        finally:
            self._drop_session()
            if steering is not None:
                steering.cancel()
                with contextlib.suppress(BaseException):
                    await steering
            with contextlib.suppress(Exception):
                await connection.close()

    async def _source(
        self, connection: aio_pika.abc.AbstractConnection, channel: aio_pika.abc.AbstractChannel
    ) -> None:
        """The queue this recorder consumes: the tap queue, declared and bound to every
        recorded exchange."""
        settings = self.settings
        queue, mismatch = await declare_tap_queue(
            channel,
            TapSpec(settings.tap_queue, settings.tap_queue_max_length, settings.tap_queue_type),
        )
        self.status.tap_queue_args_mismatch = mismatch
        self.status.exchanges = await bind_everything(
            connection, channel, queue, settings.exchanges
        )

    def _started(self) -> None:
        log.info("recording %s into %s", ", ".join(self.settings.exchanges), self.queue)

    @staticmethod
    async def _declare_holder(channel: aio_pika.abc.AbstractChannel, holder: int) -> None:
        """The exclusive queue that tells other recorders this session is alive."""
        try:
            await channel.declare_queue(holder_queue(holder), exclusive=True, durable=False)
        except aiormq.exceptions.ChannelClosed as exc:
            log.warning(
                "could not declare %s (%s): other recorders sharing this database will take "
                "this one for gone",
                holder_queue(holder),
                exc,
            )
            await channel.reopen()

    async def _watch(
        self,
        connection: aio_pika.abc.AbstractConnection,
        session: _Session,
        steering: asyncio.Task[None],
        stop: asyncio.Event,
    ) -> None:
        """Poll the tap queue's depth until the channel closes or `stop` is set."""
        raw = session.channel
        status_channel = await connection.channel(publisher_confirms=False)
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                done, _ = await asyncio.wait(
                    [stop_wait, raw.closing, steering],
                    timeout=STATUS_INTERVAL,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if steering in done:
                    steering.result()  # raises what stopped it (the channel failed)
                    raise ConnectionError("consumption stopped")
                if raw.closing in done or raw.is_closed:
                    raise ConnectionError("channel closed by the broker or the network")
                if stop.is_set():
                    return
                await self._poll_depth(status_channel, session)
        finally:
            stop_wait.cancel()

    async def _poll_depth(self, channel: aio_pika.abc.AbstractChannel, session: _Session) -> None:
        declared = await channel.declare_queue(self.queue, passive=True)
        result = declared.declaration_result
        depth = int(result.message_count or 0)
        self.status.tap_depth = depth
        if self.queue == self.settings.tap_queue and depth >= self.settings.tap_queue_max_length:
            self.status.tap_bound_hit_at = time.time()
        if int(result.consumer_count or 0) == 0 and session.consumer_tag is not None:
            raise ConnectionError("the broker cancelled our consumer")


def _exclusion(patterns: Sequence[str]) -> Callable[[str], bool] | None:
    """Whether a routing key is excluded (None: nothing is); keys repeat, answers are cached."""
    if not patterns:
        return None
    parsed = [TopicPattern.parse(p) for p in patterns]

    @functools.lru_cache(maxsize=4096)
    def matches(routing_key: str) -> bool:
        return any_matches(parsed, routing_key)

    def excluded(routing_key: Any) -> bool:
        return isinstance(routing_key, str) and matches(routing_key)

    return excluded


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
