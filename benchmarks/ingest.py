"""Ingest throughput: eventscope's recorder against a bare aiormq consumer, in one process.

Each phase drains a freshly filled queue of N seed-shaped `order.created` events (~300 bytes
JSON, persistent, published with confirms; filling is not timed):

- baseline: aiormq only: prefetch 2000, manual acks, `ack(multiple=True)` every 500 deliveries;
- sqlite:   the recorder storing into a fresh SQLite file (temp dir);
- postgres: the recorder storing into a fresh Postgres database, dropped afterwards.

Every phase is timed from before it opens its broker connection until the last event is acked
(baseline) or committed (`status.stored == N`, polled every 10 ms). The recorder's throughput is
reported as a ratio to the baseline measured in the same run, because the machine is noisy.
RSS (VmRSS) is sampled every 0.5 s during the recorder phases.

    .venv/bin/python benchmarks/ingest.py                      # N = 100,000, all phases
    .venv/bin/python benchmarks/ingest.py --events 5000 --phases baseline,sqlite --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from sqlalchemy import text
from sqlalchemy.engine import make_url

from eventscope.backend.ingest.topology import TapSpec
from eventscope.backend.runtime import Runtime
from eventscope.backend.settings import load_settings
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.eventstore import EventStore

PHASES = ("baseline", "sqlite", "postgres")
TARGETS = {"sqlite": 0.8, "postgres": 0.6}
ROUTING_KEY = "order.created"
PREFETCH = 2000
ACK_EVERY = 500
PUBLISH_CHUNK = 1000
POLL = 0.01
RSS_INTERVAL = 0.5

log = logging.getLogger("benchmarks.ingest")


def say(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- workload -----------------------------------------------------------------------------------


def make_event(i: int) -> tuple[str, bytes]:
    """One OrderCreated event shaped like the seed's (event design + event store examples)."""
    event_id = f"evt_{uuid.uuid4().hex[:12]}"
    order_id = f"order_{i}"
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    event = {
        "id": event_id,
        "type": "order.created",
        "timestamp": now,
        "data": {
            "orderId": order_id,
            "userId": f"user_{i % 9973}",
            "total": round(10 + (i % 9000) / 100, 2),
            "items": [{"sku": f"SKU-{i % 500}", "qty": 1 + i % 3}],
        },
        "metadata": {
            "source": "order-service",
            "version": "1.0",
            "correlationId": f"req_{uuid.uuid4().hex[:8]}",
        },
        "aggregateId": order_id,
        "aggregateType": "Order",
        "eventType": "OrderCreated",
        "version": 1,
    }
    return event_id, json.dumps(event, separators=(",", ":")).encode()


def tap_arguments(max_length: int) -> dict[str, Any]:
    """The recorder's tap-queue arguments, so that our declaration and its own agree."""
    return TapSpec("unused", max_length, "classic").arguments()


async def fill(
    channel: aio_pika.abc.AbstractChannel,
    exchange: aio_pika.abc.AbstractExchange,
    queue_name: str,
    arguments: dict[str, Any],
    n: int,
) -> float:
    """Declare `queue_name` bound `#`, publish N events with confirms; return the seconds taken."""
    queue = await channel.declare_queue(queue_name, durable=True, arguments=arguments)
    await queue.bind(exchange, routing_key="#")
    started = time.perf_counter()
    for start in range(0, n, PUBLISH_CHUNK):
        messages = []
        for i in range(start, min(n, start + PUBLISH_CHUNK)):
            event_id, body = make_event(i)
            messages.append(
                aio_pika.Message(
                    body,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=event_id,
                )
            )
        await asyncio.gather(*(exchange.publish(m, routing_key=ROUTING_KEY) for m in messages))
    depth = await queue_depth(channel, queue_name)
    if depth != n:
        raise RuntimeError(f"fill: {queue_name} holds {depth} messages, expected {n}")
    return time.perf_counter() - started


async def queue_depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    declared = await channel.declare_queue(name, passive=True)
    return int(declared.declaration_result.message_count or 0)


# -- measurement helpers ------------------------------------------------------------------------


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class RssSampler:
    samples: list[tuple[float, int]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        started = time.perf_counter()

        async def sample() -> None:
            while True:
                await asyncio.sleep(RSS_INTERVAL)
                self.samples.append((round(time.perf_counter() - started, 2), rss_kib()))

        self.samples.append((0.0, rss_kib()))

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.samples.append((round(time.perf_counter() - started, 2), rss_kib()))

    def summary(self) -> dict[str, int]:
        values = [kib for _, kib in self.samples]
        return {"start_kib": values[0], "peak_kib": max(values), "end_kib": values[-1]}


@dataclass
class Result:
    phase: str
    events: int
    seconds: float | None = None
    events_per_s: float | None = None
    ratio: float | None = None
    target: float | None = None
    verdict: str | None = None
    fill_seconds: float | None = None
    stored_in_db: int | None = None
    left_in_queue: int | None = None
    rss: dict[str, int] | None = None
    rss_samples: list[tuple[float, int]] | None = None
    search_caught_up_s: float | None = None  # after the last commit, untimed
    error: str | None = None


# -- phases -------------------------------------------------------------------------------------


async def drain_bare(amqp_url: str, queue: str, n: int, limit_s: float) -> float:
    """Consume N deliveries with aiormq alone; return seconds from connect to the final ack."""
    done = asyncio.Event()
    count = 0
    highest = acked = 0

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        nonlocal count, highest, acked
        count += 1
        highest = max(highest, message.delivery.delivery_tag)
        if (count % ACK_EVERY == 0 or count == n) and highest > acked:
            acked = highest
            await message.channel.basic_ack(highest, multiple=True)
        if count >= n:
            done.set()

    started = time.perf_counter()
    connection = await aiormq.connect(
        amqp_url, client_properties={"connection_name": "bench-baseline"}
    )
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=PREFETCH)
        await channel.basic_consume(queue, on_message, no_ack=False)
        async with asyncio.timeout(limit_s):
            await done.wait()
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return elapsed


async def run_recorder(
    amqp_url: str,
    database_url: str,
    exchange: str,
    tap_queue: str,
    n: int,
    max_length: int,
    limit_s: float,
    sampler: RssSampler,
    search_index: bool,
) -> tuple[float, int, float | None]:
    """Start a recorder on a pre-filled tap queue; seconds until N are committed, rows in DB,
    and (untimed, when the search indexer runs) seconds more until search had caught up."""
    settings = load_settings(
        os.environ,  # EVENTSCOPE_PREFETCH, EVENTSCOPE_BATCH_* … tune the recorder under test
        {
            "amqp_url": amqp_url,
            "database_url": database_url,
            "exchanges": (exchange,),
            "tap_queue": tap_queue,
            "tap_queue_max_length": max_length,
        },
    )
    # The runtime `eventscope ingest` runs: store, change feed, recorder (no demo).
    runtime = Runtime(settings, demo=False, connection_name="bench-recorder")
    recorder = runtime.recorder
    assert recorder is not None
    if not search_index:  # the ablation: what the work kept behind ingest costs it
        runtime.indexer.run = _idle  # type: ignore[method-assign]
        runtime.catalog.run = _idle  # type: ignore[method-assign]
        runtime.aggregate_catalog.run = _idle  # type: ignore[method-assign]
    caught_up: float | None = None
    gc.collect()
    async with sampler.running():
        started = time.perf_counter()
        async with runtime.running():
            deadline = started + limit_s
            while recorder.status.stored < n:
                if time.perf_counter() > deadline:
                    raise TimeoutError(
                        f"recorder stored {recorder.status.stored}/{n} in {limit_s:.0f}s "
                        f"(db error: {recorder.status.database_error}, "
                        f"broker error: {recorder.status.broker_error})"
                    )
                await asyncio.sleep(POLL)
            elapsed = time.perf_counter() - started
            if search_index:
                while runtime.indexer.indexed < n:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"search indexed {runtime.indexer.indexed}/{n}")
                    await asyncio.sleep(POLL)
                caught_up = time.perf_counter() - started - elapsed
    store = EventStore(database_url)
    try:
        stored = await store.events.count()
    finally:
        await store.close()
    return elapsed, stored, caught_up


async def _idle(stop: asyncio.Event) -> None:
    await stop.wait()


@contextlib.asynccontextmanager
async def postgres_database(base_url: str, run_id: str) -> AsyncIterator[str]:
    """A fresh database for this run (dropped on exit); yields its SQLAlchemy URL."""
    url = make_url(base_url)
    name = f"eventscope_bench_{run_id}"
    admin = create_engine(
        url.set(database=url.database or "postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                try:
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except Exception:  # Postgres < 13 has no FORCE; our engines are disposed anyway
                    await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        await admin.dispose()


# -- orchestration ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.n: int = args.events
        self.run_id = f"{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"
        self.exchange_name = f"eventscope.bench.{self.run_id}"
        self.max_length = max(1_000_000, 2 * self.n)
        self.timeout = args.timeout or max(120.0, self.n / 500)
        self.tmp = Path(tempfile.mkdtemp(prefix="eventscope-bench-"))

    def queue_name(self, phase: str) -> str:
        return f"{self.exchange_name}.{phase}"

    async def run(self, phases: list[str]) -> list[Result]:
        connection = await aio_pika.connect(
            self.args.amqp_url, client_properties={"connection_name": "bench-publisher"}
        )
        results: list[Result] = []
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            try:
                for phase in phases:
                    result = Result(phase, self.n)
                    results.append(result)
                    queue = self.queue_name(phase)
                    try:
                        say(f"[{phase}] filling {queue} with {self.n:,} events …")
                        result.fill_seconds = round(
                            await fill(
                                channel,
                                exchange,
                                queue,
                                tap_arguments(self.max_length),
                                self.n,
                            ),
                            2,
                        )
                        say(f"[{phase}] filled in {result.fill_seconds}s; draining …")
                        await self.measure(phase, queue, result)
                        result.left_in_queue = await queue_depth(channel, queue)
                    except Exception as exc:
                        result.error = f"{type(exc).__name__}: {exc}"
                        say(f"[{phase}] ERROR {result.error}")
                        if channel.is_closed:
                            await channel.reopen()
                    finally:
                        with contextlib.suppress(Exception):
                            await channel.queue_delete(queue)
                    if result.events_per_s:
                        say(f"[{phase}] {result.events_per_s:,.0f} events/s")
            finally:
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(self.exchange_name)
        finally:
            await connection.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.judge(results)
        return results

    async def measure(self, phase: str, queue: str, result: Result) -> None:
        if phase == "baseline":
            seconds = await drain_bare(self.args.amqp_url, queue, self.n, self.timeout)
        else:
            sampler = RssSampler()
            try:
                if phase == "sqlite":
                    url = f"sqlite+aiosqlite:///{self.tmp / 'bench.db'}"
                    seconds, result.stored_in_db, caught_up = await self.recorder(
                        url, queue, sampler
                    )
                else:
                    async with postgres_database(self.args.postgres_url, self.run_id) as url:
                        seconds, result.stored_in_db, caught_up = await self.recorder(
                            url, queue, sampler
                        )
                if caught_up is not None:
                    result.search_caught_up_s = round(caught_up, 2)
            finally:
                if sampler.samples:
                    result.rss = sampler.summary()
                    result.rss_samples = sampler.samples
            if result.stored_in_db != self.n:
                result.error = f"database holds {result.stored_in_db} events, expected {self.n}"
        result.seconds = round(seconds, 3)
        result.events_per_s = round(self.n / seconds, 1)

    async def recorder(
        self, url: str, queue: str, sampler: RssSampler
    ) -> tuple[float, int, float | None]:
        run = run_recorder(
            self.args.amqp_url,
            url,
            self.exchange_name,
            queue,
            self.n,
            self.max_length,
            self.timeout,
            sampler,
            self.args.catch_up == "on",
        )
        if not self.args.profile:
            return await run
        return await profiled(run, Path(self.args.profile) / f"{queue.rsplit('.', 1)[-1]}")

    @staticmethod
    def judge(results: list[Result]) -> None:
        baseline = next((r for r in results if r.phase == "baseline" and r.events_per_s), None)
        for r in results:
            if r.phase not in TARGETS:
                continue
            r.target = TARGETS[r.phase]
            if r.error or not r.events_per_s:
                r.verdict = "ERROR"
            elif baseline is None or not baseline.events_per_s:
                r.verdict = "n/a (no baseline)"
            else:
                r.ratio = round(r.events_per_s / baseline.events_per_s, 3)
                r.verdict = "PASS" if r.ratio >= r.target else "MISS"


async def profiled(coro: Any, stem: Path) -> Any:
    """Run `coro` under pyinstrument when installed (else cProfile); write reports to `stem.*`."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        try:
            return await coro
        finally:
            profile.disable()
            profile.dump_stats(f"{stem}.pstats")
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
            say(f"profile written to {stem}.pstats")
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        return await coro
    finally:
        profiler.stop()
        write_reports(profiler, stem)


def write_reports(profiler: Any, stem: Path) -> None:
    Path(f"{stem}.html").write_text(profiler.output_html())
    Path(f"{stem}.txt").write_text(profiler.output_text(unicode=True, show_all=False))
    say(f"profile written to {stem}.html and {stem}.txt")


# -- reporting ----------------------------------------------------------------------------------


def fmt(value: Any, spec: str) -> str:
    """`value` formatted with `spec` (which starts with a width), or a dash of that width."""
    width = int("".join(c for c in spec.split(".")[0].split(",")[0] if c.isdigit()) or 0)
    return f"{'-':>{width}}" if value is None else format(value, spec)


def report(results: list[Result], bench: Bench, out: Callable[[str], None]) -> None:
    out(
        f"eventscope ingest benchmark: {bench.n:,} events of ~{len(make_event(99_999)[1])}"
        f" bytes, prefetch {PREFETCH}, loop {bench.args.loop}, python {sys.version.split()[0]}"
    )
    if bench.args.profile:
        out("NOTE: profiled run: recorder numbers include profiler overhead")
    out(
        f"{'phase':<9} {'seconds':>8} {'events/s':>10} {'ratio':>6} {'target':>7}  verdict   "
        "RSS MiB start/peak/end"
    )
    for r in results:
        rss = "-"
        if r.rss:
            rss = "/".join(f"{r.rss[k] / 1024:.0f}" for k in ("start_kib", "peak_kib", "end_kib"))
        target = f"≥{r.target}" if r.target else "-"
        verdict = r.verdict or ("ERROR" if r.error else "ok")
        out(
            f"{r.phase:<9} {fmt(r.seconds, '8.2f')} {fmt(r.events_per_s, '10,.0f')} "
            f"{fmt(r.ratio, '6.2f')} {target:>7}  {verdict:<9} {rss}"
        )
    for r in results:
        if r.error:
            out(f"ERROR [{r.phase}]: {r.error}")
        elif r.left_in_queue:
            out(f"note [{r.phase}]: {r.left_in_queue} messages left in the queue after stop")
        if r.search_caught_up_s is not None:
            out(f"note [{r.phase}]: search index caught up {r.search_caught_up_s:.1f}s later")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per phase")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated phases")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--postgres-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/",
        help="server to create the run's database on (the URL's database is used to connect)",
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--catch-up",
        choices=("on", "off"),
        default="on",
        help="off: the ablation without the work kept behind ingest (search index, type and "
        "aggregate catalogs), to see what it costs ingest",
    )
    parser.add_argument("--timeout", type=float, default=0, help="per-phase limit in seconds")
    parser.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    parser.add_argument(
        "--profile", metavar="DIR", help="profile the recorder phases, write reports to DIR"
    )
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit 2 when a target is missed"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the recorder's logs")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if args.events < 1:
        parser.error("--events must be at least 1")
    args.phases = phases
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    bench = Bench(args)
    if args.loop == "uvloop":
        import uvloop

        results = uvloop.run(bench.run(args.phases))
    else:
        results = asyncio.run(bench.run(args.phases))
    if args.json:
        payload = {
            "events": bench.n,
            "event_bytes": len(make_event(99_999)[1]),
            "loop": args.loop,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "profiled": bool(args.profile),
            "results": [asdict(r) for r in results],
        }
        print(json.dumps(payload, indent=2))
    else:
        report(results, bench, print)
    if any(r.error for r in results):
        return 1
    if args.fail_on_miss and any(r.verdict == "MISS" for r in results):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
