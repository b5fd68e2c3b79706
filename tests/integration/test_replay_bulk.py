"""Bulk replays against the real broker and both databases: 10,000 stored dead letters replayed
to the queue they died in, each delivered exactly once, with progress the batch row shows; a
cancel stops it between chunks; a worker stopped mid-batch carries on and still sends each
message once; a group selection takes only its group; a reason is required; what matched after
the start is not taken."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from pamqp.commands import Basic

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.filters import EventFilter
from eventscope.backend.replay import Replayer, ReplayRefused
from eventscope.backend.replay_bulk import BulkReplays, Selection
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from tests.conftest import AMQP_URL, Names, eventually, make_settings

pytestmark = pytest.mark.asyncio
WRITE = 2000


def dead_letter(n: int, queue: str, error: str = "timeout") -> Delivery:
    body = json.dumps({"id": f"evt_{n}", "type": "order.paid", "n": n}).encode()
    headers = {
        "x-death": [
            {
                "queue": queue,
                "reason": "rejected",
                "count": 1,
                "time": dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
                "exchange": "events",
                "routing-keys": ["order.paid"],
            }
        ],
        "x-exception-message": f"{error} after {n} ms",
    }
    raw = Basic.Properties(message_id=f"evt_{n}", headers=headers).marshal()
    return Delivery(
        "events.dlx",
        "order.paid",
        False,
        {"message_id": f"evt_{n}"},
        headers,
        body,
        dt.datetime.now(dt.UTC),
        raw_properties=raw,
    )


async def store_dead_letters(store: EventStore, deliveries: list[Delivery]) -> None:
    for start in range(0, len(deliveries), WRITE):
        await store.write([to_row(d, 1 << 20) for d in deliveries[start : start + WRITE]])


class Bench:
    def __init__(self, store: EventStore, settings: Settings, queue: str) -> None:
        self.store = store
        self.settings = settings
        self.queue = queue
        self.replayer = Replayer(store, settings)
        self.bulk = BulkReplays(store, self.replayer, settings)
        self.stop = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None

    def start_worker(self) -> None:
        self.stop = asyncio.Event()
        self.worker = asyncio.create_task(self.bulk.run(self.stop))

    async def halt_worker(self) -> None:
        self.stop.set()
        if self.worker is not None:
            await asyncio.wait_for(self.worker, 30)

    async def batch(self, batch_id: str) -> dict[str, Any]:
        batch = await self.store.replay_batches.get(batch_id)
        assert batch is not None
        return batch

    async def ended(self, batch_id: str, timeout: float = 120) -> dict[str, Any]:
        async def over() -> bool:
            return (await self.batch(batch_id))["state"] in ("finished", "cancelled", "failed")

        await eventually(over, timeout, f"bulk replay {batch_id} to end")
        return await self.batch(batch_id)


@pytest.fixture
async def bench(database_url: str, names: Names) -> AsyncIterator[Bench]:
    queue = f"test.bulk.{names.suffix}"
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.declare_queue(queue)
    await upgrade_async(database_url)
    settings = make_settings(
        database_url, names, replay_targets=(f"queue:{queue}",), replay_rate=0.0
    )
    store = EventStore(database_url)
    made = Bench(store, settings, queue)
    try:
        yield made
    finally:
        await made.halt_worker()
        await made.replayer.close()
        await store.close()
        await channel.queue_delete(queue)
        await connection.close()


async def drain(queue: str) -> list[dict[str, Any]]:
    """Every message in the queue now: body and replay headers (acked)."""
    connection = await aio_pika.connect(AMQP_URL)
    taken: list[dict[str, Any]] = []
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(fail=False, no_ack=True)) is not None:
            taken.append({"body": json.loads(message.body), "headers": dict(message.headers or {})})
    return taken


async def test_ten_thousand_dead_letters_are_each_delivered_once(bench: Bench) -> None:
    n = 10_000
    await store_dead_letters(bench.store, [dead_letter(i, bench.queue) for i in range(n)])
    preview = await bench.bulk.preview(Selection())
    assert preview.count == n and not preview.at_least
    assert preview.targets == [(f"queue {bench.queue}", n, True)]
    batch_id = await bench.bulk.start(Selection(), actor="ann", role="operator", reason="fixed")
    bench.start_worker()
    seen_progress = False
    while (batch := await bench.batch(batch_id))["state"] not in ("finished", "failed"):
        seen_progress |= 0 < batch["done"] < n
        await asyncio.sleep(0.05)
    assert batch["state"] == "finished", batch
    assert (batch["total"], batch["done"], batch["delivered"], batch["failed"]) == (n, n, n, 0)
    assert seen_progress, "the batch row never showed partial progress"
    messages = await drain(bench.queue)
    assert sorted(m["body"]["n"] for m in messages) == list(range(n))  # each exactly once
    assert len({m["headers"]["x-eventscope-replay-id"] for m in messages}) == n
    entries = await bench.store.replays.entries(1000, batch_id=batch_id)
    assert {e["state"] for e in entries} == {"delivered"}
    audit = [(a["action"], a["result"]) for a in await bench.store.audit.entries(10)]
    assert audit[:2] == [("replay-bulk", "finished"), ("replay-bulk", "requested")]
    # Replayed dead letters are no longer unresolved: a second bulk replay takes none.
    assert (await bench.bulk.preview(Selection())).count == 0


async def test_cancel_stops_between_chunks_and_nothing_more_is_sent(bench: Bench) -> None:
    n = 3000
    await store_dead_letters(bench.store, [dead_letter(i, bench.queue) for i in range(n)])
    bench.bulk.rate = 500.0  # slow enough to cancel mid-way
    batch_id = await bench.bulk.start(Selection(), actor="ann", role="operator", reason="x")
    bench.start_worker()

    async def started() -> bool:
        return (await bench.batch(batch_id))["done"] >= 200

    await eventually(started, 30, "the batch to make progress")
    assert await bench.bulk.cancel(batch_id, actor="bob", role="operator")
    batch = await bench.ended(batch_id)
    assert batch["state"] == "cancelled" and batch["done"] < n
    await asyncio.sleep(0.5)
    messages = await drain(bench.queue)
    assert len(messages) == batch["delivered"] == batch["done"]
    await asyncio.sleep(0.5)
    assert await drain(bench.queue) == []  # nothing sent after the cancel took
    assert not await bench.bulk.cancel(batch_id, actor="bob", role="operator")
    # The rest are still unresolved.
    assert (await bench.bulk.preview(Selection())).count == n - batch["done"]


async def test_a_worker_stopped_mid_batch_carries_on_and_sends_each_once(bench: Bench) -> None:
    n = 2000
    await store_dead_letters(bench.store, [dead_letter(i, bench.queue) for i in range(n)])
    bench.bulk.rate = 1000.0
    batch_id = await bench.bulk.start(Selection(), actor="ann", role="operator", reason="x")
    bench.start_worker()

    async def half() -> bool:
        return (await bench.batch(batch_id))["done"] >= 500

    await eventually(half, 30, "the batch to make progress")
    await bench.halt_worker()  # the process stops
    stopped = await bench.batch(batch_id)
    assert stopped["state"] == "running" and stopped["done"] < n
    bench.bulk = BulkReplays(bench.store, bench.replayer, bench.settings)  # a restart
    bench.start_worker()
    batch = await bench.ended(batch_id)
    assert batch["state"] == "finished" and batch["delivered"] == n
    messages = await drain(bench.queue)
    assert sorted(m["body"]["n"] for m in messages) == list(range(n))


async def test_a_group_selection_takes_its_group_and_nothing_that_came_later(
    bench: Bench,
) -> None:
    timeouts = [dead_letter(i, bench.queue, "timeout") for i in range(30)]
    missing = [dead_letter(100 + i, bench.queue, "order not found") for i in range(20)]
    await store_dead_letters(bench.store, timeouts + missing)
    from eventscope.backend.dead_letters import failure_of

    page = await bench.store.dead_letters.newest(EventFilter())
    fingerprint = next(
        f.fingerprint
        for r in page.rows
        if (f := failure_of(r)) is not None and "not found" in (f.error or "")
    )
    selection = Selection(fingerprint=fingerprint)
    assert (await bench.bulk.preview(selection)).count == 20
    batch_id = await bench.bulk.start(selection, actor="ann", role="operator", reason="x")
    # Dead letters of the same group stored after the start are not part of the batch.
    await store_dead_letters(bench.store, [dead_letter(200, bench.queue, "order not found")])
    bench.start_worker()
    batch = await bench.ended(batch_id)
    assert batch["total"] == 20 and batch["delivered"] == 20
    assert sorted(m["body"]["n"] for m in await drain(bench.queue)) == list(range(100, 120))


async def test_a_bulk_replay_needs_a_reason_and_an_allowed_target(bench: Bench) -> None:
    from eventscope.backend.replay_targets import Target

    with pytest.raises(ReplayRefused, match="reason"):
        await bench.bulk.start(Selection(), actor="ann", role="operator", reason="  ")
    with pytest.raises(ReplayRefused, match="queue:elsewhere"):
        await bench.bulk.start(
            Selection(), actor="ann", role="operator", reason="x", target=Target.queue("elsewhere")
        )
    assert await bench.store.replay_batches.newest(5) == []


async def test_refused_messages_are_in_the_ledger_with_the_reason(bench: Bench) -> None:
    await store_dead_letters(
        bench.store,
        [dead_letter(1, bench.queue), dead_letter(2, "payments"), dead_letter(3, bench.queue)],
    )
    batch_id = await bench.bulk.start(Selection(), actor="ann", role="operator", reason="x")
    bench.start_worker()
    batch = await bench.ended(batch_id)
    assert (batch["delivered"], batch["failed"]) == (2, 1)
    refused = [e for e in await bench.store.replays.entries(10) if e["state"] == "failed"]
    assert len(refused) == 1 and "queue:payments" in refused[0]["result"]
    assert len(await drain(bench.queue)) == 2


async def test_two_workers_never_carry_one_batch_at_once(bench: Bench) -> None:
    n = 1500
    await store_dead_letters(bench.store, [dead_letter(i, bench.queue) for i in range(n)])
    batch_id = await bench.bulk.start(Selection(), actor="ann", role="operator", reason="x")
    other = BulkReplays(bench.store, bench.replayer, bench.settings)  # a second process
    other_stop = asyncio.Event()
    other_task = asyncio.create_task(other.run(other_stop))
    bench.start_worker()
    try:
        batch = await bench.ended(batch_id)
    finally:
        other_stop.set()
        await asyncio.wait_for(other_task, 30)
    assert batch["delivered"] == n and batch["done"] == n
    messages = await drain(bench.queue)
    assert sorted(m["body"]["n"] for m in messages) == list(range(n))  # each exactly once
