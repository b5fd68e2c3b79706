"""`eventscope.testing` as a user meets it: a pytest run in a subprocess, the `eventscope`
fixture loaded by the package's `pytest11` entry point, a live `eventscope serve` recording
what a small "shop" publishes to RabbitMQ. Passing assertions pass; a missing event, an extra
one or a changed value fails with a message that shows what did arrive."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import AMQP_URL, Broker, Names, free_port

TOKEN = "plugin-test-token"
# Plugins of this environment a user's project would not have (they cost seconds at start).
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:hypothesispytest")
QUIET_PLUGINS += ("-p", "no:faker")

# The system under test: publishes the seed's order flow (one correlation per checkout).
SHOP = '''
import asyncio, datetime, json, os, uuid
import aio_pika

def _event(kind, event_type, correlation, order_id, causation=None, **data):
    return {
        "id": str(uuid.uuid4()),
        "type": kind,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
        "aggregateId": order_id,
        "aggregateType": "Order",
        "eventType": event_type,
        "version": 1,
        "data": {"orderId": order_id, **data},
        "metadata": {"correlationId": correlation, "causationId": causation, "source": "shop"},
    }

async def _publish(events):
    connection = await aio_pika.connect(os.environ["SHOP_AMQP_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(os.environ["SHOP_EXCHANGE"])
        for event in events:
            await exchange.publish(
                aio_pika.Message(json.dumps(event).encode(), content_type="application/json"),
                routing_key=event["type"],
            )

def checkout(*, pay=True, total=62.49):
    """What clicking "Pay" does in the shop; returns the request's correlation id."""
    correlation, order_id = f"req_{uuid.uuid4().hex[:12]}", f"ord_{uuid.uuid4().hex[:6]}"
    created = _event("order.created", "OrderCreated", correlation, order_id, total=total)
    events = [created]
    if pay:
        events.append(_event("payment.succeeded", "PaymentSucceeded", correlation, order_id,
                             causation=created["id"], total=total, currency="EUR"))
    asyncio.run(_publish(events))
    return correlation
'''

USER_TESTS = """
from shop import checkout


def test_checkout_emits_the_order_flow(eventscope):
    correlation = checkout()
    events = eventscope.assert_sequence(
        correlation, ["order.created", "PaymentSucceeded"], quiet=0.5
    )
    assert [e["event_type"] for e in events] == ["OrderCreated", "PaymentSucceeded"]


def test_wait_for_then_nothing_else(eventscope):
    correlation = checkout()
    (payment,) = eventscope.wait_for(correlation_id=correlation, routing_key="payment.*")
    assert eventscope.event(payment["id"])["body_json"]["data"]["total"] == 62.49
    eventscope.assert_no_event(correlation_id=correlation, routing_key="payment.failed", quiet=0.5)


def test_a_run_matches_the_fixture_of_an_earlier_one(eventscope, tmp_path):
    first = checkout()
    eventscope.wait_for(correlation_id=first, min_count=2)
    fixture = eventscope.export_fixture(first, tmp_path / "checkout.json")
    eventscope.assert_matches_fixture(checkout(), fixture)


def test_MISSING_PAYMENT(eventscope):
    correlation = checkout(pay=False)
    eventscope.assert_sequence(correlation, ["order.created", "payment.succeeded"], timeout=2)


def test_CHANGED_TOTAL(eventscope, tmp_path):
    first = checkout()
    eventscope.wait_for(correlation_id=first, min_count=2)
    fixture = eventscope.export_fixture(first, tmp_path / "checkout.json")
    eventscope.assert_matches_fixture(checkout(total=60.0), fixture)


def test_UNEXPECTED_EVENT(eventscope):
    correlation = checkout()
    eventscope.wait_for(correlation_id=correlation, min_count=2)
    eventscope.assert_no_event(correlation_id=correlation, routing_key="payment.#", quiet=0.5)
"""


@dataclass(frozen=True)
class Live:
    url: str
    names: Names
    log: Path


@pytest.fixture
def live(tmp_path: Path, names: Names, broker: Broker) -> Iterator[Live]:
    """`eventscope serve` on a free port, recording the test's exchange."""
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
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("eventscope")), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_recording(url, process, log)
        yield Live(url, names, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_recording(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"eventscope serve exited:\n{log.read_text()}")
        try:
            status = httpx.get(
                f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2
            )
            if status.status_code == 200 and status.json()["broker_connected"]:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"eventscope serve did not start recording:\n{log.read_text()}")


def run_pytest(
    directory: Path, env_extra: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess, as a user's project runs it (its own directory, no config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update(env_extra)
    env["PYTHONPATH"] = str(directory)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *QUIET_PLUGINS, *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_users_pytest_run_asserts_on_recorded_events(tmp_path: Path, live: Live) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "shop.py").write_text(SHOP)
    (project / "test_shop.py").write_text(textwrap.dedent(USER_TESTS))
    result = run_pytest(
        project,
        {
            "EVENTSCOPE_URL": live.url,  # the URL from the environment, the token as a flag
            "SHOP_AMQP_URL": AMQP_URL,
            "SHOP_EXCHANGE": live.names.exchange,
        },
        "-rA",
        f"--eventscope-token={TOKEN}",
        "test_shop.py",
    )
    output = result.stdout + result.stderr
    context = f"pytest output:\n{output}\n\nserver log:\n{live.log.read_text()[-3000:]}"
    assert "3 passed" in output and "3 failed" in output, context
    assert f"eventscope: {live.url}" in output, "the report header names the server"
    for name in ("checkout_emits", "wait_for_then", "a_run_matches_the_fixture"):
        assert f"PASSED test_shop.py::test_{name}" in output, context

    missing = _failure(output, "test_MISSING_PAYMENT")
    assert "did not follow the expected sequence (2 expected, 1 arrived" in missing, context
    assert "order.created" in missing and "OrderCreated" in missing, "what did arrive"
    assert "payment.succeeded" in missing and "(nothing)" in missing and "≠" in missing

    changed = _failure(output, "test_CHANGED_TOTAL")
    assert "does not match the fixture" in changed, context
    assert "body.data.total: expected 62.49, got 60.0" in changed, context
    assert "orderId" not in changed and "timestamp" not in changed, "ids and times never differ"

    extra = _failure(output, "test_UNEXPECTED_EVENT")
    assert "expected no event matching" in extra and "payment.succeeded" in extra, context


def test_the_fixture_says_what_is_missing_to_reach_eventscope(tmp_path: Path, live: Live) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_needs_it.py").write_text("def test_it(eventscope):\n    pass\n")
    unset = run_pytest(project, {}, "test_needs_it.py")
    assert "--eventscope-url or EVENTSCOPE_URL" in unset.stdout, unset.stdout
    wrong = run_pytest(project, {"EVENTSCOPE_TOKEN": "not-it"}, "--eventscope-url", live.url)
    assert "refused the token (401" in wrong.stdout, wrong.stdout
    closed = run_pytest(project, {}, f"--eventscope-url=http://127.0.0.1:{free_port()}")
    assert "eventscope is not reachable at" in closed.stdout, closed.stdout
    assert "Traceback" not in unset.stdout + wrong.stdout + closed.stdout, "no stack to read"


def _failure(output: str, test: str) -> str:
    """The error lines (`E ...`) of the failure section pytest prints for one test."""
    marker = f"_ {test} _"
    assert marker in output, f"no failure section for {test}:\n{output}"
    section = output.split(marker, 1)[1]
    section = section.split("\n___", 1)[0].split("= short test summary", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("E "))
