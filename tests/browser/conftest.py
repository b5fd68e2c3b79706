"""Browser fixtures: a real `eventscope serve` in a subprocess, one chromium, a publisher.

The server records a unique exchange into a fresh SQLite file; every wait is on a condition
(the server answering, a selector, a JS predicate), never a fixed sleep. The server's output is
attached to any failing test's report. Run with `pytest -p no:asyncio tests/browser`: Playwright's
sync API keeps an event loop running in the main thread, so aio-pika runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

AMQP_URL = os.environ.get("EVENTSCOPE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
STARTUP_TIMEOUT = 60.0
EXPECT_TIMEOUT_MS = 15_000

# Injected through the devtools protocol, so the page's CSP (script-src 'self') does not apply.
# It records what tests wait on or assert: the live socket's state and CSP violations.
PAGE_PROBE = """
window.__wsOpen = false;
window.__cspViolations = [];
window.__wsMessages = 0;
document.addEventListener("htmx:wsOpen", () => { window.__wsOpen = true; });
document.addEventListener("htmx:wsClose", () => { window.__wsOpen = false; });
document.addEventListener("htmx:wsAfterMessage", () => { window.__wsMessages += 1; });
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _in_worker_thread(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine to completion on a fresh event loop in another thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="amqp") as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result(timeout=60)


@dataclass
class Server:
    """A running `eventscope serve` and the names it records."""

    base_url: str
    token: str
    exchange: str
    tap_queue: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str, *, auth: bool = True) -> Any:
        request = urllib.request.Request(self.url(path))
        if auth:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


def _wait_for_server(server: Server, timeout: float) -> None:
    """Poll until the server is healthy and its recorder is consuming; fail with its output.

    The pause between polls is `process.wait`, so a server that dies is noticed at once.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            if server.get_json("/healthz", auth=False).get("status") == "ok":
                status = server.get_json("/api/status")
                if status.get("broker_connected"):
                    return
                last = f"/api/status: {status}"
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = repr(exc)
        try:
            code = server.process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"eventscope exited with {code} while starting\n--- output ---\n{server.log()}")
    pytest.fail(f"eventscope not ready after {timeout}s ({last})\n--- output ---\n{server.log()}")


def _delete_topology(exchange: str, queue: str) -> None:
    async def delete() -> None:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)
            await channel.exchange_delete(f"{exchange}.dlx")

    _in_worker_thread(delete)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`eventscope serve` on a free port, recording a unique exchange into a fresh SQLite file."""
    workdir = tmp_path_factory.mktemp("eventscope-server")
    suffix = uuid.uuid4().hex[:8]
    port = _free_port()
    token = secrets.token_urlsafe(24)
    exchange, tap_queue = f"test.browser.{suffix}", f"test.browser.tap.{suffix}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update(
        EVENTSCOPE_TOKEN=token,
        EVENTSCOPE_AMQP_URL=AMQP_URL,
        EVENTSCOPE_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/events.db",
        EVENTSCOPE_EXCHANGES=f"{exchange},{exchange}.dlx",  # the DLX: native dead letters
        EVENTSCOPE_REPLAY_TARGETS=f"exchange:{exchange},queue:test.browser.*",
        EVENTSCOPE_REPLAY_QUIET_SECONDS="1",
        EVENTSCOPE_TAP_QUEUE=tap_queue,
        EVENTSCOPE_HOST="127.0.0.1",
        EVENTSCOPE_PORT=str(port),
        EVENTSCOPE_BATCH_MAX_WAIT_MS="50",
        PYTHONUNBUFFERED="1",
    )
    log_path = workdir / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "eventscope.web.cli", "serve"],
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Server(f"http://127.0.0.1:{port}", token, exchange, tap_queue, process, log_path)
    try:
        _wait_for_server(running, STARTUP_TIMEOUT)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        _delete_topology(exchange, tap_queue)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing browser test shows what the server logged."""
    report = yield
    running = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(running, Server):
        report.sections.append(("eventscope server output (tail)", running.log()[-8000:]))
    return report


@dataclass
class Publisher:
    """Publishes to the server's exchange with publisher confirms; returns once the broker acked.

    `mandatory` with `on_return_raises` turns an unroutable publish (tap queue not bound) into
    an error instead of a silent success.
    """

    exchange: str
    sent: list[str] = field(default_factory=list)

    def publish(
        self,
        routing_key: str,
        body: dict[str, Any] | bytes,
        headers: dict[str, Any] | None = None,
    ) -> None:
        self.publish_many([(routing_key, body, headers)])

    def publish_many(
        self, messages: list[tuple[str, dict[str, Any] | bytes, dict[str, Any] | None]]
    ) -> None:
        async def send() -> None:
            connection = await aio_pika.connect(
                AMQP_URL, client_properties={"connection_name": "test-browser-publisher"}
            )
            async with connection:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await channel.get_exchange(self.exchange, ensure=True)
                for routing_key, body, headers in messages:
                    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                    message = aio_pika.Message(
                        raw,
                        headers=headers,
                        content_type="application/json",
                        message_id=str(uuid.uuid4()),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    )
                    await exchange.publish(message, routing_key=routing_key, mandatory=True)
                    self.sent.append(routing_key)

        _in_worker_thread(send)


@pytest.fixture
def publisher(server: Server) -> Publisher:
    return Publisher(server.exchange)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """One chromium for the whole run. A missing chromium fails the run, it never skips."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `make browser-deps` (apt-get install chromium)")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    instance = playwright_instance.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
    )
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots land in artifacts/ at the repo root (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def context(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """A fresh context per test; the page probe is installed before any page script runs."""
    ctx = browser.new_context(
        base_url=server.base_url, viewport={"width": 1400, "height": 900}, color_scheme="light"
    )
    ctx.set_default_timeout(EXPECT_TIMEOUT_MS)
    ctx.add_init_script(PAGE_PROBE)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, server: Server) -> Page:
    """Logged in through the printed login link, which lands on the live timeline."""
    return log_in(context.new_page(), server)


def log_in(tab: Page, server: Server) -> Page:
    tab.goto(f"/login?token={server.token}")
    assert tab.url == server.url("/"), f"login link did not land on the timeline: {tab.url}"
    return tab


@pytest.fixture
def login(server: Server) -> Callable[[Page], Page]:
    """For tests that attach listeners before the first navigation."""
    return lambda tab: log_in(tab, server)
