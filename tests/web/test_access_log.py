"""`eventscope serve` as users run it: its access log shows every request, but never the token
of a login link (right or wrong) nor any other secret query parameter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import AMQP_URL, Broker, Names, free_port

TOKEN = "s3cret-operator-t0ken-for-the-log-test"
NEAR_MISS = "s3cret-operator-t0ken-for-the-log-tesX"


def wait_until_serving(base: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"eventscope serve exited: {process.stdout.read()}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("eventscope serve did not answer /healthz")


async def test_the_access_log_never_shows_a_login_token(
    tmp_path: Path, names: Names, broker: Broker
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update(
        EVENTSCOPE_AMQP_URL=AMQP_URL,
        EVENTSCOPE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/events.db",
        EVENTSCOPE_EXCHANGES=names.exchange,
        EVENTSCOPE_TAP_QUEUE=names.tap_queue,
        EVENTSCOPE_PORT=str(port),
        EVENTSCOPE_TOKEN=TOKEN,
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("eventscope")), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process)
        with httpx.Client(base_url=base, timeout=10) as http:
            link = http.get(f"/login?next=%2F&token={TOKEN}", follow_redirects=False)
            assert link.status_code == 303
            assert http.get(f"/login?token={NEAR_MISS}").status_code == 401
            assert http.get("/login?password=hunter2&next=/").status_code == 200
            assert http.get("/api/events?limit=1").status_code == 200  # the session
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "GET /login?next=%2F&token=*** HTTP/1.1" in output  # logged, redacted
    assert "GET /login?token=*** HTTP/1.1" in output
    assert "GET /api/events?limit=1 HTTP/1.1" in output  # other queries untouched
    for secret in (TOKEN, NEAR_MISS, "hunter2"):
        assert secret not in output, secret
