"""Bulk replay throughput against a bare aio-pika confirmed publish of the same messages.

Stores N native dead letters (default 10,000; ~360-byte seed-style bodies, an `x-death` naming
a bench queue, raw property bytes as the recorder keeps them) in a fresh SQLite file and a
fresh Postgres database, then, in one run:

- `baseline`: aio-pika publishes the same N bodies with the same properties to the bench queue
  on a confirming channel, `WINDOW` outstanding confirms at a time (`asyncio.gather`), mandatory;
- `sqlite`, `postgres`: eventscope's bulk replay of all N (`BulkReplays`, unthrottled: rate 0)
  from the start of the action to the batch finished — collecting the selection, the ledger's
  transactions, planning each message, publishing each chunk with the same window.

Each phase's queue must then hold exactly N messages (each delivered once), and the ledger N
delivered rows. It prints replays/s, the ratio to the baseline (target ≥ 0.7) and the RSS
(start, peak, end: memory must stay flat, the batch is read a chunk at a time).

    .venv/bin/python benchmarks/replay.py --events 2000    # a quick look
    .venv/bin/python benchmarks/replay.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
from pamqp.commands import Basic
from pg_admin import PG_URL, psql

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.replay import Replayer
from eventscope.backend.replay_bulk import WINDOW, BulkReplays, Selection
from eventscope.backend.settings import load_settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TARGET = 0.7
WRITE_BATCH = 2000


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def message(n: int, queue: str) -> tuple[bytes, dict[str, Any], bytes]:
    """Body, headers and raw property bytes of the n-th dead letter."""
    body = {
        "id": f"evt_{n}",
        "type": "order.created",
        "timestamp": "2026-12-02T05:00:00.000Z",
        "data": {"orderId": f"ord_{n}", "userId": f"usr_{n % 97}", "total": 42.5, "items": 2},
        "metadata": {"source": "order-service", "version": "1.0", "correlationId": f"req_{n}"},
        "aggregateId": f"ord_{n}",
        "aggregateType": "Order",
        "eventType": "OrderCreated",
        "version": 1,
    }
    headers = {
        "x-death": [
            {
                "queue": queue,
                "reason": "rejected",
                "count": 1,
                "time": dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.UTC),
                "exchange": "events",
                "routing-keys": ["order.created"],
            }
        ],
        "x-first-death-queue": queue,
        "x-first-death-reason": "rejected",
        "x-first-death-exchange": "events",
    }
    raw = Basic.Properties(
        content_type="application/json", delivery_mode=2, message_id=f"evt_{n}", headers=headers
    ).marshal()
    return json.dumps(body).encode(), headers, raw


async def load(store: EventStore, n: int, queue: str) -> None:
    now = dt.datetime.now(dt.UTC)
    for first in range(0, n, WRITE_BATCH):
        rows = []
        for i in range(first, min(n, first + WRITE_BATCH)):
            body, headers, raw = message(i, queue)
            props = {
                "content_type": "application/json",
                "delivery_mode": 2,
                "message_id": f"evt_{i}",
            }
            delivery = Delivery("events.dlx", "order.created", False, props, headers, body, now,
                                raw_properties=raw)  # fmt: skip
            rows.append(to_row(delivery, 1 << 20))
        await store.write(rows)


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def baseline(n: int, queue: str) -> float:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        messages = []
        for i in range(n):
            body, headers, _ = message(i, queue)
            messages.append(
                aio_pika.Message(
                    body,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=f"evt_{i}",
                    headers=headers,
                )
            )
        began = time.perf_counter()
        for start in range(0, n, WINDOW):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(m, routing_key=queue, mandatory=True)
                    for m in messages[start : start + WINDOW]
                )
            )
        took = time.perf_counter() - began
        got = await depth(channel, queue)
        await (await channel.declare_queue(queue, passive=True)).purge()
    if got != n:
        raise SystemExit(f"baseline: {got} messages in the queue, expected {n}")
    return n / took


async def replay_phase(name: str, url: str, n: int, queue: str) -> dict[str, Any]:
    await upgrade_async(url)
    store = EventStore(url)
    settings = load_settings(
        {},
        {"amqp_url": AMQP_URL, "database_url": url, "replay_targets": (f"queue:{queue}",),
         "replay_rate": 0.0},
    )  # fmt: skip
    try:
        await load(store, n, queue)
        replayer = Replayer(store, settings)
        bulk = BulkReplays(store, replayer, settings)
        stop = asyncio.Event()
        samples = [rss_kib()]
        began = time.perf_counter()
        batch_id = await bulk.start(Selection(), actor="bench", role="operator", reason="benchmark")
        worker = asyncio.create_task(bulk.run(stop))
        while True:
            await asyncio.sleep(0.5)
            samples.append(rss_kib())
            batch = await store.replay_batches.get(batch_id)
            assert batch is not None
            if batch["state"] in ("finished", "cancelled", "failed"):
                break
        took = time.perf_counter() - began
        stop.set()
        await worker
        await replayer.close()
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            got = await depth(channel, queue)
            await (await channel.declare_queue(queue, passive=True)).purge()
        error = None
        if got != n or batch["delivered"] != n:
            error = f"{got} in the queue and {batch['delivered']} delivered, expected {n}"
        return {
            "phase": name,
            "rate": n / took,
            "rss_start": samples[0],
            "rss_peak": max(samples),
            "rss_end": samples[-1],
            "error": error,
        }
    finally:
        await store.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    queue = f"eventscope.bench.replay.{run}"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.declare_queue(queue, durable=True)
    database = f"bench_replay_{run}"
    results = []
    failed = False
    try:
        base = await baseline(args.events, queue)
        print(f"baseline  aio-pika confirmed publish, window {WINDOW}: {base:,.0f} msg/s")
        with tempfile.TemporaryDirectory() as tmp:
            phases = [("sqlite", f"sqlite+aiosqlite:///{tmp}/replay.db")]
            if not args.no_postgres:
                psql(f"CREATE DATABASE {database}")
                phases.append(("postgres", PG_URL.format(name=database)))
            for name, url in phases:
                result = await replay_phase(name, url, args.events, queue)
                results.append(result)
                ratio = result["rate"] / base
                verdict = "ERROR" if result["error"] else ("PASS" if ratio >= TARGET else "MISS")
                failed |= verdict == "ERROR"
                print(
                    f"{name:9} bulk replay: {result['rate']:,.0f} replays/s  ratio {ratio:.2f} "
                    f"(target ≥ {TARGET}) {verdict}  RSS start/peak/end "
                    f"{result['rss_start'] // 1024}/{result['rss_peak'] // 1024}/"
                    f"{result['rss_end'] // 1024} MiB"
                    + (f"  {result['error']}" if result["error"] else "")
                )
    finally:
        await channel.queue_delete(queue)
        await connection.close()
        if not args.no_postgres:
            psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
