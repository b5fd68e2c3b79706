"""Query speed of "Find any event": the filtered pages users open, on a store of N events.

Loads N seed-shaped events (default 1,000,000) through the store's own batch writer into a fresh
SQLite file and a fresh Postgres database, fills the full-text index with the search indexer,
and the event type catalog, then times, server side (the store call, no HTTP), each query
`--repeat` times with varying values and prints p50/p95 against the targets (filtered pages and
the types page p95 < 50 ms, text search p95 < 300 ms) and against the baseline of the same run:
the newest page without a filter.
With `--explain` the plans of queries that miss their target are printed.

    .venv/bin/python benchmarks/query.py --events 100000        # a quick look
    .venv/bin/python benchmarks/query.py                        # 1,000,000 into each database
    .venv/bin/python benchmarks/query.py --reuse                # keep the loaded stores, reuse them
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
from sqlalchemy import text

from eventscope.backend.correlation_catalog import CorrelationCatalog
from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.filters import parse_filter
from eventscope.backend.redaction import Redactor
from eventscope.backend.search_index import SearchIndexer
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from eventscope.backend.type_catalog import TypeCatalog
from eventscope.web.trace_view import FIRST_PAGE as TRACE_PAGE
from eventscope.web.trace_view import build_trace
from eventscope.web.type_view import RATE_MINUTES, type_view

BATCH = 2000
KEYS = [
    f"{area}.{verb}"
    for area in ("order", "payment", "inventory", "shipping", "invoice", "customer", "cart")
    for verb in ("created", "paid", "failed", "cancelled", "shipped", "reserved", "updated")
] + [f"dlq.order.{v}" for v in ("created", "paid")]
SOURCES = ["order-service", "payment-service", "inventory-service", "shipping-service", "web"]
WORDS = [
    "card",
    "declined",
    "accepted",
    "retry",
    "timeout",
    "refund",
    "express",
    "gift",
    "warehouse",
    "priority",
]
DAYS = 7
KEPT_SQLITE = "/var/tmp/eventscope-query-{n}.db"
KEPT_POSTGRES = "eventscope_query_kept_{n}"


BIG_CORRELATIONS = {"req_big_10000": 100, "req_big_1000": 1000}  # one event in every N


def correlation_of(n: int) -> str:
    """Five events per request, except two long correlations spread over the whole store."""
    for name, every in BIG_CORRELATIONS.items():
        if n % every == every // 2:
            return name
    return f"req_{n // 5:08d}"


def seed_event(n: int, start: dt.datetime, span: float, rng: random.Random) -> dict[str, Any]:
    key = rng.choice(KEYS)
    correlation = correlation_of(n)
    body = {
        "id": f"evt_{n}",
        "type": key,
        "eventType": "".join(p.title() for p in key.split(".")),
        "timestamp": (start + dt.timedelta(seconds=n * span)).isoformat(),
        "aggregateId": f"order_{n // 3}",
        "aggregateType": "Order",
        "version": n % 3 + 1,
        "data": {
            "orderId": f"order_{n // 3}",
            "total": round(rng.uniform(5, 500), 2),
            "note": " ".join(rng.sample(WORDS, 2)),
        },
        "metadata": {"correlationId": correlation, "source": rng.choice(SOURCES)},
    }
    delivery = Delivery(
        "events",
        key,
        False,
        {"message_id": f"evt_{n}", "content_type": "application/json", "delivery_mode": 2},
        None,
        json.dumps(body).encode(),
        start + dt.timedelta(seconds=n * span),
    )
    return to_row(delivery, 1 << 20)


async def load(store: EventStore, n: int) -> float:
    """Write n events in batches; seconds writing."""
    rng = random.Random(7)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=DAYS)
    span = DAYS * 86400 / n
    began = time.perf_counter()
    for first in range(0, n, BATCH):
        rows = [seed_event(i, start, span, rng) for i in range(first, min(n, first + BATCH))]
        await store.write(rows)
        if first % (BATCH * 50) == 0:
            print(f"  … {first + len(rows):,} written", file=sys.stderr)
    return time.perf_counter() - began


async def catch_up(store: EventStore) -> None:
    """What a running eventscope keeps behind ingest: the text index, the type and the
    correlation catalogs (each resumes from its own progress row, so a reused store only takes
    in what is new); on Postgres then the statistics autovacuum would have gathered by then."""
    began = time.perf_counter()
    indexer = SearchIndexer(store, Redactor())
    done = 0
    while (step := await indexer.index_some()) > 0:
        done += step
        if done % 100_000 < step:
            print(f"  … {done:,} indexed", file=sys.stderr)
    print(f"  indexed {done:,} in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    began = time.perf_counter()
    catalog = TypeCatalog(store)
    while await catalog.catalog_some() > 0:
        pass
    print(f"  catalogued types in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    began = time.perf_counter()
    correlations = CorrelationCatalog(store)
    while await correlations.catalog_some() > 0:
        pass
    print(f"  catalogued correlations in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    if not store.is_sqlite:
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))


Query = Callable[[random.Random], Awaitable[Any]]


def queries(store: EventStore, n: int) -> dict[str, tuple[Query, float, dict[str, list[str]]]]:
    """name → (run once with random values, target p95 in ms, a sample filter for EXPLAIN)."""
    now = dt.datetime.now(dt.UTC)

    def page(params: Callable[[random.Random], dict[str, list[str]]]) -> Query:
        async def run(rng: random.Random) -> Any:
            f = parse_filter(params(rng), now=now)
            return await store.search.page(f, 100)

        return run

    async def first_page(rng: random.Random) -> Any:
        return await store.events.page(100)

    def correlation(rng: random.Random) -> dict[str, list[str]]:
        return {"correlation_id": [f"req_{rng.randrange(n // 5):08d}"]}

    def wildcard(rng: random.Random) -> dict[str, list[str]]:
        return {"routing_key": [rng.choice(["order.*", "#.failed", "payment.#", "*.shipped"])]}

    def type_and_time(rng: random.Random) -> dict[str, list[str]]:
        key = rng.choice(KEYS)
        return {
            "type": ["".join(p.title() for p in key.split("."))],
            "since": [f"{rng.randrange(2, 48)}h"],
        }

    def text_search(rng: random.Random) -> dict[str, list[str]]:
        return {"q": [" ".join(rng.sample(WORDS, 2))]}

    def trace(name: str) -> Query:
        async def run(rng: random.Random) -> Any:
            """What the trace page reads and builds (waterfall, lanes, tree), not its HTML."""
            return await build_trace(await store.trace.page(name, TRACE_PAGE))

        return run

    async def recent(rng: random.Random) -> Any:
        """What /correlations reads: the newest correlations, each with its summary."""
        return await store.trace.recent(None, limit=50)

    async def types_page(rng: random.Random) -> Any:
        """What /api/types and the /types page read and build (the catalog, not the events)."""
        minute = int(time.time() // 60)
        found = await store.types.page(100, since_minute=minute - RATE_MINUTES + 1)
        return [type_view(r, found.rates.get(r["type_key"], {}), minute, None) for r in found.rows]

    return {
        "first page, no filter (baseline)": (first_page, 50.0, {}),
        "wildcard routing key": (page(wildcard), 50.0, {"routing_key": ["order.*"]}),
        "correlation id": (page(correlation), 50.0, correlation(random.Random(1))),
        "type and time range": (page(type_and_time), 50.0, type_and_time(random.Random(1))),
        "text search": (page(text_search), 300.0, {"q": ["card declined"]}),
        "types page (catalog)": (types_page, 50.0, {}),
        "trace of 1,000 events, first page": (trace("req_big_1000"), 50.0, {}),
        "trace of 10,000 events, first page": (trace("req_big_10000"), 50.0, {}),
        "recent correlations (50)": (recent, 50.0, {}),
    }


async def measure(query: Query, repeat: int) -> list[float]:
    rng = random.Random(11)
    times = []
    await query(rng)  # warm the cache once, as an open dashboard would be
    for _ in range(repeat):
        began = time.perf_counter()
        await query(rng)
        times.append((time.perf_counter() - began) * 1000)
    return times


async def explain(store: EventStore, params: dict[str, list[str]]) -> str:
    f = parse_filter(params)
    where = await store.search.conditions(f)
    from sqlalchemy import and_, select, true

    from eventscope.backend.store.models import SUMMARY_COLUMNS
    from eventscope.backend.store.paging import NEWEST_FIRST

    query = select(*SUMMARY_COLUMNS).where(and_(true(), *where)).order_by(*NEWEST_FIRST)
    compiled = query.limit(100).compile(store.engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN ANALYZE "
    async with store.engine.connect() as conn:
        rows = (await conn.execute(text(prefix + str(compiled)))).all()
    return "\n".join("    " + " | ".join(str(c) for c in row) for row in rows)


async def run_database(
    url: str, n: int, repeat: int, show_plans: bool, load_only: bool = False
) -> list[dict[str, Any]]:
    await upgrade_async(url)
    store = EventStore(url)
    try:
        present = await store.events.count()
        if present == n:  # a store kept by --reuse
            print(f"  reusing the {n:,} events loaded before", file=sys.stderr)
        elif present:
            raise SystemExit(f"{url} holds {present:,} events, not {n:,}: drop it first")
        else:
            print(f"  loaded {n:,} in {await load(store, n):.0f} s", file=sys.stderr)
        await catch_up(store)
        if load_only:
            return []
        results = []
        baseline = None
        for name, (query, target, sample) in queries(store, n).items():
            times = await measure(query, repeat)
            p50, p95 = statistics.median(times), sorted(times)[int(0.95 * len(times)) - 1]
            baseline = baseline or p95
            result = {"query": name, "p50_ms": p50, "p95_ms": p95, "target_ms": target}
            result["ratio"] = p95 / baseline
            if show_plans and (p95 > target or sample):
                result["plan"] = await explain(store, sample) if sample else ""
            results.append(result)
        return results
    finally:
        await store.close()


def report(database: str, n: int, results: list[dict[str, Any]]) -> None:
    print(f"\n{database}, {n:,} events")
    print(f"{'query':<34}{'p50 ms':>9}{'p95 ms':>9}{'ratio':>8}{'target':>9}  verdict")
    for r in results:
        verdict = "PASS" if r["p95_ms"] < r["target_ms"] else "MISS"
        print(
            f"{r['query']:<34}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['ratio']:>8.2f}"
            f"{'<' + str(int(r['target_ms'])):>9}  {verdict}"
        )
        if r.get("plan") and verdict == "MISS":
            print(r["plan"])


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--explain", action="store_true", help="print plans of missed targets")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"keep the loaded stores ({KEPT_SQLITE} and database {KEPT_POSTGRES}) and reuse them",
    )
    parser.add_argument("--load-only", action="store_true", help="load (and keep), time nothing")
    args = parser.parse_args()
    for database in args.databases.split(","):
        print(f"[{database}] loading {args.events:,} events …", file=sys.stderr)
        if database == "sqlite" and args.reuse:
            url = f"sqlite+aiosqlite:///{KEPT_SQLITE.format(n=args.events)}"
            results = await run_database(
                url, args.events, args.repeat, args.explain, args.load_only
            )
        elif database == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'events.db'}"
                results = await run_database(
                    url, args.events, args.repeat, args.explain, args.load_only
                )
        elif args.reuse:
            name = KEPT_POSTGRES.format(n=args.events)
            ensure_database(name)
            url = PG_URL.format(name=name)
            results = await run_database(
                url, args.events, args.repeat, args.explain, args.load_only
            )
        else:
            name = f"eventscope_query_{uuid.uuid4().hex[:8]}"
            psql(f"CREATE DATABASE {name}")
            try:
                url = PG_URL.format(name=name)
                results = await run_database(
                    url, args.events, args.repeat, args.explain, args.load_only
                )
            finally:
                psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if results:
            report(database, args.events, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
