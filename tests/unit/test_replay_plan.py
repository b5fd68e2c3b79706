"""Planning a replay (backend/replay_targets.py, `plan_for` and friends in backend/replay.py).

Pure: no broker, no database. Rows are built the way the recorder stores them (`to_row` and
the typed JSON of `fieldtable.encode_table`); raw property bytes come from pamqp and are read
back with `amqp_wire`. What a user relies on: the allowlist admits exactly what it names, a
forged dead letter only *proposes* a target, a plan is never ready for a target the allowlist
refuses, and what would be sent is the stored message byte for byte plus the replay headers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp.commands import Basic

from eventscope.backend.amqp_wire import (
    Entry,
    join_properties,
    long_string,
    parse_table,
    short_string,
    split_properties,
    table,
)
from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.fieldtable import encode_table
from eventscope.backend.replay import (
    MAX_HEADER_VALUE,
    ORIGINAL_ID_HEADER,
    OWN_HEADERS,
    REPLAY_COUNT_HEADER,
    ReplayPlan,
    ReplayRefused,
    is_dead_letter,
    original_id_of,
    plan_for,
    replay_properties,
)
from eventscope.backend.replay_publisher import REPLAY_ID_HEADER
from eventscope.backend.replay_targets import (
    MAX_NAME,
    Allowlist,
    Target,
    default_allowlist,
    is_dead_letter_exchange,
    proposed_targets,
    target_from_json,
)

AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
EVERYTHING = Allowlist(("exchange:*", "queue:*"))
NOTHING = Allowlist(())

# -- building stored rows the way the recorder does ----------------------------------------------


def death(
    queue: str, exchange: str = "events", keys: tuple[str, ...] = ("order.paid",), **extra: Any
) -> dict[str, Any]:
    """One `x-death` table as RabbitMQ writes it."""
    return {
        "queue": queue,
        "reason": "rejected",
        "count": 1,
        "time": AT,
        "exchange": exchange,
        "routing-keys": list(keys),
        **extra,
    }


def native_headers(*deaths: dict[str, Any], first_exchange: str | None = "events") -> dict:
    """Headers of a native dead letter: `x-death` newest first, `x-first-death-*`."""
    headers: dict[str, Any] = {"x-death": list(deaths)}
    if first_exchange is not None:
        headers["x-first-death-exchange"] = first_exchange
        headers["x-first-death-queue"] = deaths[-1]["queue"]
        headers["x-first-death-reason"] = "rejected"
    return headers


def stored(
    exchange: str = "events",
    routing_key: str = "order.paid",
    headers: dict[str, Any] | None = None,
    body: bytes = b'{"orderId":"A-1"}',
    *,
    row_id: int = 1,
    max_body: int = 1 << 20,
    **properties: Any,
) -> dict[str, Any]:
    """A row as the recorder stores one delivery: typed headers JSON and the raw bytes."""
    props = {"content_type": "application/json", "message_id": "m-1", **properties}
    raw = Basic.Properties(headers=headers, **props).marshal()
    delivery = Delivery(exchange, routing_key, False, props, headers, body, AT, raw)
    return {**to_row(delivery, max_body), "id": row_id}


def dead_letter_row(**kwargs: Any) -> dict[str, Any]:
    """Order A-1 rejected by the billing queue, recorded on the dead-letter exchange."""
    return stored("events.dlx", "order.paid", native_headers(death("billing")), **kwargs)


def header_entries(raw: bytes) -> list[Entry]:
    return parse_table(split_properties(raw)["headers"])


def values_of(entries: list[Entry], name: str) -> list[bytes]:
    return [entry.value for entry in entries if entry.name == name.encode()]


# -- strategies ----------------------------------------------------------------------------------

METACHARACTERS = ".?[]()^$+{}|\\-"
name_text = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
    st.text(st.sampled_from(f"{METACHARACTERS}ab"), max_size=12),
    st.text(st.characters(min_codepoint=0x80, blacklist_categories=("Cc", "Cs")), max_size=90),
)
names = name_text.filter(lambda n: len(n.encode("utf-8")) <= MAX_NAME)
literal_names = names.filter(lambda n: "*" not in n)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


# -- targets -------------------------------------------------------------------------------------


def test_a_queue_is_reached_through_the_default_exchange_under_its_own_name() -> None:
    queue = Target.queue("billing")
    assert (queue.routing_key, queue.publish_exchange, queue.entry) == (
        "billing",
        "",
        "queue:billing",
    )
    exchange = Target.exchange("events", "order.paid")
    assert (exchange.publish_exchange, exchange.entry) == ("events", "exchange:events")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"kind": "queue", "name": "billing"}, Target("queue", "billing", "billing")),
        ({"kind": "queue", "name": "q", "routing_key": "ignored"}, Target.queue("q")),
        (
            {"kind": "exchange", "name": "events", "routing_key": "order.paid"},
            Target("exchange", "events", "order.paid"),
        ),
        ({"kind": "exchange", "name": "events"}, Target.exchange("events", "")),
        ({"kind": "exchange", "name": "", "routing_key": "work"}, Target.exchange("", "work")),
        ({"kind": "queue", "name": "é" * 127 + "a"}, Target.queue("é" * 127 + "a")),  # 255 B
    ],
)
def test_target_from_json_accepts_the_api_shapes(value: Any, expected: Target) -> None:
    target = target_from_json(value)
    assert target == expected
    assert target.publish_exchange == ("" if target.kind == "queue" else target.name)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (["queue", "billing"], "must be an object"),
        ("queue:billing", "must be an object"),
        (None, "must be an object"),
        ({"name": "billing"}, "kind must be"),
        ({"kind": "topic", "name": "billing"}, "kind must be"),
        ({"kind": "Queue", "name": "billing"}, "kind must be"),
        ({"kind": "queue", "name": 5}, "name must be a string"),
        ({"kind": "queue"}, "name must be a string"),
        ({"kind": "exchange", "name": None}, "name must be a string"),
        ({"kind": "queue", "name": ""}, "needs a queue name"),
        ({"kind": "exchange", "name": "events", "routing_key": 7}, "routing_key must be"),
        ({"kind": "queue", "name": "bill\ning"}, "control character"),
        ({"kind": "queue", "name": "\x00"}, "control character"),
        ({"kind": "exchange", "name": "events", "routing_key": "a\tb"}, "control character"),
        ({"kind": "queue", "name": "bill\ud800"}, "lone surrogate"),
        ({"kind": "exchange", "name": "e", "routing_key": "\udfff"}, "lone surrogate"),
        ({"kind": "queue", "name": "é" * 128}, "longer than 255 bytes"),
        ({"kind": "exchange", "name": "x" * 256, "routing_key": ""}, "longer than 255 bytes"),
        ({"kind": "exchange", "name": "e", "routing_key": "k" * 256}, "longer than 255 bytes"),
    ],
)
def test_target_from_json_refuses_what_cannot_be_published(value: Any, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        target_from_json(value)


@given(name=st.text(max_size=300), key=st.text(max_size=300))
def test_target_from_json_accepts_exactly_short_clean_names(name: str, key: str) -> None:
    """Accepted iff name and key are ≤ 255 UTF-8 bytes without control characters; an
    accepted target survives its own JSON."""

    def clean(text: str) -> bool:
        return len(text.encode("utf-8", "surrogatepass")) <= MAX_NAME and all(
            ord(c) >= 0x20 and not 0xD800 <= ord(c) <= 0xDFFF for c in text
        )

    value = {"kind": "exchange", "name": name, "routing_key": key}
    if clean(name) and clean(key):
        target = target_from_json(value)
        assert target == Target.exchange(name, key)
        assert target_from_json(target.as_json()) == target
    else:
        with pytest.raises(ValueError):
            target_from_json(value)


# -- the allowlist -------------------------------------------------------------------------------


@given(name=names, other=names)
def test_an_exact_entry_admits_its_name_and_no_other(name: str, other: str) -> None:
    allowlist = Allowlist((f"queue:{name}",))
    assert allowlist.allows(Target.queue(name))
    if "*" not in name and other != name:
        assert not allowlist.allows(Target.queue(other))


@given(prefix=literal_names, name=names)
def test_a_prefix_glob_admits_exactly_the_names_with_that_prefix(prefix: str, name: str) -> None:
    allowlist = Allowlist((f"queue:{prefix}*",))
    assert allowlist.allows(Target.queue(prefix + name))
    assert allowlist.allows(Target.queue(name)) == name.startswith(prefix)


@given(key=names)
def test_the_default_exchange_is_the_queue_its_routing_key_names(key: str) -> None:
    """`exchange:*` does not open every queue through the default exchange ("")."""
    to_queue = Target.exchange("", key)
    assert not Allowlist(("exchange:*",)).allows(to_queue)
    assert Allowlist((f"queue:{key}",)).allows(to_queue)
    assert to_queue.entry == f"queue:{key}"


@given(pattern=names, name=names)
def test_kinds_never_cross(pattern: str, name: str) -> None:
    """An `exchange:` entry never admits a queue, a `queue:` entry never an exchange."""
    for glob in (pattern, "*"):
        assert not Allowlist((f"exchange:{glob}",)).allows(Target.queue(name))
        exchange = Target.exchange(name or "x", name)  # "" would be the default exchange
        assert not Allowlist((f"queue:{glob}",)).allows(exchange)


@pytest.mark.parametrize(
    ("entry", "admitted", "refused"),
    [
        ("queue:a.c", ["a.c"], ["abc", "a-c"]),
        ("queue:a?c", ["a?c"], ["abc", "ac"]),
        ("queue:[ab]", ["[ab]"], ["a", "b"]),
        ("queue:a+", ["a+"], ["a", "aa"]),
        ("queue:^work$", ["^work$"], ["work"]),
        ("queue:(a|b)", ["(a|b)"], ["a", "b"]),
        ("queue:a\\d", ["a\\d"], ["a1", "ad"]),
        ("queue:x{2}", ["x{2}"], ["xx"]),
        ("queue:orders.*.v1", ["orders.eu.v1", "orders..v1", "orders.a.b.v1"], ["ordersXeuXv1"]),
        ("queue:*", ["", "anything", "a*b"], []),
        ("queue:", [""], ["a"]),
        ("queue:a:b", ["a:b"], ["a", "b"]),
    ],
)
def test_only_star_is_a_wildcard(entry: str, admitted: list[str], refused: list[str]) -> None:
    allowlist = Allowlist((entry,))
    for name in admitted:
        assert allowlist.allows(Target.queue(name)), name
    for name in refused:
        assert not allowlist.allows(Target.queue(name)), name


@pytest.mark.parametrize(
    "entry", ["billing", "topic:billing", "Queue:billing", "EXCHANGE:events", ":x", "", "queue"]
)
def test_an_entry_without_its_kind_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=r"exchange:<glob> or queue:<glob>"):
        Allowlist(("exchange:events", entry))


def test_the_default_allowlist_drops_dead_letter_exchanges() -> None:
    recorded = ["events", "events.dlx", "orders.DLQ", "DeadLetters", "audit", "", "x.Dlx.y"]
    assert default_allowlist(recorded) == ("exchange:events", "exchange:audit", "exchange:")
    assert [is_dead_letter_exchange(n) for n in ("dlx", "my-DLQ", "dEaD", "deal", "events")] == [
        True,
        True,
        True,
        False,
        False,
    ]


@given(exchanges=st.lists(names, max_size=6), queue=names)
def test_the_default_allowlist_keeps_every_other_exchange_and_no_queue(
    exchanges: list[str], queue: str
) -> None:
    kept = [e for e in exchanges if not re.search("dlx|dlq|dead", e.lower())]
    assert default_allowlist(exchanges) == tuple(f"exchange:{e}" for e in kept)
    assert not Allowlist(default_allowlist(exchanges)).allows(Target.queue(queue))


# -- proposed targets ----------------------------------------------------------------------------


def test_a_native_dead_letter_proposes_its_queue_then_where_it_was_first_published() -> None:
    proposal = proposed_targets(dead_letter_row())
    assert proposal.default == Target.queue("billing")
    assert proposal.original == Target.exchange("events", "order.paid")
    assert proposal.notes == ()


def test_the_newest_death_names_the_queue_and_the_oldest_the_first_routing_key() -> None:
    headers = native_headers(
        death("shipping", keys=("order.shipped",)), death("billing", keys=("order.paid", "x"))
    )
    row = stored("events.dlx", "order.shipped", headers)
    proposal = proposed_targets(row)
    assert proposal.default == Target.queue("shipping")
    assert proposal.original == Target.exchange("events", "order.paid")


def test_without_first_death_headers_the_oldest_entry_names_the_exchange() -> None:
    headers = native_headers(death("billing", exchange="orders"), first_exchange=None)
    proposal = proposed_targets(stored("events.dlx", "order.paid", headers))
    assert proposal.default == Target.queue("billing")
    assert proposal.original == Target.exchange("orders", "order.paid")


@pytest.mark.parametrize(
    ("headers", "note"),
    [
        ({"x-death": [{"reason": "rejected", "exchange": "events"}]}, "names no queue"),
        ({"x-death": [{**death("billing"), "queue": 5}]}, "names no queue"),
        ({"x-death": [{**death("billing"), "queue": "bill\nq"}]}, "control character"),
        ({"x-death": [{**death("billing"), "queue": "q" * 300}]}, "longer than 255 bytes"),
        ({"x-death": "billing"}, "not an array"),
        ({"x-death": ["billing", 3]}, "not tables"),
        ({"x-death": []}, "names no queue"),
        ({"x-death": [{}], "x-first-death-exchange": 7}, "names no queue"),
    ],
)
def test_a_forged_x_death_gives_notes_not_a_crash(headers: dict[str, Any], note: str) -> None:
    row = {**stored("events.dlx", "order.paid"), "dead_letter": "x-death"}
    row["headers"] = encode_table(headers)
    proposal = proposed_targets(row)
    assert any(note in n for n in proposal.notes), proposal.notes
    for target in (proposal.default, proposal.original):
        assert target is None or target_from_json(target.as_json()) == target


def test_a_forged_x_death_without_a_queue_falls_back_to_the_original() -> None:
    headers = {"x-death": [{**death("billing"), "queue": ["not", "text"]}]}
    row = {**stored("events.dlx", "order.paid"), "dead_letter": "x-death"}
    row["headers"] = encode_table({**headers, "x-first-death-exchange": "events"})
    proposal = proposed_targets(row)
    assert proposal.default == proposal.original == Target.exchange("events", "order.paid")


def test_routing_keys_that_are_no_array_leave_no_original_to_propose() -> None:
    headers = native_headers({**death("billing"), "routing-keys": "order.paid"})
    proposal = proposed_targets(stored("events.dlx", "order.paid", headers))
    assert proposal.default == Target.queue("billing")
    assert proposal.original is None


@pytest.mark.parametrize("headers", [None, "", "not json", "[1, 2]", '{"x-death": ["A"]}', "{"])
def test_unreadable_headers_on_a_native_dead_letter_propose_nothing(headers: Any) -> None:
    row = {**dead_letter_row(), "headers": headers}
    proposal = proposed_targets(row)
    assert proposal.default is None and proposal.original is None
    assert proposal.notes


@given(
    headers=st.dictionaries(st.text(max_size=25), json_values, max_size=4)
    | st.builds(lambda v: {"x-death": v}, json_values)
    | st.builds(lambda v: {"x-death": [v]}, st.dictionaries(st.text(max_size=12), json_values)),
    kind=st.sampled_from([None, "x-death", "dlq-key"]),
)
def test_forged_headers_never_make_proposing_raise(headers: dict[str, Any], kind: Any) -> None:
    row = {**stored("events.dlx", "dlq.order.paid"), "dead_letter": kind}
    row["headers"] = encode_table(headers)
    proposal = proposed_targets(row)
    for target in (proposal.default, proposal.original):
        assert target is None or target_from_json(target.as_json()) == target


def test_a_dlq_key_row_proposes_its_exchange_under_the_key_without_the_prefix() -> None:
    row = stored("events", "dlq.order.paid", None)
    assert row["dead_letter"] == "dlq-key"
    proposal = proposed_targets(row)
    assert proposal.default == proposal.original == Target.exchange("events", "order.paid")


def test_an_ordinary_event_proposes_where_it_was_published() -> None:
    row = stored("events", "order.paid")
    assert row["dead_letter"] is None
    proposal = proposed_targets(row)
    assert proposal.default == proposal.original == Target.exchange("events", "order.paid")
    assert proposal.notes == ()


@pytest.mark.parametrize(
    "changes", [{"exchange": None}, {"routing_key": 5}, {"routing_key": "k" * 256}]
)
def test_an_unpublishable_stored_address_proposes_nothing(changes: dict[str, Any]) -> None:
    proposal = proposed_targets({**stored(), **changes})
    assert proposal.default is None and proposal.notes


# -- plan_for: target and allowlist --------------------------------------------------------------


def test_a_dead_letter_to_an_allowed_queue_is_ready() -> None:
    row = dead_letter_row()
    plan = plan_for(row, Allowlist(("queue:billing",)), 0)
    assert plan.ready and plan.why_not is None
    assert (plan.target, plan.allowed, plan.add_entry) == (Target.queue("billing"), True, None)
    assert plan.dead_letter and not plan.edited
    assert plan.body == row["body"] and plan.raw_properties == row["raw_properties"]
    assert plan.replay_count == 1
    assert any("default exchange" in note for note in plan.notes)


def test_a_target_the_allowlist_refuses_names_the_entry_to_add() -> None:
    row = dead_letter_row()
    plan = plan_for(row, Allowlist(("exchange:events",)), 0)
    assert not plan.ready and not plan.allowed
    assert plan.add_entry == "queue:billing"
    assert plan.why_not is not None
    assert "queue:billing" in plan.why_not and "EVENTSCOPE_REPLAY_TARGETS" in plan.why_not
    assert plan_for(row, Allowlist((plan.add_entry,)), 0).ready


@given(target=st.builds(Target.queue, names) | st.builds(Target.exchange, names, names))
def test_the_entry_to_add_admits_exactly_that_target(target: Target) -> None:
    plan = plan_for(stored(), NOTHING, 0, target=target)
    assert not plan.ready and plan.add_entry == target.entry
    assert plan.why_not is not None and target.entry in plan.why_not
    again = plan_for(stored(), Allowlist((plan.add_entry,)), 0, target=target)
    assert again.ready and again.add_entry is None


def test_a_target_asked_for_replaces_the_proposed_one() -> None:
    asked = Target.exchange("events", "order.retry")
    plan = plan_for(dead_letter_row(), Allowlist(("exchange:events",)), 0, target=asked)
    assert plan.ready and plan.target == asked
    assert plan.proposal.default == Target.queue("billing")


def test_no_target_at_all_is_no_plan_to_send() -> None:
    row = {**dead_letter_row(), "headers": None}
    plan = plan_for(row, EVERYTHING, 0)
    assert plan.target is None and not plan.ready and plan.add_entry is None
    assert plan.why_not is not None and "no target" in plan.why_not


# -- plan_for: what would be sent ----------------------------------------------------------------


def test_a_body_stored_cut_is_refused_unless_edited() -> None:
    row = stored(body=b'{"orderId":"A-1","lines":[1,2,3]}', max_body=8)
    assert row["body_truncated"]
    plan = plan_for(row, EVERYTHING, 0)
    assert not plan.ready and plan.refusal and "stored cut" in plan.refusal
    edited = plan_for(row, EVERYTHING, 0, body=b'{"orderId":"A-1"}')
    assert edited.ready and edited.edited and edited.body == b'{"orderId":"A-1"}'


def test_a_row_without_property_bytes_is_refused() -> None:
    plan = plan_for({**stored(), "raw_properties": None}, EVERYTHING, 0)
    assert not plan.ready and plan.refusal and "property bytes were not stored" in plan.refusal
    edited = plan_for({**stored(), "raw_properties": None}, EVERYTHING, 0, body=b"{}")
    assert not edited.ready


def test_a_row_without_its_body_is_refused() -> None:
    plan = plan_for({**stored(), "body": None}, EVERYTHING, 0)
    assert not plan.ready and plan.refusal and "body was not stored" in plan.refusal


@pytest.mark.parametrize("nested", [False, True])
def test_a_dlq_wrapper_sends_its_original_event_as_compact_json(nested: bool) -> None:
    original = {"orderId": "A-1", "total": 12.5, "note": "ünï ☃", "lines": [{"sku": "x"}]}
    wrapper = {"originalEvent": original, "error": "card declined", "retries": 3}
    body = json.dumps({"data": wrapper} if nested else wrapper, indent=2).encode()
    row = stored("events", "dlq.order.paid", None, body)
    plan = plan_for(row, Allowlist(("exchange:events",)), 0)
    assert plan.ready and plan.target == Target.exchange("events", "order.paid")
    expected = json.dumps(original, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert plan.body == expected
    assert plan.raw_properties == row["raw_properties"] and not plan.edited


@pytest.mark.parametrize(
    "body",
    [
        b"card declined",
        b"",
        b'{"error": "card declined", "retries": 3}',
        b'{"originalEvent": [1, 2], "error": "x", "retries": 1}',
        b'{"originalEvent": "A-1"}',
        b"[1, 2, 3]",
        b"\xff\xfe",
    ],
)
def test_a_malformed_dlq_wrapper_is_refused(body: bytes) -> None:
    row = stored("events", "dlq.order.paid", None, body)
    plan = plan_for(row, EVERYTHING, 0)
    assert not plan.ready
    assert plan.refusal and "no original event to replay" in plan.refusal
    assert plan_for(row, EVERYTHING, 0, body=b"{}").ready  # an edited body is sent as given


@pytest.mark.parametrize(
    "name", [REPLAY_ID_HEADER, "X-EventScope-Original-Id", REPLAY_COUNT_HEADER.upper()]
)
def test_editing_eventscopes_own_headers_is_refused(name: str) -> None:
    plan = plan_for(stored(), EVERYTHING, 0, headers={"x-tenant": "t2", name: "forged"})
    assert not plan.ready
    assert plan.refusal is not None and "is set by eventscope itself" in plan.refusal
    assert name in plan.refusal


def test_edited_headers_replace_the_stored_ones_and_keep_every_other_byte() -> None:
    row = stored(headers={"x-tenant": "t1", "x-trace": "abc"})
    plan = plan_for(row, EVERYTHING, 0, headers={"x-tenant": "t2", "x-flag": True, "x-n": 3})
    assert plan.ready and plan.edited and plan.raw_properties is not None
    before, after = split_properties(row["raw_properties"]), split_properties(plan.raw_properties)
    assert {k: v for k, v in after.items() if k != "headers"} == {
        k: v for k, v in before.items() if k != "headers"
    }
    entries = header_entries(plan.raw_properties)
    assert values_of(entries, "x-tenant") == [b"t2"]
    assert values_of(entries, "x-trace") == [b"abc"]
    assert values_of(entries, "x-flag") == [b"\x01"]
    assert values_of(entries, "x-n") == [struct.pack(">q", 3)]


@pytest.mark.parametrize(
    "headers",
    [
        {"x-amount": 1.5},
        {"x-none": None},
        {"x-list": ["a"]},
        {"x-table": {"a": 1}},
        {"x-long": "x" * (MAX_HEADER_VALUE + 1)},
        {"x-big": 2**63},
        {"x" * 256: "name too long"},
        {"x-bad": "\ud800"},
    ],
)
def test_unsendable_edited_headers_raise_replay_refused(headers: dict[str, Any]) -> None:
    with pytest.raises(ReplayRefused) as refused:
        plan_for(stored(), EVERYTHING, 0, headers=headers)
    assert refused.value.status == 422


@pytest.mark.parametrize(
    ("earlier", "carried", "expected"),
    [
        (0, None, 1),
        (2, None, 3),
        (0, 4, 5),
        (5, 2, 6),
        (2, 5, 6),
        (1, "7", 8),
        (0, "many", 1),
        (3, -9, 4),
    ],
)
def test_the_replay_count_counts_past_the_ledger_and_the_carried_header(
    earlier: int, carried: Any, expected: int
) -> None:
    headers = None if carried is None else {REPLAY_COUNT_HEADER: carried}
    assert plan_for(stored(headers=headers), EVERYTHING, earlier).replay_count == expected


# -- who the original is, which rows are dead letters --------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"carried": "orig-0", "event_id": "evt-1", "message_id": "m-1"}, "orig-0"),
        ({"event_id": "evt-1", "message_id": "m-1"}, "evt-1"),
        ({"message_id": "m-1"}, "m-1"),
        ({}, "eventscope:9"),
        ({"carried": "", "event_id": "", "message_id": "m-1"}, "m-1"),
        ({"carried": "  ", "event_id": None, "message_id": ""}, "eventscope:9"),
    ],
)
def test_the_original_id_prefers_carried_then_event_then_message_then_row(
    fields: dict[str, Any], expected: str
) -> None:
    carried = fields.pop("carried", None)
    headers = None if carried is None else encode_table({ORIGINAL_ID_HEADER: carried})
    row = {**stored(row_id=9), "headers": headers, "event_id": None, "message_id": None, **fields}
    assert original_id_of(row) == expected
    assert plan_for(row, EVERYTHING, 0).original_id == expected


def test_dead_letters_are_native_and_dlq_key_rows_but_not_retry_copies() -> None:
    retry = native_headers(
        death("retry.5s", exchange="retry", reason="expired"), death("billing"), first_exchange=None
    )
    assert is_dead_letter(dead_letter_row())
    assert is_dead_letter(stored("events", "dlq.order.paid"))
    assert not is_dead_letter(stored("events", "order.paid"))
    assert not is_dead_letter(stored("events", "order.paid", retry))
    assert not plan_for(stored("events", "order.paid", retry), EVERYTHING, 0).dead_letter


# -- replay_properties ---------------------------------------------------------------------------

OWN = {name.encode() for name in OWN_HEADERS}


def assert_replay_headers(plan: ReplayPlan, replay_id: str) -> bytes:
    """The replay's property bytes: every non-header chunk as planned, the planned header
    entries in order, then each replay header exactly once."""
    assert plan.raw_properties is not None
    sent = replay_properties(plan, replay_id)
    before, after = split_properties(plan.raw_properties), split_properties(sent)
    assert {k: v for k, v in after.items() if k != "headers"} == {
        k: v for k, v in before.items() if k != "headers"
    }
    old = [e for e in parse_table(before.get("headers", b"\0\0\0\0")) if e.name not in OWN]
    entries = header_entries(sent)
    assert entries[: len(old)] == old
    assert values_of(entries, REPLAY_ID_HEADER) == [replay_id.encode()]
    assert values_of(entries, ORIGINAL_ID_HEADER) == [plan.original_id.encode()]
    assert values_of(entries, REPLAY_COUNT_HEADER) == [struct.pack(">q", plan.replay_count)]
    assert len(entries) == len(old) + 3
    return sent


def test_replay_properties_add_the_replay_headers_and_change_nothing_else() -> None:
    row = stored(
        headers={"x-tenant": "t1", "x-nested": {"a": [1, "b"]}},
        correlation_id="c-1",
        priority=3,
        delivery_mode=2,
        timestamp=AT,
        app_id="shop",
        reply_to="replies",
    )
    plan = plan_for(row, EVERYTHING, 0)
    assert_replay_headers(plan, "r-1")


def test_replay_properties_add_a_header_table_where_there_was_none() -> None:
    row = stored(headers=None)
    assert "headers" not in split_properties(row["raw_properties"])
    assert_replay_headers(plan_for(row, EVERYTHING, 0), "r-1")


def test_a_replay_of_a_replay_carries_each_replay_header_once() -> None:
    earlier = {REPLAY_ID_HEADER: "r-1", ORIGINAL_ID_HEADER: "evt-0", REPLAY_COUNT_HEADER: 1}
    row = stored(headers={"x-tenant": "t1", **earlier}, row_id=2)
    plan = plan_for(row, EVERYTHING, 0)
    assert (plan.original_id, plan.replay_count) == ("evt-0", 2)
    sent = assert_replay_headers(plan, "r-2")
    assert values_of(header_entries(sent), "x-tenant") == [b"t1"]


def test_a_header_table_naming_the_replay_id_twice_keeps_it_once() -> None:
    twice = [(b"x-eventscope-replay-id", b"S" + long_string(b"old")) for _ in range(2)]
    raw = join_properties(
        {"message_id": short_string(b"m-1"), "headers": table([*twice, (b"a", b"t\x02")])}
    )
    row = {**stored(), "raw_properties": raw}
    sent = assert_replay_headers(plan_for(row, EVERYTHING, 0), "r-9")
    assert values_of(header_entries(sent), "a") == [b"\x02"]  # a non-0/1 boolean octet kept


@given(
    headers=st.dictionaries(
        st.sampled_from([*OWN_HEADERS, "x-tenant", "x-trace", "content-type", "ü"]),
        st.text(max_size=20) | st.integers(-(2**31), 2**31 - 1) | st.booleans(),
        max_size=5,
    ),
    message_id=st.none() | st.text(max_size=30),
    correlation_id=st.none() | st.text(max_size=30),
    priority=st.none() | st.integers(0, 9),
    replay_id=st.uuids().map(lambda u: u.hex),
    earlier=st.integers(0, 1000),
)
def test_replay_properties_keep_every_other_byte_for_any_stored_message(
    headers: dict[str, Any],
    message_id: str | None,
    correlation_id: str | None,
    priority: int | None,
    replay_id: str,
    earlier: int,
) -> None:
    props: dict[str, Any] = {"headers": headers or None, "priority": priority}
    props.update(message_id=message_id, correlation_id=correlation_id)
    raw = Basic.Properties(**props).marshal()
    row = {**stored(), "raw_properties": raw, "headers": encode_table(headers)}
    plan = plan_for(row, EVERYTHING, earlier)
    assert plan.ready
    assert_replay_headers(plan, replay_id)


# -- hostile input -------------------------------------------------------------------------------

wrapper_bodies = st.builds(
    lambda original, extra: json.dumps({"originalEvent": original, **extra}).encode(),
    json_values,
    st.dictionaries(st.sampled_from(["error", "retries", "data"]), json_values, max_size=3),
)
hostile_rows = st.fixed_dictionaries(
    {
        "id": st.integers(1, 2**40),
        "exchange": names | st.none() | st.text(max_size=300),
        "routing_key": names.map(lambda k: f"dlq.{k}") | names | st.integers(),
        "dead_letter": st.sampled_from([None, "x-death", "dlq-key"]),
        "headers": st.none()
        | st.text(max_size=50)
        | st.dictionaries(st.text(max_size=25), json_values, max_size=4).map(encode_table)
        | st.builds(lambda d: native_headers(d), st.just(death("billing"))).map(encode_table)
        | st.builds(lambda v: encode_table({"x-death": v}), json_values),
        "body": st.none() | st.binary(max_size=80) | wrapper_bodies,
        "body_truncated": st.booleans(),
        "raw_properties": st.none()
        | st.just(Basic.Properties(message_id="m-1", headers={"a": 1}).marshal())
        | st.binary(max_size=20),
        "event_id": st.none() | st.text(max_size=20) | st.integers(),
        "message_id": st.none() | st.text(max_size=20),
    }
)
edited_headers = st.none() | st.dictionaries(
    st.text(max_size=30) | st.sampled_from([*OWN_HEADERS, "X-EVENTSCOPE-REPLAY-ID"]),
    st.text(max_size=50)
    | st.integers()
    | st.booleans()
    | st.floats()
    | st.none()
    | st.lists(st.text(max_size=3), max_size=2),
    max_size=4,
)
allowlists = st.lists(
    st.builds(lambda kind, glob: f"{kind}:{glob}", st.sampled_from(["exchange", "queue"]), names),
    max_size=3,
).map(lambda entries: Allowlist(tuple(entries)))


@settings(max_examples=300)
@given(
    row=hostile_rows,
    allowlist=allowlists,
    earlier=st.integers(0, 10),
    headers=edited_headers,
    body=st.none() | st.binary(max_size=40),
    target=st.none() | st.builds(Target.queue, names) | st.builds(Target.exchange, names, names),
)
def test_plan_for_raises_only_replay_refused_and_never_readies_a_refused_target(
    row: dict[str, Any],
    allowlist: Allowlist,
    earlier: int,
    headers: dict[str, Any] | None,
    body: bytes | None,
    target: Target | None,
) -> None:
    try:
        plan = plan_for(row, allowlist, earlier, target=target, body=body, headers=headers)
    except ReplayRefused as refused:
        assert headers, "only edited headers can be refused by raising"
        assert refused.status == 422
        return
    assert plan.replay_count >= earlier + 1
    assert plan.original_id
    if plan.target is None or not allowlist.allows(plan.target):
        assert not plan.ready and plan.why_not
    if plan.ready:
        assert plan.body is not None and plan.raw_properties is not None
        assert plan.add_entry is None and plan.refusal is None
    elif plan.target is not None and not plan.allowed:
        assert plan.add_entry == plan.target.entry


# -- hostile stored data found by the property tests: refused, never raised -------------------


def dlq_row(body: bytes) -> dict[str, Any]:
    return stored("events", "dlq.order.paid", None, body)


def test_a_wrapper_whose_original_event_holds_a_lone_surrogate_is_refused() -> None:
    body = rb'{"originalEvent": {"note": "\ud800"}, "error": "x", "retries": 1}'
    plan = plan_for(dlq_row(body), EVERYTHING, 0)
    assert not plan.ready
    assert plan.refusal is not None and "cannot be written back as JSON" in plan.refusal


def test_a_deeply_nested_original_event_is_refused_not_raised() -> None:
    depth = 1010  # orjson reads up to 1024 levels; json.dumps gives up near 1000
    body = b'{"originalEvent": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    plan = plan_for(dlq_row(body), EVERYTHING, 0)
    assert not plan.ready
    assert plan.refusal is not None and "RecursionError" in plan.refusal


def test_a_replay_count_header_of_odd_digits_counts_as_zero() -> None:
    row = stored(headers={REPLAY_COUNT_HEADER: "²"})
    assert plan_for(row, EVERYTHING, 0).replay_count == 1


# -- a replay's copy on a working exchange is no new failure ------------------------------------


def test_a_replayed_dead_letter_seen_on_a_working_exchange_is_an_event() -> None:
    from eventscope.backend.fieldtable import encode_table
    from eventscope.backend.trace import role_of

    death = {"queue": "orders", "reason": "rejected", "count": 1, "exchange": "events",
             "routing-keys": ["order.paid"]}  # fmt: skip
    replayed = encode_table({"x-death": [death], "x-eventscope-replay-id": "r-1"})
    original = encode_table({"x-death": [death]})
    row = {"dead_letter": "x-death", "exchange": "events", "routing_key": "order.paid"}
    assert role_of({**row, "headers": replayed}) == "event"
    assert role_of({**row, "headers": original}) == "dead_letter"
    assert role_of({**row, "exchange": "events.dlx", "headers": replayed}) == "dead_letter"
    assert role_of({**row, "captured_from": "orders.dlq", "headers": replayed}) == "dead_letter"
    assert role_of({**row, "routing_key": "dlq.order.paid", "headers": replayed}) == "dead_letter"
