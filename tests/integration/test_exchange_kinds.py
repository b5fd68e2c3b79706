"""Exchanges of every kind are recorded (hardening item 12): declared with an alternate exchange,
auto-delete, internal, or all of these at once — not only the plain durable ones.

The broker accepts a non-passive redeclaration only when type, durability, auto-delete, internal
and the alternate exchange all match; the recorder learns them from the broker's refusals.
"""

from __future__ import annotations

import aio_pika
import aiormq

from eventscope.backend.ingest.topology import ExchangeShape, exchange_type, learn_from_refusal
from tests.conftest import AMQP_URL, Broker, Names, eventually, make_settings
from tests.integration.test_ingest import stored_rows

NOT_BOUND = "cannot receive every message (not bound)"


async def test_exchanges_with_alternate_exchange_auto_delete_or_internal_are_recorded(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    x = names.exchange
    ae, with_ae, autodel = f"{x}.ae", f"{x}.with-ae", f"{x}.autodel"
    front, internal, combo, direct = f"{x}.front", f"{x}.internal", f"{x}.combo", f"{x}.direct"
    channel = await broker.connection.channel(publisher_confirms=True)
    declared = []

    async def declare(
        name: str, kind: aio_pika.ExchangeType, **kw
    ) -> aio_pika.abc.AbstractExchange:
        exchange = await channel.declare_exchange(name, kind, **kw)
        declared.append(name)
        return exchange

    try:
        await declare(ae, aio_pika.ExchangeType.FANOUT, durable=True)
        with_ae_ex = await declare(
            with_ae, aio_pika.ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": ae}
        )
        autodel_ex = await declare(
            autodel, aio_pika.ExchangeType.FANOUT, durable=False, auto_delete=True
        )
        front_ex = await declare(front, aio_pika.ExchangeType.FANOUT, durable=True)
        internal_ex = await declare(
            internal, aio_pika.ExchangeType.HEADERS, durable=True, internal=True
        )
        await internal_ex.bind(front_ex, routing_key="")  # clients cannot publish to it
        combo_ex = await declare(
            combo,
            aio_pika.ExchangeType.TOPIC,
            durable=False,
            auto_delete=True,
            arguments={"alternate-exchange": ae},
        )
        await declare(
            direct, aio_pika.ExchangeType.DIRECT, durable=True, arguments={"alternate-exchange": ae}
        )

        recorded = (with_ae, autodel, internal, combo, direct)
        run = await start_recorder(make_settings(database_url, names, exchanges=recorded))
        assert run.recorder.status.exchanges == {
            with_ae: "topic",
            autodel: "fanout",
            internal: "headers",
            combo: "topic",
            direct: f"direct: {NOT_BOUND}",
        }
        await with_ae_ex.publish(aio_pika.Message(b"with an alternate exchange"), "a.b")
        await autodel_ex.publish(aio_pika.Message(b"auto-delete"), "whatever")
        await front_ex.publish(aio_pika.Message(b"internal", headers={"k": "v"}), "")
        await combo_ex.publish(aio_pika.Message(b"everything at once"), "c.d")
        await eventually(lambda: run.recorder.status.stored >= 4, 20, "four events")
        await run.halt()
        rows = await stored_rows(database_url)
        assert {(r["exchange"], bytes(r["body"])) for r in rows} == {
            (with_ae, b"with an alternate exchange"),
            (autodel, b"auto-delete"),
            (front, b"internal"),  # deliveries name the exchange the publisher used
            (combo, b"everything at once"),
        }
    finally:
        for name in reversed(declared):
            await channel.exchange_delete(name)


async def test_probing_an_exchange_leaves_it_exactly_as_it_was(names: Names) -> None:
    """The probe only redeclares what already exists: afterwards the exchange still has its
    own alternate exchange, flags and type (a declaration with other values is refused)."""
    connection = await aio_pika.connect(AMQP_URL)
    name = f"{names.exchange}.kept"
    try:
        channel = await connection.channel()
        await channel.declare_exchange(
            name,
            aio_pika.ExchangeType.FANOUT,
            durable=False,
            auto_delete=True,
            internal=True,
            arguments={"alternate-exchange": "somewhere"},
        )
        assert await exchange_type(connection, name) == "fanout"
        same = await connection.channel()
        await same.declare_exchange(  # accepted only if nothing changed
            name,
            aio_pika.ExchangeType.FANOUT,
            durable=False,
            auto_delete=True,
            internal=True,
            arguments={"alternate-exchange": "somewhere"},
        )
        other = await connection.channel()
        try:
            await other.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=False)
            raise AssertionError("a declaration without the original attributes was accepted")
        except aiormq.exceptions.ChannelPreconditionFailed:
            pass
    finally:
        cleanup = await connection.channel()
        await cleanup.exchange_delete(name)
        await connection.close()


REFUSAL = "PRECONDITION_FAILED - inequivalent arg '{}' for exchange 'x' in vhost '/': received {}"


def test_a_refusal_is_read_for_the_attribute_it_names() -> None:
    shape = ExchangeShape()
    assert learn_from_refusal(shape, REFUSAL.format("type", "'topic' but current is 'fanout'")) == [
        ExchangeShape(type="fanout")
    ]
    durable = REFUSAL.format("durable", "'true' but current is 'false'")
    assert learn_from_refusal(shape, durable) == [ExchangeShape(durable=False)]
    internal = REFUSAL.format("internal", "'false' but current is 'true'")
    assert learn_from_refusal(shape, internal) == [ExchangeShape(internal=True)]
    ae = REFUSAL.format(
        "alternate-exchange", "none but current is the value 'it''s: odd' of type 'longstr'"
    )
    assert learn_from_refusal(shape, ae) == [
        ExchangeShape(arguments={"alternate-exchange": "it''s: odd"})
    ]


def test_a_refusal_cut_after_the_alternate_exchange_gives_candidates_longest_first() -> None:
    cut = REFUSAL.format("alternate-exchange", "none but current is the value 'a'b' of ty...")
    assert [s.arguments for s in learn_from_refusal(ExchangeShape(), cut)] == [
        {"alternate-exchange": "a'b"},
        {"alternate-exchange": "a"},
    ]


def test_an_unreadable_refusal_teaches_nothing() -> None:
    assert learn_from_refusal(ExchangeShape(), "NOT_FOUND - no exchange 'x'") == []
    cut = REFUSAL.format("alternate-exchange", "none but current is the value 'abc...")
    assert learn_from_refusal(ExchangeShape(), cut) == []
