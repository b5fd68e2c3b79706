"""Memory during a database outage is bounded by bytes, not only by prefetch (hardening item 5).

`prefetch` alone lets the recorder hold 2000 messages of up to 16 MiB each. With
`max_held_bytes` it stops taking deliveries once it holds that many bytes uncommitted (the rest
stays in the tap queue, nothing is nacked) and takes them again when a commit frees room.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiormq
import pytest
from sqlalchemy.engine import make_url

from eventscope.backend.ingest.flow import SAMPLE, HeldBytes
from tests.conftest import Broker, Names, eventually, make_settings, psql
from tests.integration.test_faults import close_connection_named
from tests.integration.test_ingest import seed_event, stored_rows

KIB = 1024


def big_body(i: int, size: int) -> bytes:
    head = f'{{"id": "big_{i}", "pad": "'.encode()
    return head + b"x" * (size - len(head) - 2) + b'"}'


@contextlib.asynccontextmanager
async def database_outage(database_url: str) -> AsyncIterator[None]:
    """The database refuses work until the block ends (always restored)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        blocker = sqlite3.connect(str(url.database), isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")  # every writer now waits, then fails
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    database = str(url.database)
    psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
    try:
        terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
        psql(f"{terminate}'{database}'")
        yield
    finally:
        psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every basic.nack or basic.reject any channel sends during the test (the recorder must
    send none: a database outage is waited out, never handed back to the broker)."""
    sent: list[str] = []
    for name in ("basic_nack", "basic_reject"):
        original = getattr(aiormq.Channel, name)

        def spy(self: Any, *args: Any, _name: str = name, _original: Any = original, **kw: Any):
            sent.append(_name)
            return _original(self, *args, **kw)

        monkeypatch.setattr(aiormq.Channel, name, spy)
    return sent


def assert_never_nacked(rows: list[dict[str, Any]], queue_type: str, refusals: list[str]) -> None:
    """Nothing came back because the recorder refused it. A classic queue redelivers nothing
    here; a quorum queue may hand back what a consumer held (a consumer it suspects gone, a
    leader change on a loaded broker): those copies carry `x-delivery-count` and are stored once."""
    assert refusals == []
    again = [r for r in rows if r["redelivered"]]
    if queue_type == "classic":
        assert again == []
    else:
        returned = [(r["message_id"], r["headers"]) for r in again]
        assert all('"x-delivery-count":["i",' in (h or "") for _, h in returned), returned


async def _is_empty(broker: Broker, queue: str) -> bool:
    return await broker.queue_depth(queue) == 0


async def _depth(broker: Broker, queue: str) -> int:
    return await broker.queue_depth(queue)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_database_outage_holds_at_most_the_byte_bound_and_leaves_the_rest_queued(
    database_url: str,
    names: Names,
    broker: Broker,
    start_recorder,
    queue_type: str,
    refusals: list[str],
) -> None:
    size, bound, n = 200 * KIB, 1024 * KIB, 30
    settings = make_settings(
        database_url, names, tap_queue_type=queue_type, prefetch=500, max_held_bytes=bound
    )
    setup = await start_recorder(settings, connection_name=f"{names.connection}-setup")
    await setup.halt()  # the tap queue exists and is bound; nobody consumes now

    async with database_outage(database_url):
        await broker.publish_many(
            [("big.event", big_body(i, size), {"message_id": f"big_{i}"}) for i in range(n)],
            window=10,
        )
        assert await _depth(broker, names.tap_queue) == n
        run = await start_recorder(settings, connection_name=names.connection)
        status = run.recorder.status
        await eventually(lambda: status.holding > 0, 20, "deliveries taken")
        await eventually(lambda: status.database_error is not None, 30, "the outage seen")
        held_count, depth = status.holding, await _depth(broker, names.tap_queue)
        # Not prefetch (500) but the byte bound stopped consumption, within one message.
        assert depth + held_count == n, "nothing dropped, nothing nacked"
        assert held_count <= bound // size + 1, f"held {held_count} messages of {size} bytes"
        assert depth >= n - (bound // size + 1)
        assert 0 < status.held_bytes <= bound + size + 4 * KIB
        assert status.health().state == "stopped", "never claims health"

    await eventually(lambda: status.stored == n, 90, "everything stored once the database is back")
    await eventually(lambda: status.holding == 0 and status.held_bytes == 0, 20, "nothing held")
    assert not status.paused
    await run.halt()
    assert await _depth(broker, names.tap_queue) == 0, "every delivery was acked"
    rows = await stored_rows(database_url)
    assert sorted(r["message_id"] for r in rows) == sorted(f"big_{i}" for i in range(n))
    assert_never_nacked(rows, queue_type, refusals)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_pause_keeps_deliveries_in_flight_and_consumption_resumes_after_a_commit(
    database_url: str,
    names: Names,
    broker: Broker,
    start_recorder,
    queue_type: str,
    refusals: list[str],
) -> None:
    """Small events first (the recorder opens its window wide), then a burst of large ones
    during an outage: the recorder cancels its consumer at the bound, keeps what the broker had
    already sent, consumes again on the same channel once commits free room, and its acks still
    work (nothing is left unacked when it stops)."""
    size, bound, n = 100 * KIB, 512 * KIB, 20
    settings = make_settings(
        database_url, names, tap_queue_type=queue_type, prefetch=500, max_held_bytes=bound
    )
    run = await start_recorder(settings, connection_name=names.connection)
    status = run.recorder.status
    await broker.publish_many([("small.event", seed_event(i), {}) for i in range(20)])
    await eventually(lambda: status.stored == 20, 20, "the small events stored")

    async with database_outage(database_url):
        await broker.publish_many(
            [("big.event", big_body(i, size), {"message_id": f"big_{i}"}) for i in range(n)],
            window=n,
        )
        await eventually(lambda: status.paused, 20, "consumption paused at the byte bound")
        await eventually(lambda: status.database_error is not None, 30, "the outage seen")
        assert status.holding + await _depth(broker, names.tap_queue) == n
        assert status.held_bytes > bound - size

    await eventually(lambda: status.stored == 20 + n, 90, "everything stored after the outage")
    await eventually(lambda: not status.paused, 20, "consuming again")
    await broker.publish_many([("after.event", seed_event(100 + i), {}) for i in range(5)])
    await eventually(lambda: status.stored == 25 + n, 20, "events after the pause stored")
    await run.halt()
    assert await _depth(broker, names.tap_queue) == 0, "every delivery was acked"
    rows = await stored_rows(database_url)
    assert len(rows) == 25 + n
    assert sorted(r["message_id"] for r in rows if r["routing_key"] == "big.event") == sorted(
        f"big_{i}" for i in range(n)
    )
    assert_never_nacked(rows, queue_type, refusals)


async def test_a_message_larger_than_the_bound_is_accepted_alone_and_recording_goes_on(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    bound = 64 * KIB
    run = await start_recorder(make_settings(database_url, names, max_held_bytes=bound))
    messages = [("big.event", big_body(i, 300 * KIB), {"message_id": f"big_{i}"}) for i in range(3)]
    messages += [("small.event", seed_event(i), {}) for i in range(10)]
    await broker.publish_many(messages, window=1)
    await eventually(lambda: run.recorder.status.stored == 13, 30, "all thirteen stored")
    await run.halt()
    assert len(await stored_rows(database_url)) == 13


def test_the_window_fits_the_room_left_sized_like_the_largest_recent_delivery() -> None:
    held = HeldBytes(bound=1000, prefetch=50, first_guess=400)
    assert held.window() == 2, "nothing seen yet: sized like the largest possible delivery"
    held.add(100)
    assert held.window() == 9  # (1000 - 100) // 100
    held.add(300)
    assert held.window() == 2  # (1000 - 400) // 300: the largest recent one counts
    held.add(600)
    assert held.full and held.window() == 0
    held.release(1000)
    assert held.window() == 1  # 1000 // 600: sized for the largest recent delivery


def test_one_delivery_is_always_accepted_when_nothing_is_held() -> None:
    held = HeldBytes(bound=1000, prefetch=50, first_guess=16 << 20)
    assert held.window() == 1
    held.add(5000)  # one message larger than the bound
    assert held.window() == 0
    held.release(5000)
    assert held.window() == 1


def test_the_size_hint_forgets_deliveries_older_than_two_samples() -> None:
    held = HeldBytes(bound=10**9, prefetch=10**6, first_guess=1)
    held.add(10_000)
    for _ in range(2 * SAMPLE):
        held.add(10)
    assert held.hint == 10


async def test_a_connection_lost_during_an_outage_does_not_hold_its_deliveries_twice(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    """The batch being retried belonged to a channel that is gone: the broker redelivers its
    deliveries to the new channel, so the old copy is dropped, not held next to them."""
    n = 50
    settings = make_settings(database_url, names, prefetch=500)
    run = await start_recorder(settings, connection_name=names.connection)
    status = run.recorder.status
    async with database_outage(database_url):
        await broker.publish_many([("order.created", seed_event(i), {}) for i in range(n)])
        await eventually(lambda: status.holding == n, 20, "all held during the outage")
        await eventually(lambda: status.database_error is not None, 30, "the outage seen")
        await asyncio.to_thread(close_connection_named, names.connection)
        await eventually(lambda: not status.broker_connected, 15, "the cut noticed")
        await eventually(lambda: status.broker_connected, 30, "reconnected")
        await eventually(lambda: _is_empty(broker, names.tap_queue), 20, "redeliveries taken")
        # The old batch is dropped at its next retry (SQLite's busy wait: up to 10 s).
        await eventually(lambda: status.holding == n, 20, "each delivery held once")
    await eventually(lambda: status.stored == n, 60, "all stored after the outage")
    await run.halt()
    rows = await stored_rows(database_url)
    assert sorted(r["event_id"] for r in rows) == sorted(f"evt_{i}" for i in range(n))
