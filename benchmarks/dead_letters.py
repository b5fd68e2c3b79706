"""The dead-letter page at scale: /dlq over a store where failures pile up.

Loads N events (default 200,000) through the store's batch writer into a fresh SQLite file and
a fresh Postgres database; every 20th is a dead letter — RabbitMQ `x-death` copies from three
queues with error headers naming ids, and the seed's `dlq.<key>` wrappers — so the page groups
the newest 2,000 of 10,000. Then it times, server side (what the handler runs: the store read,
the parse and grouping in the page workers; no HTTP), `--repeat` times each:

- the groups, no filter (`/dlq`), and with a routing-key filter,
- one group's members (`/dlq?group=…`),

and prints p50/p95 against the target (p95 < 300 ms) and as a ratio to the baseline of the same
run: the newest page of events without a filter.

    .venv/bin/python benchmarks/dead_letters.py --events 50000     # a quick look
    .venv/bin/python benchmarks/dead_letters.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pg_admin import PG_URL, psql

from eventscope.backend.dead_letters import failures_and_groups
from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.filters import EventFilter, parse_filter
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from eventscope.web.event_view import in_worker

TARGET_MS = 300.0
BATCH = 2000
EVERY = 20  # one event in EVERY is a dead letter
QUEUES = ("shipping", "billing", "notifications")
ERROR_HEADERS = ("x-exception-message", "x-error", "error")


def row(n: int, start: dt.datetime) -> dict[str, Any]:
    at = start + dt.timedelta(seconds=n)
    body = {"id": f"evt_{n}", "type": "order.paid", "metadata": {"correlationId": f"req_{n // 5}"}}
    headers: dict[str, Any] | None = None
    key = "order.paid"
    if n % EVERY == 0 and n % (EVERY * 4) == 0:  # the seed's convention
        key = "dlq.order.paid"
        body = {"data": {"originalEvent": body, "error": f"order {n} not found", "retries": 3}}
    elif n % EVERY == 0:
        queue = QUEUES[(n // EVERY) % len(QUEUES)]
        death = {"queue": queue, "reason": "rejected", "count": 1, "time": at}
        headers = {
            "x-death": [{**death, "exchange": "events", "routing-keys": [key]}],
            "x-exception-message": f"timeout calling {queue} for {uuid.UUID(int=n)} after {n} ms",
        }
    delivery = Delivery("events", key, False, {"message_id": f"evt_{n}"}, headers,
                        json.dumps(body).encode(), at)  # fmt: skip
    return to_row(delivery, 1 << 20)


async def load(store: EventStore, n: int) -> float:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=n)
    began = time.perf_counter()
    for first in range(0, n, BATCH):
        await store.write([row(i, start) for i in range(first, min(n, first + BATCH))])
    return time.perf_counter() - began


Query = Callable[[], Awaitable[Any]]


def queries(store: EventStore) -> dict[str, Query]:
    async def baseline() -> Any:
        return await store.events.page(100)

    async def groups(f: EventFilter) -> Any:
        found = await store.dead_letters.newest(f)
        return await in_worker(failures_and_groups, found.rows, ERROR_HEADERS)

    async def members() -> Any:
        failures, found = await groups(EventFilter())
        fingerprint = found[0].fingerprint
        return [f for f in failures if f.fingerprint == fingerprint]

    return {
        "newest events, no filter (baseline)": baseline,
        "dead-letter groups, no filter": lambda: groups(EventFilter()),
        "dead-letter groups, routing key": lambda: groups(parse_filter({"routing_key": ["dlq.#"]})),
        "one group's members": members,
    }


async def run_database(url: str, n: int, repeat: int) -> list[dict[str, Any]]:
    await upgrade_async(url)
    store = EventStore(url)
    try:
        print(f"  loaded {n:,} in {await load(store, n):.0f} s", file=sys.stderr)
        results = []
        baseline = None
        for name, query in queries(store).items():
            await query()  # warm, as an open page would be
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                await query()
                times.append((time.perf_counter() - began) * 1000)
            p50, p95 = statistics.median(times), sorted(times)[int(0.95 * len(times)) - 1]
            baseline = baseline or p95
            results.append({"query": name, "p50_ms": p50, "p95_ms": p95, "ratio": p95 / baseline})
        return results
    finally:
        await store.close()


def report(database: str, n: int, results: list[dict[str, Any]]) -> None:
    print(f"\n{database}, {n:,} events, {n // EVERY:,} dead letters")
    print(f"{'query':<38}{'p50 ms':>9}{'p95 ms':>9}{'ratio':>8}{'target':>9}  verdict")
    for r in results:
        baseline = r["query"].endswith("(baseline)")
        verdict = "" if baseline else ("PASS" if r["p95_ms"] < TARGET_MS else "MISS")
        target = "" if baseline else f"<{int(TARGET_MS)}"
        print(
            f"{r['query']:<38}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['ratio']:>8.2f}"
            f"{target:>9}  {verdict}"
        )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    for database in args.databases.split(","):
        print(f"[{database}] {args.events:,} events …", file=sys.stderr)
        if database == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'events.db'}"
                results = await run_database(url, args.events, args.repeat)
        else:
            name = f"eventscope_dead_letters_{uuid.uuid4().hex[:8]}"
            psql(f"CREATE DATABASE {name}")
            try:
                results = await run_database(PG_URL.format(name=name), args.events, args.repeat)
            finally:
                psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        report(database, args.events, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
