"""The recorder with exclusions and extraction rules, against the real broker and both
databases: excluded routing keys are acked and counted but never stored, everything else is
stored exactly once, and a rules file decides what the columns hold."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eventscope.backend.envelope import id_key
from eventscope.backend.ingest.recorder import Recorder
from tests.conftest import Broker, Names, eventually, make_settings
from tests.integration.test_ingest import seed_event, stored_rows


async def _depth_is(broker: Broker, queue: str, depth: int) -> bool:
    return await broker.queue_depth(queue) == depth


async def test_excluded_routing_keys_are_acked_counted_and_never_stored(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(
        database_url, names, exclude_routing_keys=("heartbeat.#", "*.ping"), batch_max_events=50
    )
    run = await start_recorder(settings)
    messages = []
    kept = excluded = 0
    for i in range(600):  # interleaved, so batches hold both kinds and excluded tags sit between
        if i % 3 == 0:
            messages.append((f"heartbeat.svc{i % 5}", b'{"beat": true}', {}))
            excluded += 1
        elif i % 3 == 1 and i % 2:
            messages.append(("svc.ping", b"ping", {}))
            excluded += 1
        else:
            messages.append(("order.created", seed_event(i), {"message_id": f"m{i}"}))
            kept += 1
    messages.append(("svc.ping.not", seed_event(999), {}))  # `*.ping` is exactly two words
    kept += 1
    await broker.publish_many(messages)

    await eventually(lambda: run.recorder.status.stored >= kept, 30, f"{kept} events stored")
    await eventually(lambda: run.recorder.status.excluded >= excluded, 30, "exclusions counted")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 30, "tap queue drained")
    await run.halt()

    rows = await stored_rows(database_url)
    assert len(rows) == kept
    assert {r["routing_key"] for r in rows} == {"order.created", "svc.ping.not"}
    assert len({r["event_id"] for r in rows}) == kept  # each stored exactly once
    assert run.recorder.status.excluded == excluded
    assert run.recorder.status.stored == kept
    assert await broker.queue_depth(names.tap_queue) == 0


async def test_a_tap_queue_of_nothing_but_excluded_keys_drains(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    run = await start_recorder(make_settings(database_url, names, exclude_routing_keys=("#.beat",)))
    await broker.publish_many([(f"node{i % 4}.beat", b"{}", {}) for i in range(300)])

    await eventually(lambda: run.recorder.status.excluded >= 300, 30, "all excluded")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 30, "tap queue drained")
    assert run.recorder.status.health().state == "ok"
    await run.halt()

    assert await stored_rows(database_url) == []
    assert run.recorder.status.stored == 0


async def test_the_recorder_extracts_by_the_rules_file(
    database_url: str, names: Names, broker: Broker, start_recorder, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[fields]\ncorrelation_id = ["header:X-Request-Id"]\nsource = ["property:app_id"]\n',
        encoding="utf-8",
    )
    run = await start_recorder(make_settings(database_url, names, extraction_rules=str(rules)))
    await broker.publish(
        "order.created",
        seed_event(1, "from-body"),
        headers={"X-Request-Id": "req-42"},
        app_id="billing",
    )
    await eventually(lambda: run.recorder.status.stored >= 1, 30, "stored")
    await run.halt()

    (row,) = await stored_rows(database_url)
    assert (row["correlation_id"], row["correlation_key"]) == ("req-42", id_key("req-42"))
    assert (row["source"], row["source_key"]) == ("billing", id_key("billing"))
    assert row["event_id"] == "evt_1"  # fields the file does not list keep their defaults


class StuckCommit(Recorder):
    """A recorder whose database never answers: nothing it holds may be acked."""

    stuck: asyncio.Event

    async def _commit(self, session: Any, rows: list[dict[str, Any]]) -> None:
        self.stuck.set()
        await session.gone.wait()
        return None


async def test_an_excluded_delivery_never_acks_an_uncommitted_event_before_it(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(database_url, names, exclude_routing_keys=("heartbeat",))
    StuckCommit.stuck = asyncio.Event()
    stuck = await start_recorder(settings, StuckCommit, connection_name=f"{names.connection}-a")
    for routing_key, body in (
        ("heartbeat", b"1"),
        ("order.created", seed_event(1)),
        ("heartbeat", b"3"),
    ):
        await broker.publish(routing_key, body)
    await eventually(lambda: stuck.recorder.status.excluded >= 2, 30, "both heartbeats seen")
    await asyncio.wait_for(StuckCommit.stuck.wait(), 30)
    await stuck.halt()  # closes the channel: whatever is unacked goes back to the queue

    # The first heartbeat was acked; the event was not (its commit never finished), and so
    # neither was the heartbeat after it: a cumulative ack covering it would cover the event.
    await eventually(lambda: _depth_is(broker, names.tap_queue, 2), 30, "two requeued")
    second = await start_recorder(settings, connection_name=f"{names.connection}-b")
    await eventually(lambda: second.recorder.status.stored >= 1, 30, "the event stored")
    await eventually(lambda: _depth_is(broker, names.tap_queue, 0), 30, "tap queue drained")
    await second.halt()
    assert second.recorder.status.excluded == 1
    assert [r["event_id"] for r in await stored_rows(database_url)] == ["evt_1"]
