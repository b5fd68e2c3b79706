"""Rows a database refuses never stop recording (hardening item 2): ids of any length fit every
index, and a row refused for a reason retrying cannot fix is isolated and stored reduced."""

from __future__ import annotations

import json
import random
import sqlite3

from sqlalchemy.engine import make_url

from eventscope.backend.envelope import MAX_ID_CHARS, aggregate_key, id_key
from tests.conftest import Broker, Names, eventually, make_settings, psql
from tests.integration.test_ingest import seed_event, stored_rows


def incompressible(n: int, seed: int) -> str:
    """Random astral characters: 4 bytes each in UTF-8, nothing for TOAST to compress."""
    rng = random.Random(seed)
    return "".join(chr(rng.randrange(0x10000, 0x10FFFF)) for _ in range(n))


def event_with_ids(correlation: str, aggregate_type: str, aggregate_id: str) -> bytes:
    return json.dumps(
        {
            "id": "evt_long",
            "eventType": aggregate_type[:50],
            "aggregateType": aggregate_type,
            "aggregateId": aggregate_id,
            "version": 1,
            "metadata": {"correlationId": correlation},
        },
        ensure_ascii=False,
    ).encode()


async def test_long_incompressible_ids_are_stored_and_keyed_whole(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    run = await start_recorder(make_settings(database_url, names))
    correlation = incompressible(3000, 1)
    aggregate_type, aggregate_id = incompressible(2000, 2), incompressible(2000, 3)
    same_prefix = correlation[:MAX_ID_CHARS] + "different tail"
    await broker.publish("long.ids", event_with_ids(correlation, aggregate_type, aggregate_id))
    await broker.publish("long.ids", event_with_ids(same_prefix, "Order", "o1"))
    await broker.publish("after.long", seed_event(1))
    await eventually(lambda: run.recorder.status.stored >= 3, 30, "all three stored")
    await run.halt()

    first, second, after = await stored_rows(database_url)
    assert bytes(after["body"]) == seed_event(1)
    assert first["problem"] is None, "stored whole, not reduced"
    assert first["correlation_id"] == correlation[:MAX_ID_CHARS]
    assert first["correlation_key"] == id_key(correlation)
    assert first["aggregate_key"] == aggregate_key(aggregate_type, aggregate_id)
    # Same first 1024 characters, different id: the keys tell them apart.
    assert second["correlation_id"] == first["correlation_id"]
    assert second["correlation_key"] != first["correlation_key"]


def _refuse_correlation(database_url: str, poison: str) -> None:
    """A database-side refusal of one row, as a constraint or an index limit would give."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as conn:
            conn.execute(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON events "
                f"WHEN NEW.correlation_id = '{poison}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
            )
        return
    psql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
        f"IF NEW.correlation_id = '{poison}' THEN "
        "RAISE EXCEPTION 'refused by the test trigger'; END IF; RETURN NEW; END $$ "
        "LANGUAGE plpgsql",
        database=str(url.database),
    )
    psql(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events "
        "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        database=str(url.database),
    )


async def test_a_refused_row_is_isolated_stored_reduced_and_the_rest_committed(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    _refuse_correlation(database_url, "poison")
    run = await start_recorder(
        make_settings(database_url, names, batch_max_wait_ms=500, batch_max_events=200)
    )
    bodies = [seed_event(i, "poison" if i == 37 else f"req_{i}") for i in range(80)]
    await broker.publish_many([("order.created", body, {"app_id": "shop"}) for body in bodies])
    await eventually(lambda: run.recorder.status.stored >= 80, 30, "all 80 stored")
    health = run.recorder.status.health()
    await run.halt()

    rows = await stored_rows(database_url)
    assert [bytes(r["body"]) for r in rows] == bodies, "every event, once, in order"
    poison = rows[37]
    assert poison["problem"].startswith("stored reduced")
    assert "refused by the test trigger" in poison["problem"]
    assert poison["correlation_id"] is None
    assert poison["routing_key"] == "order.created"
    assert poison["raw_properties"], "the raw property bytes are kept"
    assert all(r["problem"] is None for i, r in enumerate(rows) if i != 37)
    assert rows[36]["correlation_id"] == "req_36"
    assert run.recorder.status.reduced == 1
    assert run.recorder.status.database_error is None
    assert health.state == "warning", "recording goes on; the refusal is shown"
    assert health.reason and "refused" in health.reason
