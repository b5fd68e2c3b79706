"""`eventscope replay` in a subprocess, on both databases: with `--yes` it replays the selected
dead letters to the queue they died in, each once, prints the preview and the outcome, exits 0
and is audited as `cli:<os user>`; without `--yes` and no terminal it replays nothing; a
filter narrows it; a target outside the allowlist is refused."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import aio_pika
import pytest

from eventscope.backend.envelope import to_row
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from tests.conftest import AMQP_URL, Names
from tests.integration.test_replay_bulk import dead_letter

pytestmark = pytest.mark.asyncio


def run_replay(database_url: str, queue: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update(
        EVENTSCOPE_DATABASE_URL=database_url,
        EVENTSCOPE_AMQP_URL=AMQP_URL,
        EVENTSCOPE_REPLAY_TARGETS=f"queue:{queue}",
        EVENTSCOPE_REPLAY_RATE="0",
    )
    return subprocess.run(
        [sys.executable, "-m", "eventscope.web.cli", "replay", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def queue(names: Names) -> AsyncIterator[str]:
    name = f"test.cli.{names.suffix}"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.declare_queue(name)
    try:
        yield name
    finally:
        await channel.queue_delete(name)
        await connection.close()


async def depth(queue: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def seeded(database_url: str, queue: str) -> None:
    await upgrade_async(database_url)
    store = EventStore(database_url)
    try:
        failing = [dead_letter(n, queue) for n in range(40)]
        elsewhere = [dead_letter(100 + n, queue, "disk full") for n in range(5)]
        rows = [to_row(d, 1 << 20) for d in failing + elsewhere]
        for row in rows[40:]:
            row["routing_key"] = "order.shipped"
        await store.write(rows)
    finally:
        await store.close()


async def test_replay_with_yes_sends_each_dead_letter_once_and_is_audited(
    database_url: str, queue: str
) -> None:
    await seeded(database_url, queue)
    done = await asyncio.to_thread(
        run_replay, database_url, queue, "--reason", "cli test", "--yes",
        "--routing-key-exact", "order.paid",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "40 to replay" in done.stderr and f"queue {queue}" in done.stderr
    assert "40 delivered, 0 failed" in done.stderr
    assert await depth(queue) == 40  # the filter left the five order.shipped ones out
    store = EventStore(database_url)
    try:
        audit = await store.audit.entries(5)
        assert audit[0]["actor"] == f"cli:{getpass.getuser()}"
        assert (audit[0]["action"], audit[0]["result"]) == ("replay-bulk", "finished")
    finally:
        await store.close()
    again = await asyncio.to_thread(run_replay, database_url, queue, "--reason", "x", "--yes")
    assert again.returncode == 0 and "5 to replay" in again.stderr  # the rest, not the 40


async def test_without_yes_and_no_terminal_nothing_is_replayed(
    database_url: str, queue: str
) -> None:
    await seeded(database_url, queue)
    done = await asyncio.to_thread(run_replay, database_url, queue, "--reason", "x")
    assert done.returncode == 2 and "pass --yes" in done.stderr
    assert await depth(queue) == 0
    refused = await asyncio.to_thread(
        run_replay, database_url, queue, "--reason", "x", "--yes", "--target", "queue:elsewhere"
    )
    assert refused.returncode == 2 and "queue:elsewhere" in refused.stderr
    assert await depth(queue) == 0
