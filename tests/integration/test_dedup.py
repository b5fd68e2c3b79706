"""Deduplication in both directions (hardening item 4), on the real broker and both databases.

A tap redelivery of a stored observation is stored once; a genuine second publish of the same
bytes is a second observation even when it arrives flagged `redelivered` (a recorder took it and
died before committing it). What tells them apart is what eventscope wrote itself: the batches
committed but not known to be acked (`pending_acks`), and whether the recorder that holds them is
still connected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pytest
from sqlalchemy import func, select

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.ingest.recorder import Recorder
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.eventstore import EventStore
from tests.conftest import Broker, Names, eventually, make_settings
from tests.integration.test_faults import close_connection_named
from tests.integration.test_ingest import CrashBeforeAck, seed_event, stored_rows

PROPS = {"message_id": "evt_dup", "content_type": "application/json"}


class TakesNothing(Recorder):
    """Receives deliveries and dies before committing any: they stay unacked until it stops,
    then the broker redelivers them flagged `redelivered`."""

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        return None


class DiesAfterFirstCommit(Recorder):
    """Commits its first batch and dies before acking it: it takes nothing afterwards."""

    dead = False

    async def _ack(self, *args: Any, **kwargs: Any) -> None:
        self.dead = True

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        if not self.dead:
            await super()._on_message(message)


class LosesTheFirstAck(Recorder):
    """Its connection is closed by the broker between its first commit and that batch's ack."""

    cutting = False
    cut = False  # the connection is closed (the ack below goes nowhere)

    async def _ack(self, *args: Any, **kwargs: Any) -> None:
        if not self.cutting:
            self.cutting = True
            await asyncio.to_thread(close_connection_named, self.connection_name)
            self.cut = True
        await super()._ack(*args, **kwargs)


async def _depth_is(broker: Broker, queue: str, depth: int) -> bool:
    return await broker.queue_depth(queue) == depth


async def test_identical_publish_redelivered_after_a_crash_before_commit_is_a_second_observation(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(database_url, names)
    body = seed_event(1)
    first = await start_recorder(settings, connection_name=f"{names.connection}-1")
    await broker.publish("order.created", body, **PROPS)
    await eventually(lambda: first.recorder.status.stored == 1, 20, "the first publish stored")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "and acked")
    await first.halt()

    crashing = await start_recorder(settings, TakesNothing, f"{names.connection}-2")
    await broker.publish("order.created", body, **PROPS)  # the same bytes, published again
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "taken by the recorder")
    await crashing.halt()  # dies before committing: the broker redelivers it, flagged
    assert await broker.queue_depth(names.tap_queue) == 1

    third = await start_recorder(settings, connection_name=f"{names.connection}-3")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 20, "the redelivery handled")
    await eventually(lambda: third.recorder.status.stored == 1, 20, "a second observation")
    await third.halt()

    rows = await stored_rows(database_url)
    assert [(r["observation"], r["redelivered"]) for r in rows] == [(1, False), (2, True)]
    assert third.recorder.status.skipped_redeliveries == 0
    assert third.recorder.status.duplicates == 1


async def test_two_identical_publishes_taken_by_a_crashed_recorder_end_as_two_rows(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(database_url, names)
    crashing = await start_recorder(settings, TakesNothing, f"{names.connection}-1")
    body = seed_event(7)
    await broker.publish("order.created", body, **PROPS)
    await broker.publish("order.created", body, **PROPS)
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "both taken")
    await crashing.halt()
    assert await broker.queue_depth(names.tap_queue) == 2

    run = await start_recorder(settings, connection_name=f"{names.connection}-2")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 20, "both redeliveries handled")
    await eventually(lambda: run.recorder.status.stored == 2, 20, "two observations")
    await run.halt()
    rows = await stored_rows(database_url)
    assert [(r["observation"], r["redelivered"]) for r in rows] == [(1, True), (2, True)]


async def test_crash_after_committing_one_of_two_identical_publishes_ends_as_two_rows(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    """The first copy is committed (not acked), the second only received, then the recorder
    dies: both come back flagged; one is the stored observation, the other a new one."""
    settings = make_settings(database_url, names)
    crashing = await start_recorder(settings, DiesAfterFirstCommit, f"{names.connection}-1")
    body = seed_event(3)
    await broker.publish("order.created", body, **PROPS)
    await eventually(lambda: crashing.recorder.dead, 20, "the first copy committed")
    await broker.publish("order.created", body, **PROPS)
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "the second taken")
    await crashing.halt()
    assert await broker.queue_depth(names.tap_queue) == 2

    run = await start_recorder(settings, connection_name=f"{names.connection}-2")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 20, "both redeliveries handled")
    await eventually(
        lambda: run.recorder.status.stored + run.recorder.status.skipped_redeliveries == 2,
        20,
        "both decided",
    )
    await run.halt()
    rows = await stored_rows(database_url)
    assert [r["observation"] for r in rows] == [1, 2]
    assert (run.recorder.status.stored, run.recorder.status.skipped_redeliveries) == (1, 1)


async def test_two_identical_publishes_committed_then_a_crash_before_ack_stay_two_rows(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(database_url, names)
    crashing = await start_recorder(settings, CrashBeforeAck, f"{names.connection}-1")
    body = seed_event(4)
    await broker.publish("order.created", body, **PROPS)
    await broker.publish("order.created", body, **PROPS)
    await eventually(lambda: crashing.recorder.status.stored == 2, 20, "both committed")
    await crashing.halt()
    assert await broker.queue_depth(names.tap_queue) == 2

    run = await start_recorder(settings, connection_name=f"{names.connection}-2")
    await eventually(
        lambda: run.recorder.status.skipped_redeliveries == 2, 20, "both recognised as stored"
    )
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "tap queue drained")
    await run.halt()
    assert run.recorder.status.stored == 0
    assert [r["observation"] for r in await stored_rows(database_url)] == [1, 2]


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_ack_lost_when_the_connection_closes_is_stored_once(
    database_url: str, names: Names, broker: Broker, start_recorder, queue_type: str
) -> None:
    """The connection closes between commit and ack; the broker redelivers the batch (a quorum
    queue adds `x-delivery-count`), and each event is still stored once."""
    n = 60
    settings = make_settings(database_url, names, tap_queue_type=queue_type)
    run = await start_recorder(settings, LosesTheFirstAck, names.connection)
    await broker.publish_many([("order.created", seed_event(i), {}) for i in range(n)])
    await eventually(lambda: run.recorder.cut, 20, "the first ack lost")
    await eventually(lambda: run.recorder.status.broker_connected, 30, "the recorder reconnected")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 30, "tap queue drained")
    await eventually(
        lambda: run.recorder.status.stored == n and run.recorder.status.holding == 0,
        30,
        f"{n} stored",
    )
    await run.halt()

    rows = await stored_rows(database_url)
    assert len(rows) == n, [r["headers"] for r in rows if r["redelivered"]][:3]
    assert sorted(r["event_id"] for r in rows) == sorted(f"evt_{i}" for i in range(n))
    assert run.recorder.status.skipped_redeliveries >= 1, "the lost batch came back"


async def test_quorum_redelivery_after_a_crash_between_commit_and_ack_is_stored_once(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    n = 40
    settings = make_settings(database_url, names, tap_queue_type="quorum")
    crashed = await start_recorder(settings, CrashBeforeAck, f"{names.connection}-a")
    await broker.publish_many([("order.created", seed_event(i), {}) for i in range(n)])
    await eventually(lambda: crashed.recorder.status.stored >= n, 30, "first recorder commits")
    await crashed.halt()

    second = await start_recorder(settings, connection_name=f"{names.connection}-b")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 30, "tap queue drained")
    await eventually(
        lambda: second.recorder.status.skipped_redeliveries == n, 30, "redeliveries recognised"
    )
    await second.halt()
    rows = await stored_rows(database_url)
    assert len(rows) == n
    assert second.recorder.status.stored == 0


async def test_recorders_competing_on_one_quorum_queue_store_every_publish_once(
    pg_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    """Three recorders on one quorum tap queue and one Postgres: one dies between commit and
    ack holding two identical publishes (one committed), another loses its connection between
    a commit and its ack, and every publish ends stored exactly once."""
    settings = make_settings(pg_url, names, tap_queue_type="quorum", prefetch=1)
    dying = await start_recorder(
        make_settings(pg_url, names, tap_queue_type="quorum"),
        DiesAfterFirstCommit,
        f"{names.connection}-a",
    )
    body = seed_event(99)
    await broker.publish("order.created", body, **PROPS)
    await eventually(lambda: dying.recorder.dead, 20, "the first copy committed")
    await broker.publish("order.created", body, **PROPS)
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "the second taken")

    losing = await start_recorder(settings, LosesTheFirstAck, f"{names.connection}-b")
    steady = await start_recorder(settings, connection_name=f"{names.connection}-c")
    await dying.halt()  # both copies come back flagged, one to each of the other two
    n = 80
    await broker.publish_many([("order.created", seed_event(i), {}) for i in range(n)])
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 60, "tap queue drained")

    async def settled() -> bool:
        return (
            losing.recorder.status.holding == 0
            and steady.recorder.status.holding == 0
            and len(await stored_rows(pg_url)) >= n + 2
        )

    await eventually(settled, 60, "everything stored")
    await asyncio.sleep(0.5)
    await losing.halt()
    await steady.halt()

    rows = await stored_rows(pg_url)
    copies = [r for r in rows if bytes(r["body"]) == body]
    assert sorted(r["observation"] for r in copies) == [1, 2]
    others = sorted(r["event_id"] for r in rows if bytes(r["body"]) != body)
    assert others == sorted(f"evt_{i}" for i in range(n))


class LosesTheFirstReply(EventStore):
    """A database connection lost after COMMIT, before its reply: the batch is stored but the
    writer sees an error, and the committer retries it."""

    lost = False

    async def write(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().write(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise ConnectionResetError("connection lost before the commit's reply")
        return result


async def test_a_batch_whose_commit_reply_was_lost_is_not_stored_twice(
    database_url: str, names: Names, broker: Broker
) -> None:
    store = LosesTheFirstReply(database_url)
    recorder = Recorder(make_settings(database_url, names), store, connection_name=names.connection)
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        await eventually(lambda: recorder.status.broker_connected, 20, "recorder connected")
        await broker.publish_many([("order.created", seed_event(i), {}) for i in range(5)])
        await eventually(lambda: store.lost, 20, "the first commit's reply lost")
        await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 20, "tap queue drained")
        await eventually(lambda: recorder.status.holding == 0, 20, "nothing held")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await store.close()
    rows = await stored_rows(database_url)
    assert sorted(r["event_id"] for r in rows) == [f"evt_{i}" for i in range(5)]
    assert {r["observation"] for r in rows} == {1}


async def test_concurrent_batches_with_the_same_fingerprint_on_postgres_get_distinct_observations(
    pg_url: str,
) -> None:
    """Two writers (two recorders) storing the same bytes at the same moment: both look up the
    highest observation before either commits. Neither batch may fail or be stored reduced."""
    import datetime as dt

    stores = [EventStore(pg_url), EventStore(pg_url)]
    when = dt.datetime.now(dt.UTC)
    row = to_row(Delivery("events", "same", False, {}, None, b"same bytes", when), 1024)
    try:
        for _ in range(10):
            await asyncio.gather(*(s.write([dict(row)]) for s in stores))
    finally:
        for s in stores:
            await s.close()
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            from eventscope.backend.store.models import events

            found = (await conn.execute(select(events.c.observation))).scalars().all()
            problems = await conn.scalar(
                select(func.count()).select_from(events).where(events.c.problem.is_not(None))
            )
    finally:
        await engine.dispose()
    assert sorted(found) == list(range(1, 21))
    assert problems == 0


async def pending_listings(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            from eventscope.backend.store.models import pending_acks

            return int(await conn.scalar(select(func.count()).select_from(pending_acks)) or 0)
    finally:
        await engine.dispose()


async def test_listings_are_cleared_once_the_broker_confirmed_the_ack(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    """A listing outliving its ack would absorb a later genuine duplicate that came back after
    a crash: once the ack is confirmed, the listing goes (here, while the recorder is idle)."""
    run = await start_recorder(make_settings(database_url, names))
    await broker.publish_many([("order.created", seed_event(i), {}) for i in range(30)])
    await eventually(lambda: run.recorder.status.stored == 30, 20, "all stored")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 10, "and acked")

    async def cleared() -> bool:
        return await pending_listings(database_url) == 0

    await eventually(cleared, 10, "the listings cleared")
    await run.halt()


async def test_listings_older_than_the_cutoff_are_expired(database_url: str) -> None:
    import datetime as dt

    from eventscope.backend.store.writer import Ledger

    store = EventStore(database_url)
    when = dt.datetime.now(dt.UTC)
    try:
        row = to_row(Delivery("events", "k", False, {}, None, b"x", when), 1024)
        await store.write([row], Ledger(holder=1, batch=7))
        await store.clear_pending([], expire_before=when - dt.timedelta(hours=1))
        assert await pending_listings(database_url) == 1, "younger than the cutoff: kept"
        await store.clear_pending([], expire_before=dt.datetime.now(dt.UTC) + dt.timedelta(1))
        assert await pending_listings(database_url) == 0
    finally:
        await store.close()
