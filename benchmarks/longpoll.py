"""Long-poll latency: from publish to the answer of a waiting `?wait=` request.

`eventscope serve` runs in a subprocess (as users run it). Each round, `--waiters` clients
each wait on their own correlation (`GET /api/correlations/{id}/events?wait=30`); then one
event per correlation is published, stamped just before its publish. A waiter's latency is
publish → its HTTP answer. The baseline of the same run is a bare aio-pika consumer of a queue
bound to the same exchange, receiving the same messages: the broker's own publish → delivery
latency. Same process, same clock. What eventscope adds is the recorder's batch (up to
`EVENTSCOPE_BATCH_MAX_WAIT_MS`), the commit, the change feed and one read per woken waiter.

    .venv/bin/python benchmarks/longpoll.py                       # 30 rounds × 10 waiters, SQLite
    .venv/bin/python benchmarks/longpoll.py --database postgres --waiters 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_P95_MS = 250.0  # a test asserting right after a click should not notice the wait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_until_recording(http: httpx.AsyncClient, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            status = await http.get("/api/status")
            if status.status_code == 200 and status.json()["broker_connected"]:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("eventscope serve did not start recording")


def event(correlation: str) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "order.created",
            "eventType": "OrderCreated",
            "aggregateId": f"order_{correlation}",
            "aggregateType": "Order",
            "version": 1,
            "timestamp": "2026-12-01T10:00:00Z",
            "data": {"orderId": f"order_{correlation}", "total": 99.99},
            "metadata": {"source": "bench", "correlationId": correlation},
        }
    ).encode()


async def measure(args: argparse.Namespace, base: str, token: str, exchange: str) -> dict[str, Any]:
    published: dict[str, float] = {}
    answered: dict[str, float] = {}
    delivered: dict[str, float] = {}
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=False)
        target = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        consumer_channel = await connection.channel()
        queue = await consumer_channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            delivered[message.correlation_id or ""] = time.perf_counter()
            await message.ack()

        await queue.consume(on_message)
        limits = httpx.Limits(max_connections=args.waiters + 4)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits
        ) as http:
            await wait_until_recording(http)

            async def wait_for(correlation: str) -> None:
                answer = await http.get(
                    f"/api/correlations/{correlation}/events", params={"wait": 30}
                )
                answered[correlation] = time.perf_counter()
                data = answer.json()
                if answer.status_code != 200 or data["timed_out"]:
                    raise RuntimeError(f"{correlation}: {answer.status_code} {answer.text[:200]}")

            for round_number in range(args.rounds):
                correlations = [
                    f"bench-{round_number}-{n}-{uuid.uuid4().hex[:6]}" for n in range(args.waiters)
                ]
                waiting = [asyncio.create_task(wait_for(c)) for c in correlations]
                await asyncio.sleep(args.settle)  # the requests reach the server and wait
                for correlation in correlations:
                    published[correlation] = time.perf_counter()
                    await target.publish(
                        aio_pika.Message(event(correlation), correlation_id=correlation),
                        routing_key="order.created",
                    )
                await asyncio.gather(*waiting)
                print(f"round {round_number + 1}/{args.rounds}", file=sys.stderr)
            await asyncio.sleep(0.5)  # the last baseline deliveries
    finally:
        await connection.close()
    poll = [(answered[c] - published[c]) * 1000 for c in published]
    bare = [(delivered[c] - published[c]) * 1000 for c in published if c in delivered]
    return {"longpoll_ms": poll, "baseline_ms": bare}


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), 1),
        "p95": round(percentile(values, 0.95), 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    exchange, tap = f"bench.longpoll.{suffix}", f"bench.longpoll.tap.{suffix}"
    port = free_port()
    token = secrets.token_urlsafe(16)
    workdir = Path(tempfile.mkdtemp(prefix="eventscope-longpoll-"))
    database_url = f"sqlite+aiosqlite:///{workdir}/events.db"
    pg_name = f"eventscope_longpoll_{suffix}"
    if args.database == "postgres":
        subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {pg_name}"], check=True)
        database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update(
        EVENTSCOPE_TOKEN=token,
        EVENTSCOPE_AMQP_URL=AMQP_URL,
        EVENTSCOPE_DATABASE_URL=database_url,
        EVENTSCOPE_EXCHANGES=exchange,
        EVENTSCOPE_TAP_QUEUE=tap,
        EVENTSCOPE_PORT=str(port),
        EVENTSCOPE_LOG_LEVEL="warning",
    )
    log_path = workdir / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "eventscope.web.cli", "serve"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        samples = asyncio.run(measure(args, f"http://127.0.0.1:{port}", token, exchange))
    except Exception:
        print(log_path.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        asyncio.run(_delete(exchange, tap))
        if args.database == "postgres":
            subprocess.run(
                ["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)"],
                check=False,
            )
    poll, bare = summary(samples["longpoll_ms"]), summary(samples["baseline_ms"])
    return {
        "database": args.database,
        "rounds": args.rounds,
        "waiters": args.waiters,
        "longpoll": poll,
        "baseline": bare,
        "added_p50_ms": round(poll["p50"] - bare["p50"], 1),
        "added_p95_ms": round(poll["p95"] - bare["p95"], 1),
        "target_p95_ms": TARGET_P95_MS,
        "result": "PASS" if poll["p95"] <= TARGET_P95_MS else "MISS",
    }


async def _delete(exchange: str, tap: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(tap)
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--waiters", type=int, default=10, help="concurrent waits per round")
    parser.add_argument("--settle", type=float, default=0.3, help="seconds before publishing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\nlong-poll latency, {args.database}, {args.rounds} rounds × {args.waiters} waiters")
    print(f"{'':<22}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'n':>6}")
    for name in ("longpoll", "baseline"):
        row = result[name]
        label = "publish → answer" if name == "longpoll" else "bare consumer"
        print(f"{label:<22}{row['p50']:>9}{row['p95']:>9}{row['max']:>9}{row['n']:>6}")
    print(
        f"added by eventscope: p50 {result['added_p50_ms']} ms, p95 {result['added_p95_ms']} ms;"
        f" target p95 ≤ {TARGET_P95_MS:.0f} ms: {result['result']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
