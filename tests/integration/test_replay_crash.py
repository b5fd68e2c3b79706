"""Crashes injected into a replay (SIGKILL, in a child process, on both databases): after the
publish and before its confirmation is handled, and after the confirmation and before the
ledger says so. After a restart the ledger's row is reconciled — nothing lost (the message is
in the queue, once), the dead letter unresolved again, and the row says the message may have
arrived and names the replay id the copy carries, so a second replay is told from the first."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from eventscope.backend.envelope import to_row
from eventscope.backend.replay import STALE_AFTER, Replayer
from eventscope.backend.replay_publisher import REPLAY_ID_HEADER
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from tests.conftest import AMQP_URL, Names, make_settings
from tests.integration.test_replay_bulk import dead_letter

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def queue(names: Names) -> AsyncIterator[str]:
    name = f"test.crash.{names.suffix}"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.declare_queue(name)
    try:
        yield name
    finally:
        await channel.queue_delete(name)
        await connection.close()


async def messages(queue: str) -> list[dict[str, object]]:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        taken = []
        while (message := await declared.get(fail=False, no_ack=True)) is not None:
            taken.append(dict(message.headers or {}))
        return taken


def run_child(point: str, event_id: int, database_url: str, queue: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    env.update(
        EVENTSCOPE_DATABASE_URL=database_url,
        EVENTSCOPE_AMQP_URL=AMQP_URL,
        EVENTSCOPE_REPLAY_TARGETS=f"queue:{queue}",
    )
    child = subprocess.run(
        [sys.executable, "-m", "tests.replay_crash_child", point, str(event_id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -9, child.stderr  # killed, not finished
    return child.returncode


@pytest.mark.parametrize("point", ["after-publish", "after-confirm"])
async def test_a_replay_killed_mid_way_is_reconciled_and_loses_nothing(
    point: str, database_url: str, names: Names, queue: str
) -> None:
    await upgrade_async(database_url)
    store = EventStore(database_url)
    try:
        await store.write([to_row(dead_letter(7, queue), 1 << 20)])
        (row,) = (await store.events.page(1)).rows
        event_id = int(row["id"])
        await asyncio.to_thread(run_child, point, event_id, database_url, queue)

        (left,) = await store.replays.entries(5)
        assert left["state"] == "publishing"  # the process died before the ledger moved
        assert (await store.replays.states([event_id]))[event_id]["state"] == "replaying"
        await asyncio.sleep(0.3)
        arrived = await messages(queue)
        assert [h[REPLAY_ID_HEADER] for h in arrived] == [left["replay_id"]]  # once

        settings = make_settings(database_url, names, replay_targets=(f"queue:{queue}",))
        replayer = Replayer(store, settings)  # the restart
        try:
            later = dt.datetime.now(dt.UTC) + STALE_AFTER
            assert await replayer.reconcile_once(now=later) == 1
            ended = await store.replays.entry(left["replay_id"])
            assert ended is not None and ended["state"] == "unknown"
            assert left["replay_id"] in (ended["result"] or "")
            assert await store.replays.states([event_id]) == {}  # unresolved again
            again = await replayer.replay(event_id, actor="bob", role="operator", reason="x")
        finally:
            await replayer.close()
        assert again["state"] == "delivered" and again["replay_count"] == 2
        second = await messages(queue)
        assert [h[REPLAY_ID_HEADER] for h in second] == [again["replay_id"]]
        assert second[0]["x-eventscope-original-id"] == arrived[0]["x-eventscope-original-id"]
        audit = [(a["actor"], a["result"]) for a in await store.audit.entries(10)]
        assert ("eventscope", "unknown") in audit
    finally:
        await store.close()
