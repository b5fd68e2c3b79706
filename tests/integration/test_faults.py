"""Faults against the real services: SIGKILL mid-stream, a dropped connection, a database outage.

Each ends with exactly the published events stored: none lost, none doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.models import events
from tests.conftest import AMQP_URL, Broker, Names, eventually, make_settings, psql
from tests.integration.test_ingest import seed_event

REPO = Path(__file__).resolve().parents[2]


async def count_and_distinct(database_url: str) -> tuple[int, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(events))
            distinct = await conn.scalar(select(func.count(events.c.event_id.distinct())))
            return int(total or 0), int(distinct or 0)
    finally:
        await engine.dispose()


def start_ingest(database_url: str, names: Names, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EVENTSCOPE_AMQP_URL": AMQP_URL,
        "EVENTSCOPE_DATABASE_URL": database_url,
        "EVENTSCOPE_EXCHANGES": names.exchange,
        "EVENTSCOPE_TAP_QUEUE": names.tap_queue,
        "EVENTSCOPE_BATCH_MAX_WAIT_MS": "50",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "eventscope.web.cli", "ingest"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )


async def consumers(broker: Broker, queue: str) -> int:
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)
    except Exception:
        return 0
    finally:
        if not channel.is_closed:
            await channel.close()


async def test_sigkill_mid_stream_of_20000_then_restart_stores_each_exactly_once(
    database_url: str, names: Names, broker: Broker, tmp_path: Path
) -> None:
    total = 20_000
    log = tmp_path / "ingest.log"
    proc = start_ingest(database_url, names, log)
    try:
        await eventually(lambda: consumers(broker, names.tap_queue), 30, "the recorder to consume")
        publishing = asyncio.create_task(
            broker.publish_many(
                [("order.created", seed_event(i), {}) for i in range(total)], window=1000
            )
        )
        await eventually(
            lambda: _stored_at_least(database_url, 2_000), 60, "a first part to be stored"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at, _ = await count_and_distinct(database_url)
        await publishing
        assert killed_at < total, "the kill must land mid-stream"

        proc = start_ingest(database_url, names, log)
        await eventually(lambda: _stored_at_least(database_url, total), 120, f"all {total} stored")
        await eventually(lambda: _queue_empty(broker, names.tap_queue), 30, "tap queue drained")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    stored, distinct = await count_and_distinct(database_url)
    assert (stored, distinct) == (total, total), log.read_text()[-3000:]


async def _stored_at_least(database_url: str, n: int) -> bool:
    stored, _ = await count_and_distinct(database_url)
    return stored >= n


async def _queue_empty(broker: Broker, queue: str) -> bool:
    return await broker.queue_depth(queue) == 0


def close_connection_named(name: str) -> None:
    """Close one client connection from the broker side, as a network cut would."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if name in line]
    assert pids, f"connection {name} not found in:\n{listing}"
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "test: cut"],
            check=True,
            timeout=60,
            capture_output=True,
        )


async def test_connection_closed_mid_stream_reconnects_and_loses_nothing(
    sqlite_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    total = 5_000
    run = await start_recorder(make_settings(sqlite_url, names), connection_name=names.connection)
    publishing = asyncio.create_task(
        broker.publish_many(
            [("order.created", seed_event(i), {}) for i in range(total)], window=250
        )
    )
    await eventually(lambda: run.recorder.status.stored >= 500, 30, "a first part stored")
    await asyncio.to_thread(close_connection_named, names.connection)
    await eventually(lambda: not run.recorder.status.broker_connected, 15, "the cut to be noticed")
    await publishing
    await eventually(lambda: run.recorder.status.broker_connected, 30, "the recorder to reconnect")
    await eventually(lambda: _stored_at_least(sqlite_url, total), 60, f"all {total} stored")
    await eventually(lambda: _queue_empty(broker, names.tap_queue), 30, "tap queue drained")
    await run.halt()
    assert await count_and_distinct(sqlite_url) == (total, total)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_database_outage_holds_the_batch_and_commits_when_back(
    pg_url: str, names: Names, broker: Broker, start_recorder, queue_type: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    run = await start_recorder(
        make_settings(pg_url, names, tap_queue_type=queue_type, prefetch=500)
    )
    await broker.publish_many([("order.created", seed_event(i), {}) for i in range(100)])
    await eventually(lambda: run.recorder.status.stored >= 100, 20, "the first hundred")

    psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
    try:
        terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
        psql(f"{terminate}'{database}'")
        await broker.publish_many([("order.created", seed_event(i), {}) for i in range(100, 1100)])
        await eventually(
            lambda: run.recorder.status.database_error is not None, 20, "the outage to be seen"
        )
        # Held, not dropped and not nacked: the broker stops at the prefetch bound.
        await eventually(lambda: run.recorder.status.holding == 500, 20, "prefetch-bound holding")
        assert await broker.queue_depth(names.tap_queue) == 500
        assert run.recorder.status.stored == 100
        assert run.recorder.status.health().state == "stopped", "never claims health"
    finally:
        psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
    await eventually(lambda: run.recorder.status.stored >= 1100, 60, "the held events committed")
    await eventually(lambda: _queue_empty(broker, names.tap_queue), 30, "tap queue drained")
    assert run.recorder.status.database_error is None
    assert run.recorder.status.reduced == 0, "a database that is down is retried, never split"
    await run.halt()
    assert await count_and_distinct(pg_url) == (1100, 1100)
