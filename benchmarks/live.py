"""Live latency: from publish to the row in an open browser, at a steady rate.

`eventscope serve` runs in a subprocess (as users run it), a real chromium holds the live
timeline open, and a publisher sends seed-shaped events at `--rate` per second for
`--seconds`. Each row's arrival in the page's DOM is stamped by a MutationObserver (injected
through the devtools protocol, so the page's CSP does not apply); the publisher stamps each
publish. Same machine, same clock. The baseline of the same run is a bare aio-pika consumer
of a queue bound to the same exchange: the broker's own publish → delivery latency.

    .venv/bin/python benchmarks/live.py                    # 1,000 events/s for 20 s, SQLite
    .venv/bin/python benchmarks/live.py --database postgres --rate 2000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aio_pika
from playwright.sync_api import sync_playwright

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHROMIUM = "/usr/bin/chromium"
TARGET_P99_MS = 250.0

PROBE = """
window.__arrivals = [];
new MutationObserver((records) => {
  const now = Date.now();
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      const rows = node.matches && node.matches("tr[id^=e]") ? [node] : node.querySelectorAll ?
        node.querySelectorAll("tr[id^=e]") : [];
      for (const row of rows) {
        const key = row.querySelector("td.rk");
        if (key) window.__arrivals.push([key.textContent.trim(), now]);
      }
    }
  }
}).observe(document, {childList: true, subtree: true});
window.__swaps = [];
document.addEventListener("htmx:wsBeforeMessage", () => {
  window.__swapStart = performance.now();
});
document.addEventListener("htmx:wsAfterMessage", () => {
  window.__swaps.push(performance.now() - window.__swapStart);
});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_for_server(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        try:
            with opener.open(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("eventscope serve did not answer")


async def publish_paced(
    exchange_name: str, prefix: str, rate: float, seconds: float, sent: dict[str, float]
) -> None:
    """`rate` events per second, in 10 ms slots; the publish time of each routing key."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=False)
        exchange = await channel.get_exchange(exchange_name)
        total = int(rate * seconds)
        per_slot = max(1, int(rate / 100))
        start = time.monotonic()
        n = 0
        while n < total:
            for _ in range(min(per_slot, total - n)):
                key = f"{prefix}.{n}"
                body = json.dumps(
                    {
                        "id": f"evt_{n}",
                        "type": "order.created",
                        "eventType": "OrderCreated",
                        "aggregateId": f"order_{n}",
                        "aggregateType": "Order",
                        "version": 1,
                        "timestamp": "2026-12-01T10:00:00Z",
                        "data": {"orderId": f"order_{n}", "total": 99.99},
                        "metadata": {"source": "bench", "correlationId": f"req_{n}"},
                    }
                ).encode()
                sent[key] = time.time() * 1000
                await exchange.publish(aio_pika.Message(body), routing_key=key)
                n += 1
            next_slot = start + (n / rate)
            await asyncio.sleep(max(0.0, next_slot - time.monotonic()))
    finally:
        await connection.close()


async def baseline_consumer(
    exchange_name: str, queue_name: str, arrivals: dict[str, float], ready: threading.Event
) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        queue = await channel.declare_queue(queue_name, auto_delete=True)
        await queue.bind(exchange_name, "#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrivals[message.routing_key or ""] = time.time() * 1000
            await message.ack()

        await queue.consume(on_message)
        ready.set()
        await asyncio.Event().wait()  # until the benchmark cancels it
    finally:
        await connection.close()


def fetch_received(base: str, token: str) -> dict[str, float]:
    """When the recorder received each event (its `received_at`), by routing key."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    found: dict[str, float] = {}
    cursor = ""
    while True:
        request = urllib.request.Request(
            f"{base}/api/events?limit=1000{cursor}", headers={"Authorization": f"Bearer {token}"}
        )
        with opener.open(request, timeout=30) as response:
            page = json.load(response)
        for item in page["items"]:
            when = dt.datetime.fromisoformat(item["received_at"].replace("Z", "+00:00"))
            found[item["routing_key"]] = when.timestamp() * 1000
        if not page["next_before"]:
            return found
        cursor = f"&before={page['next_before']}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    exchange, tap = f"bench.live.{suffix}", f"bench.live.tap.{suffix}"
    port = free_port()
    token = secrets.token_urlsafe(16)
    workdir = Path(tempfile.mkdtemp(prefix="eventscope-live-"))
    database_url = f"sqlite+aiosqlite:///{workdir}/events.db"
    pg_name = f"eventscope_live_{suffix}"
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
    env.update(item.split("=", 1) for item in args.env)
    log = (workdir / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "eventscope.web.cli", "serve"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sent: dict[str, float] = {}
    baseline: dict[str, float] = {}
    loop = asyncio.new_event_loop()
    worker = threading.Thread(target=loop.run_forever, daemon=True)
    worker.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(base)
        ready = threading.Event()
        asyncio.run_coroutine_threadsafe(
            baseline_consumer(exchange, f"bench.live.base.{suffix}", baseline, ready), loop
        )
        ready.wait(30)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page()
            page.add_init_script(PROBE)
            page.goto(f"{base}/login?token={token}")
            page.wait_for_function("() => document.querySelector('#live-controls') !== null")
            time.sleep(1.0)  # the socket opens after htmx loads
            prefix = f"live.{suffix}"
            publishing = asyncio.run_coroutine_threadsafe(
                publish_paced(exchange, prefix, args.rate, args.seconds, sent), loop
            )
            publishing.result(timeout=args.seconds * 3 + 60)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen = page.evaluate("() => window.__arrivals.length")
                if seen >= len(sent):
                    break
                time.sleep(0.25)
            time.sleep(1.0)
            arrivals = dict(page.evaluate("() => window.__arrivals"))
            swaps = page.evaluate("() => window.__swaps")
            browser.close()
        received = fetch_received(base, token)
    finally:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        time.sleep(0.2)
        loop.call_soon_threadsafe(loop.stop)
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        if args.database == "postgres":
            subprocess.run(
                ["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)"],
                check=False,
            )
        asyncio.run(_cleanup(exchange, tap))
    latencies = [arrivals[k] - t for k, t in sent.items() if k in arrivals]
    base_latencies = [baseline[k] - t for k, t in sent.items() if k in baseline]
    receive_latencies = [received[k] - t for k, t in sent.items() if k in received]
    result = {
        "database": args.database,
        "rate": args.rate,
        "published": len(sent),
        "seen_in_browser": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p95_ms": percentile(latencies, 0.95) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "baseline_p50_ms": statistics.median(base_latencies) if base_latencies else None,
        "baseline_p99_ms": percentile(base_latencies, 0.99) if base_latencies else None,
        "messages": len(swaps),
        "swap_p50_ms": statistics.median(swaps) if swaps else None,
        "swap_p99_ms": percentile(swaps, 0.99) if swaps else None,
        "received_p50_ms": statistics.median(receive_latencies) if receive_latencies else None,
        "received_p99_ms": percentile(receive_latencies, 0.99) if receive_latencies else None,
    }
    return result


async def _cleanup(exchange: str, tap: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(tap)
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to publish")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--env", action="append", default=[], help="EVENTSCOPE_X=value for the server (repeat)"
    )
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"eventscope live latency: {result['database']}, {result['rate']:.0f} events/s, "
        f"{result['published']:,} published, {result['seen_in_browser']:,} seen in the browser"
    )
    if result["p99_ms"] is None:
        print("no rows arrived in the browser")
        return 1
    verdict = "PASS" if result["p99_ms"] < TARGET_P99_MS else "MISS"
    print(
        f"publish → row in the page: p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms,"
        f" p99 {result['p99_ms']:.0f} ms (target p99 < {TARGET_P99_MS:.0f} ms: {verdict})"
    )
    print(
        f"browser: {result['messages']} socket messages, handling one took p50 "
        f"{result['swap_p50_ms']:.1f} ms, p99 {result['swap_p99_ms']:.1f} ms"
    )
    print(
        f"publish → received by the recorder: p50 {result['received_p50_ms']:.0f} ms, "
        f"p99 {result['received_p99_ms']:.0f} ms"
    )
    print(
        f"baseline publish → bare consumer: p50 {result['baseline_p50_ms']:.1f} ms, "
        f"p99 {result['baseline_p99_ms']:.1f} ms; ratio p99 "
        f"{result['p99_ms'] / max(result['baseline_p99_ms'], 0.1):.0f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
