"""Aggregates at scale: one aggregate of 10,000 events among 1,000,000 stored.

Loads N events (default 1,000,000) through the store's own batch writer into a fresh SQLite file
and a fresh Postgres database: every 100th event belongs to one aggregate (`Order/order_big`,
versions 1..N/100, default merge of a `data` that changes a status, a counter and one of 50
lines), the others to three-event aggregates, as in benchmarks/query.py. Then it counts them into
the aggregate catalog and times, server side (what the API handlers run: the store reads, the
fold or the kept fold, the view with its diff — no HTTP), `--repeat` times each:

- the state at a random version (`GET /api/aggregates/{type}/{id}?version=N`),
- the diff between two random versions (`…/diff?from=N&to=M`),
- the state after one more event was recorded (the kept fold extended),
- the aggregate list: newest first, by type, by id prefix (the catalog),

and prints p50/p95 against the target (p95 < 200 ms) and as a ratio to the baseline of the same
run: the newest page of events without a filter. The first (cold) read — every row read and
folded — is timed on its own, as is building the catalog.

    .venv/bin/python benchmarks/aggregates.py --events 100000    # a quick look
    .venv/bin/python benchmarks/aggregates.py                    # 1,000,000 into each database
    .venv/bin/python benchmarks/aggregates.py --reuse            # keep the loaded stores, reuse
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pg_admin import PG_URL, ensure_database, psql

from eventscope.backend.aggregate_catalog import AggregateCatalog
from eventscope.backend.aggregate_folds import AggregateFolds
from eventscope.backend.aggregates.reducer_set import load_reducers
from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.store.aggregates import AggregateRef, CatalogQuery
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from eventscope.web.aggregate_view import Selection, api_diff, api_state

KEPT_SQLITE = "/var/tmp/eventscope-aggregates-{n}.db"
KEPT_POSTGRES = "eventscope_aggregates_kept_{n}"
BATCH = 2000
EVERY = 100  # one event in EVERY belongs to the big aggregate
BIG = AggregateRef.of("Order", "order_big")
TARGET_MS = 200.0
STATUSES = ("created", "paid", "packed", "shipped", "delivered")
DAYS = 7


def body(n: int, start: dt.datetime, span: float) -> tuple[str, dict[str, Any]]:
    when = (start + dt.timedelta(seconds=n * span)).isoformat()
    if n % EVERY == 0:
        version = n // EVERY + 1
        return "order.updated", {
            "id": f"evt_big_{version}",
            "eventType": "OrderUpdated",
            "aggregateType": "Order",
            "aggregateId": "order_big",
            "version": version,
            "timestamp": when,
            "data": {
                "status": STATUSES[version % len(STATUSES)],
                "counter": version,
                "lines": {f"l{version % 50}": {"qty": version % 7, "sku": f"sku_{version % 13}"}},
            },
            "metadata": {"correlationId": f"req_big_{version // 5}"},
        }
    key = ("order.created", "order.paid", "order.shipped")[n % 3]
    return key, {
        "id": f"evt_{n}",
        "eventType": "".join(p.title() for p in key.split(".")),
        "aggregateType": "Order",
        "aggregateId": f"order_{n // 3}",
        "version": n % 3 + 1,
        "timestamp": when,
        "data": {"orderId": f"order_{n // 3}", "total": n % 500},
        "metadata": {"correlationId": f"req_{n // 5:08d}"},
    }


def row(n: int, start: dt.datetime, span: float) -> dict[str, Any]:
    key, data = body(n, start, span)
    properties = {"message_id": data["id"], "content_type": "application/json"}
    raw = json.dumps(data).encode()
    received = start + dt.timedelta(seconds=n * span)
    return to_row(Delivery("events", key, False, properties, None, raw, received), 1 << 20)


async def load(store: EventStore, n: int) -> float:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=DAYS)
    span = DAYS * 86400 / n
    began = time.perf_counter()
    for first in range(0, n, BATCH):
        await store.write([row(i, start, span) for i in range(first, min(n, first + BATCH))])
        if first % (BATCH * 50) == 0:
            print(f"  … {first:,} written", file=sys.stderr)
    return time.perf_counter() - began


async def catalogue(store: EventStore) -> float:
    began = time.perf_counter()
    catalog = AggregateCatalog(store)
    while await catalog.catalog_some() > 0:
        pass
    return time.perf_counter() - began


Query = Callable[[random.Random], Awaitable[Any]]


def queries(store: EventStore, folds: AggregateFolds, versions: int) -> dict[str, Query]:
    async def baseline(rng: random.Random) -> Any:
        return await store.events.page(100)

    async def state(rng: random.Random) -> Any:
        where = Selection(version=rng.randint(1, versions))
        return await folds.use(BIG, lambda f: api_state(f.ref, f.fold, f.capped, where, None))

    async def diff(rng: random.Random) -> Any:
        a, b = (
            Selection(version=rng.randint(1, versions)),
            Selection(version=rng.randint(1, versions)),
        )
        return await folds.use(BIG, lambda f: api_diff(f.fold, a, b, None))

    async def appended(rng: random.Random) -> Any:
        """The current state, after `measure` recorded one more event (that write untimed)."""
        return await folds.use(BIG, lambda f: api_state(f.ref, f.fold, f.capped, Selection(), None))

    async def newest(rng: random.Random) -> Any:
        return await store.aggregates.page(CatalogQuery(limit=100))

    async def by_type(rng: random.Random) -> Any:
        return await store.aggregates.page(CatalogQuery(aggregate_type="Order", limit=100))

    async def by_prefix(rng: random.Random) -> Any:
        return await store.aggregates.page(CatalogQuery(prefix=f"order_{rng.randrange(1000)}"))

    return {
        "first page of events (baseline)": baseline,
        "state at a random version": state,
        "diff between two versions": diff,
        "state after one more event": appended,
        "list: newest first": newest,
        "list: by type": by_type,
        "list: by id prefix": by_prefix,
    }


async def append_one(store: EventStore, version: int) -> None:
    data = {
        "id": f"evt_big_{version}",
        "eventType": "OrderUpdated",
        "aggregateType": "Order",
        "aggregateId": "order_big",
        "version": version,
        "data": {"status": "late", "counter": version},
    }
    now = dt.datetime.now(dt.UTC)
    raw = json.dumps(data).encode()
    await store.write(
        [to_row(Delivery("events", "order.updated", False, {}, None, raw, now), 1 << 20)]
    )


async def measure(
    name: str, query: Query, repeat: int, store: EventStore, state: dict[str, int]
) -> list[float]:
    rng = random.Random(11)
    times = []
    await query(rng)  # warm, as an open page would be
    for _ in range(repeat):
        if name == "state after one more event":
            state["version"] += 1
            await append_one(store, state["version"])
        began = time.perf_counter()
        await query(rng)
        times.append((time.perf_counter() - began) * 1000)
    return times


async def run_database(url: str, n: int, repeat: int) -> dict[str, Any]:
    await upgrade_async(url)
    store = EventStore(url)
    try:
        present = await store.events.count()
        if present == 0:
            print(f"  loaded {n:,} in {await load(store, n):.0f} s", file=sys.stderr)
        elif present < n:
            raise SystemExit(f"{url} holds {present:,} events, not {n:,}: drop it first")
        else:
            print(f"  reusing the {present:,} events loaded before", file=sys.stderr)
        catalogued = await catalogue(store)
        print(f"  catalogued in {catalogued:.1f} s", file=sys.stderr)
        reducers = load_reducers(None, (), demo=False, entry_points=False)
        folds = AggregateFolds(store, reducers)
        versions = len(await store.aggregates.rows(BIG, limit=10**6))
        cold = []
        for _ in range(3):
            folds.cache.clear()
            began = time.perf_counter()
            await folds.use(BIG, lambda f: api_state(f.ref, f.fold, f.capped, Selection(), None))
            cold.append((time.perf_counter() - began) * 1000)
        state = {"version": versions}
        results = []
        baseline = None
        for name, query in queries(store, folds, versions).items():
            times = await measure(name, query, repeat, store, state)
            p50, p95 = statistics.median(times), sorted(times)[int(0.95 * len(times)) - 1]
            baseline = baseline or p95
            results.append({"query": name, "p50_ms": p50, "p95_ms": p95, "ratio": p95 / baseline})
        folds.close()
        return {
            "events": await store.events.count(),
            "aggregate_events": versions,
            "catalog_s": catalogued,
            "cold_ms": cold,
            "results": results,
        }
    finally:
        await store.close()


def report(database: str, found: dict[str, Any]) -> None:
    print(
        f"\n{database}: {found['events']:,} events, the aggregate has {found['aggregate_events']:,}"
    )
    cold = ", ".join(f"{c:.0f}" for c in found["cold_ms"])
    print(f"cold read + fold of the whole aggregate: {cold} ms")
    print(f"catalog of every event: {found['catalog_s']:.1f} s")
    print(f"{'query':<34}{'p50 ms':>9}{'p95 ms':>9}{'ratio':>8}{'target':>9}  verdict")
    for r in found["results"]:
        baseline = r["query"].endswith("(baseline)")
        verdict = "" if baseline else ("PASS" if r["p95_ms"] < TARGET_MS else "MISS")
        target = "" if baseline else f"<{int(TARGET_MS)}"
        print(
            f"{r['query']:<34}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['ratio']:>8.2f}"
            f"{target:>9}  {verdict}"
        )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"keep the loaded stores ({KEPT_SQLITE} and database {KEPT_POSTGRES}) and reuse them",
    )
    args = parser.parse_args()
    for database in args.databases.split(","):
        print(f"[{database}] {args.events:,} events …", file=sys.stderr)
        if database == "sqlite" and args.reuse:
            url = f"sqlite+aiosqlite:///{KEPT_SQLITE.format(n=args.events)}"
            found = await run_database(url, args.events, args.repeat)
        elif database == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'events.db'}"
                found = await run_database(url, args.events, args.repeat)
        elif args.reuse:
            name = KEPT_POSTGRES.format(n=args.events)
            ensure_database(name)
            found = await run_database(PG_URL.format(name=name), args.events, args.repeat)
        else:
            name = f"eventscope_aggregates_{uuid.uuid4().hex[:8]}"
            psql(f"CREATE DATABASE {name}")
            try:
                found = await run_database(PG_URL.format(name=name), args.events, args.repeat)
            finally:
                psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        report(database, found)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
