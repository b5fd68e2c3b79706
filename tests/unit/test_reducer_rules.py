"""Level 2: declarative reducer rules in TOML, every operation, every error, the seed's Order."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscope.backend.aggregates.fold import fold
from eventscope.backend.aggregates.json_values import MISSING, lookup
from eventscope.backend.aggregates.reducer_rules import Rule, load_rules, rules_from_text
from eventscope.backend.aggregates.reducer_set import combine, load_reducers
from eventscope.backend.aggregates.reducers import (
    Event,
    FoldLimits,
    ReducerConfigError,
    ReducerError,
)
from tests.unit.aggregate_rows import recorded, seed_event

REPO = Path(__file__).resolve().parents[2]
RECEIVED = dt.datetime(2025, 10, 22, 14, 31, tzinfo=dt.UTC)
OCCURRED = dt.datetime(2025, 10, 22, 14, 30, tzinfo=dt.UTC)


def rule(operations: str) -> Rule:
    book = rules_from_text("[Order.Tested]\n" + textwrap.dedent(operations), "test.toml")
    return book.rules[("Order", "Tested")]


def paid_event(body: dict[str, Any] | None = None) -> Event:
    body = body or {
        "id": "evt_1",
        "timestamp": "2025-10-22T14:30:00.000Z",
        "eventType": "Tested",
        "version": 7,
        "data": {"amount": 5, "method": {"kind": "card"}, "tags": ["a"]},
    }
    return Event(
        body=body,
        event_type="Tested",
        event_id="evt_1",
        aggregate_type="Order",
        aggregate_id="order_123",
        version=7,
        occurred_at=OCCURRED,
        received_at=RECEIVED,
        row_id=42,
    )


def run(operations: str, state: dict[str, Any], body: dict[str, Any] | None = None) -> Any:
    before = repr(state)
    applied = rule(operations).apply(state, 100, paid_event(body), FoldLimits())
    assert repr(state) == before, "a rule never changes the state it is given"
    return applied


@pytest.mark.parametrize(
    ("operations", "state", "expected"),
    [
        # merge
        (
            'merge = "$event.data"',
            {"a": 1},
            {"a": 1, "amount": 5, "method": {"kind": "card"}, "tags": ["a"]},
        ),
        (
            'merge = "$data"',
            {"method": {"x": 1}},
            {"amount": 5, "method": {"x": 1, "kind": "card"}, "tags": ["a"]},
        ),
        (
            'merge = { payment = "$data.method" }',
            {"payment": {"id": 1}},
            {"payment": {"id": 1, "kind": "card"}},
        ),
        ('merge = { payment = "$data.method" }', {}, {"payment": {"kind": "card"}}),
        (
            'merge = { "payment.extra" = 3 }',
            {"payment": {"id": 1}},
            {"payment": {"id": 1, "extra": 3}},
        ),
        # set: constants, references, nested and dotted paths, a literal $
        ('set = { status = "paid" }', {"status": "created"}, {"status": "paid"}),
        ('set = { paidAt = "$event.timestamp" }', {}, {"paidAt": "2025-10-22T14:30:00.000Z"}),
        ('set = { amount = "$data.amount" }', {}, {"amount": 5}),
        ('set = { first = "$data.tags.0" }', {}, {"first": "a"}),
        ('set = { v = "$meta.version", t = "$meta.event_type" }', {}, {"v": 7, "t": "Tested"}),
        (
            'set = { at = "$meta.time", got = "$meta.received_at" }',
            {},
            {"at": "2025-10-22T14:30:00+00:00", "got": "2025-10-22T14:31:00+00:00"},
        ),
        (
            'set = { "payment.method" = "card" }',
            {"payment": {"id": 1}},
            {"payment": {"id": 1, "method": "card"}},
        ),
        ("set = { payment.method = 'card' }", {}, {"payment": {"method": "card"}}),
        ("[Order.Tested.set.payment]\nmethod = 'card'", {}, {"payment": {"method": "card"}}),
        ('set = { price = "$$5" }', {}, {"price": "$5"}),
        ('set = { "a\\\\.b" = 1 }', {}, {"a.b": 1}),
        ("set = { reset = {} }", {"reset": {"x": 1}}, {"reset": {}}),
        ('set = { pair = ["$meta.version", "x"] }', {}, {"pair": [7, "x"]}),
        ("set = { when = 2025-10-22T14:30:00Z }", {}, {"when": "2025-10-22T14:30:00+00:00"}),
        ('set = { body = "$event" }', {}, {"body": paid_event().body}),
        # unset
        ('unset = "status"', {"status": "x", "a": 1}, {"a": 1}),
        (
            'unset = ["payment.method", "missing", "a.b.c"]',
            {"payment": {"method": 1, "id": 2}, "a": 5},
            {"payment": {"id": 2}, "a": 5},
        ),
        # append
        ('append = { history = "$meta.event_type" }', {}, {"history": ["Tested"]}),
        (
            'append = { history = "$meta.event_type" }',
            {"history": ["Created"]},
            {"history": ["Created", "Tested"]},
        ),
        ('append = { "log.amounts" = "$data.amount" }', {}, {"log": {"amounts": [5]}}),
        ("append = { pairs = [1, 2] }", {"pairs": []}, {"pairs": [[1, 2]]}),
        # increment
        ("increment = { count = 1 }", {}, {"count": 1}),
        ("increment = { count = 1 }", {"count": 41}, {"count": 42}),
        ("increment = { total = 0.5 }", {"total": 1}, {"total": 1.5}),
        (
            'increment = { "stats.paid" = "$data.amount" }',
            {"stats": {"paid": 10}},
            {"stats": {"paid": 15}},
        ),
        ("increment = { count = -2 }", {"count": 1}, {"count": -1}),
    ],
)
def test_operations(operations: str, state: dict[str, Any], expected: dict[str, Any]) -> None:
    applied = run(operations, state)
    assert applied.state == expected
    assert applied.notes == ()


def test_operations_apply_in_a_fixed_order_merge_set_unset_append_increment() -> None:
    applied = run(
        """
        increment = { n = 1 }
        append = { n_seen = "$data.amount" }
        unset = ["amount"]
        set = { amount = 99, n = 10 }
        merge = "$data"
        """,
        {},
    )
    # merge wrote amount=5, set overwrote it with 99, unset removed it; n was set to 10 and
    # incremented after.
    assert applied.state == {"method": {"kind": "card"}, "tags": ["a"], "n": 11, "n_seen": [5]}


@pytest.mark.parametrize(
    ("operations", "state", "message"),
    [
        (
            'merge = "$data.amount"',
            {},
            "merge: $data.amount is a number, not an object: nothing to merge",
        ),
        (
            'set = { "status.code" = 1 }',
            {"status": "paid"},
            "set status.code: status is a string, not an object",
        ),
        (
            'append = { history = "x" }',
            {"history": "x"},
            "append history: it is a string, not a list",
        ),
        (
            "increment = { count = 1 }",
            {"count": "1"},
            "increment count: it is a string, not a number",
        ),
        (
            "increment = { flag = 1 }",
            {"flag": True},
            "increment flag: it is a boolean, not a number",
        ),
        (
            'increment = { count = "$data.method" }',
            {},
            "increment count: by an object, not a number",
        ),
    ],
)
def test_operations_that_cannot_apply_are_errors(
    operations: str, state: dict[str, Any], message: str
) -> None:
    with pytest.raises(ReducerError) as caught:
        run(operations, state)
    assert str(caught.value) == message


def test_a_failing_operation_leaves_the_whole_rule_unapplied() -> None:
    rows = [
        recorded(1, seed_event(1, "Tested", {"amount": 5})),
        recorded(2, seed_event(2, "Tested", {"amount": 6})),
    ]
    book = rules_from_text(
        '[Order.Tested]\nset = { status = "seen" }\nincrement = { "status.n" = 1 }\n', "t.toml"
    )
    folded = fold(rows, combine(book, {}, limits=FoldLimits()))
    assert folded.state == {}
    assert folded.steps[0].error == "increment status.n: status is a string, not an object"


def test_a_missing_reference_skips_that_field_and_says_so() -> None:
    applied = run(
        'set = { paidAt = "$event.paidAt", status = "paid" }\nappend = { seen = ["$data.nope"] }',
        {},
    )
    assert applied.state == {"status": "paid"}
    assert applied.notes == (
        "set paidAt: $event.paidAt is missing in this event: skipped",
        "append seen: a referenced field is missing in this event: skipped",
    )


# --- errors at load: file, rule (its table path) and reason ------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[Order.OrderPaid\n", "{file}: invalid TOML: "),
        ("Order = 1\n", "{file}: [Order] expected a table of event types, e.g. [Order.OrderPaid]"),
        ("[Order]\nOrderPaid = 1\n", "{file}: [Order.OrderPaid] expected a table of operations"),
        (
            "[Order.OrderPaid]\nsett = { a = 1 }\n",
            "{file}: [Order.OrderPaid] unknown operation 'sett' "
            "(expected merge, set, unset, append, increment)",
        ),
        (
            '[Order.OrderPaid]\nset = { paidAt = "$evnt.timestamp" }\n',
            "{file}: [Order.OrderPaid] set.paidAt: unknown reference '$evnt.timestamp' "
            "(expected $event.<path>, $data.<path>, $meta.<name>, or $$ for a literal $)",
        ),
        (
            '[Order.OrderPaid]\nset = { v = "$meta.nope" }\n',
            "{file}: [Order.OrderPaid] set.v: unknown reference '$meta.nope' "
            "($meta names: event_id, event_type",
        ),
        (
            '[Order.OrderPaid]\nset = { v = "$event..x" }\n',
            "{file}: [Order.OrderPaid] set.v: path '.x' has an empty segment",
        ),
        (
            '[Order.OrderPaid]\nset = { "a..b" = 1 }\n',
            "{file}: [Order.OrderPaid] set: path 'a..b' has an empty segment",
        ),
        (
            "[Order.OrderPaid]\nset = 5\n",
            "{file}: [Order.OrderPaid] set: expected a table of path = value, got a number",
        ),
        (
            '[Order.OrderPaid]\nincrement = { n = "1" }\n',
            "{file}: [Order.OrderPaid] increment.n: the amount must be a number",
        ),
        (
            "[Order.OrderPaid]\nincrement = { n = nan }\n",
            "{file}: [Order.OrderPaid] increment.n: nan is not a JSON number",
        ),
        (
            "[Order.OrderPaid]\nunset = { a = 1 }\n",
            "{file}: [Order.OrderPaid] unset: expected a path or a list of paths",
        ),
        (
            '[Order.OrderPaid]\nmerge = "paid"\n',
            "{file}: [Order.OrderPaid] merge: 'paid' is a constant string; "
            "merge a reference like $data",
        ),
        ('[Order."*"]\nsett = 1\n', "{file}: [Order.\"*\"] unknown operation 'sett'"),
        (
            '["billing.Invoice".Sent]\nset = { "" = 1 }\n',
            '{file}: ["billing.Invoice".Sent] set: a path must be a non-empty string',
        ),
    ],
)
def test_invalid_rules_fail_at_start_naming_file_rule_and_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "reducers.toml"
    path.write_text(text)
    with pytest.raises(ReducerConfigError) as caught:
        load_reducers(path, [], demo=False, entry_points=False)
    assert str(caught.value).startswith(message.format(file=path)), str(caught.value)


def test_an_unreadable_rules_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ReducerConfigError, match=f"{missing}: cannot read the reducer rules"):
        load_rules(missing)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ReducerConfigError, match=f"{binary}: not UTF-8 text"):
        load_rules(binary)


def test_an_empty_rule_is_allowed_and_ignores_its_event_type() -> None:
    applied = run("", {"a": 1})
    assert applied.state == {"a": 1}


# --- the seed's Order ----------------------------------------------------------------------


def test_the_seeds_order_rules_give_the_seeds_result() -> None:
    """applyEvent for Order (seed: event-sourcing example), expressed with no code."""
    created = seed_event(
        1,
        "OrderCreated",
        {"userId": "user_abc", "items": [{"sku": "sku_1", "qty": 2}], "total": 99.99},
        timestamp="2025-10-22T14:30:00.000Z",
    )
    paid = seed_event(
        2, "OrderPaid", {"paymentMethod": "credit_card"}, timestamp="2025-10-22T14:31:07.250Z"
    )
    rows = [recorded(1, created), recorded(2, paid)]
    for reducers in (
        load_reducers(None, [], demo=True, entry_points=False),
        load_reducers(REPO / "examples/reducers/order.toml", [], demo=False, entry_points=False),
    ):
        folded = fold(rows, reducers)
        assert folded.state_after(0) == {
            "userId": "user_abc",
            "items": [{"sku": "sku_1", "qty": 2}],
            "total": 99.99,
            "status": "created",
        }
        assert folded.state == {
            "userId": "user_abc",
            "items": [{"sku": "sku_1", "qty": 2}],
            "total": 99.99,
            "status": "paid",
            "paidAt": "2025-10-22T14:31:07.250Z",  # the event body's timestamp string
        }


@pytest.mark.parametrize(
    ("event_type", "status", "field"),
    [("OrderShipped", "shipped", "shippedAt"), ("OrderCancelled", "cancelled", "cancelledAt")],
)
def test_the_seeds_order_rules_ship_and_cancel(event_type: str, status: str, field: str) -> None:
    rows = [
        recorded(1, seed_event(1, "OrderCreated", {"total": 1})),
        recorded(
            2, seed_event(2, event_type, {"carrier": "DHL"}, timestamp="2025-10-23T09:00:00Z")
        ),
    ]
    folded = fold(rows, load_reducers(None, [], demo=True, entry_points=False))
    assert folded.state == {"total": 1, "status": status, field: "2025-10-23T09:00:00Z"}


@given(
    st.lists(st.sampled_from(["a", "b", "c.d", "__proto__"]), min_size=1, max_size=3),
    st.one_of(st.integers(-5, 5), st.text(max_size=4), st.booleans()),
)
def test_set_then_unset_round_trips_any_path_and_value(keys: list[str], value: Any) -> None:
    path = json.dumps(".".join(k.replace(".", "\\.") for k in keys))
    applied = run(f"set = {{ {path} = {_toml(value)} }}", {})
    assert lookup(applied.state, tuple(keys)) == value
    removed = run(f"set = {{ {path} = {_toml(value)} }}\nunset = {path}", {})
    assert lookup(removed.state, tuple(keys)) is MISSING


def _toml(value: Any) -> str:
    """A TOML constant for `value` (a string starting with $ is written with $$)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = "$" + value if value.startswith("$") else value
        return '"' + "".join(_toml_char(c) for c in text) + '"'
    return str(value)


def _toml_char(char: str) -> str:
    """A character inside a TOML basic string: control characters and DEL escaped."""
    if char in '"\\' or ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\u{ord(char):04x}"
    return char


def test_the_rules_in_the_docs_load_and_the_order_example_is_the_shipped_file() -> None:
    text = (REPO / "docs/reducers.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    rules = [b for b in blocks if "[project" not in b]
    assert len(rules) >= 2
    for block in rules:
        assert rules_from_text(block, "docs/reducers.md").rules
    shipped = (REPO / "examples/reducers/order.toml").read_text(encoding="utf-8")
    assert rules_from_text(rules[0], "doc").digest == rules_from_text(shipped, "file").digest
