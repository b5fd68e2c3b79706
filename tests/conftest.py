"""Shared fixtures: real broker, real SQLite and Postgres, unique names per test.

A missing broker or database fails the run (never a skip). Every test gets its own exchange,
tap queue and database, so tests never see each other's events.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from eventscope.backend.settings import Settings, load_settings
from eventscope.backend.store.migrate import upgrade

AMQP_URL = os.environ.get("EVENTSCOPE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN = os.environ.get("EVENTSCOPE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def services_up() -> None:
    """Fail loudly when the broker or Postgres is down: tests need the real things."""
    missing = [
        name
        for name, port in (("RabbitMQ", 5672), ("PostgreSQL", 5432))
        if not _port_open("127.0.0.1", port)
    ]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not reachable on 127.0.0.1: "
            "run ../shared/scripts/ensure-services"
        )


def psql(sql: str, database: str = "postgres") -> str:
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-tAc", sql],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr}")
    return result.stdout.strip()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A Postgres database migrated once; each test copies it (fast, isolated)."""
    name = f"es_tmpl_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {name}")
    upgrade(f"{PG_ADMIN}/{name}")
    yield name
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = f"es_test_{uuid.uuid4().hex[:10]}"
    psql(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield f"{PG_ADMIN}/{name}"
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs a storage test once on SQLite and once on Postgres."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@dataclass(frozen=True)
class Names:
    suffix: str
    exchange: str
    tap_queue: str
    connection: str


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    suffix = f"{slug}-{uuid.uuid4().hex[:6]}"
    return Names(
        suffix=suffix,
        exchange=f"test.{suffix}",
        tap_queue=f"test.tap.{suffix}",
        connection=f"test-recorder-{suffix}",
    )


def make_settings(database_url: str, names: Names, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "amqp_url": AMQP_URL,
        "database_url": database_url,
        "exchanges": (names.exchange,),
        "tap_queue": names.tap_queue,
        "batch_max_wait_ms": 50,
        "allowed_hosts": ("testserver.local",),  # the ASGI test client's Host
    }
    values.update(overrides)
    return load_settings({}, values)


class Broker:
    """A publisher on its own connection, with confirms: a publish that returns arrived."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: aio_pika.abc.AbstractChannel,
        exchange: aio_pika.abc.AbstractExchange,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.exchange = exchange

    async def publish(self, routing_key: str, body: bytes, **properties: Any) -> None:
        await self.exchange.publish(aio_pika.Message(body, **properties), routing_key=routing_key)

    async def publish_many(
        self, messages: list[tuple[str, bytes, dict[str, Any]]], window: int = 500
    ) -> None:
        for start in range(0, len(messages), window):
            await asyncio.gather(
                *(
                    self.publish(rk, body, **props)
                    for rk, body, props in messages[start : start + window]
                )
            )

    async def queue_depth(self, queue: str) -> int:
        channel = await self.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await channel.close()


@pytest.fixture
async def broker(names: Names) -> AsyncIterator[Broker]:
    connection = await aio_pika.connect(
        AMQP_URL, client_properties={"connection_name": f"test-publisher-{names.suffix}"}
    )
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    try:
        yield Broker(connection, channel, exchange)
    finally:
        cleanup = await connection.channel()
        await cleanup.queue_delete(names.tap_queue)
        await cleanup.exchange_delete(names.exchange)
        await connection.close()


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 30.0,
    what: str = "condition",
) -> None:
    """Wait for a condition (polling), failing with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    recorder: Any
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=30)


@pytest.fixture
async def start_recorder() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start recorders in this process; each is stopped and its store closed at teardown."""
    from eventscope.backend.ingest.recorder import Recorder
    from eventscope.backend.store.eventstore import EventStore

    running: list[Running] = []
    stores = []

    async def start(
        settings: Settings, recorder_class: type = Recorder, connection_name: str = "test-recorder"
    ) -> Running:
        store = EventStore(settings.database_url)
        stores.append(store)
        recorder = recorder_class(settings, store, connection_name=connection_name)
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop))
        item = Running(recorder, task, stop)
        running.append(item)
        await eventually(lambda: recorder.status.broker_connected, 20, "recorder to connect")
        return item

    yield start
    for item in running:
        if not item.task.done():
            await item.halt()
    for store in stores:
        await store.close()
