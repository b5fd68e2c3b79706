"""Reducers level 1 and 3, the reducer set's lookup, and the JSON values states are made of."""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscope.backend.aggregates.fold import fold
from eventscope.backend.aggregates.json_values import (
    MISSING,
    ValueProblem,
    checked_copy,
    deep_merge,
    lookup,
    parse_event_body,
    parse_path,
    remove_at,
    replace_at,
)
from eventscope.backend.aggregates.reducer_modules import ReducerRegistry, load_modules
from eventscope.backend.aggregates.reducer_rules import rules_from_text
from eventscope.backend.aggregates.reducer_set import combine, demo_rules_text, load_reducers
from eventscope.backend.aggregates.reducers import (
    DEFAULT_REDUCER,
    Event,
    FoldLimits,
    ReducerConfigError,
    ReducerError,
)
from tests.unit.aggregate_rows import recorded, seed_event

REPO = Path(__file__).resolve().parents[2]


def event(body: dict[str, Any], **fields: Any) -> Event:
    return Event(
        body=body,
        event_type=fields.get("event_type", body.get("eventType")),
        event_id=body.get("id"),
        aggregate_type="Order",
        aggregate_id="order_123",
        version=body.get("version"),
        occurred_at=None,
        received_at=dt.datetime(2025, 10, 22, tzinfo=dt.UTC),
    )


def default(state: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    return DEFAULT_REDUCER.apply(state, 2, event(body), FoldLimits()).state


# --- level 1: the default deep merge --------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "body", "expected"),
    [
        ({}, {"data": {"a": 1}}, {"a": 1}),
        ({"a": 1, "b": 2}, {"data": {"b": 3}}, {"a": 1, "b": 3}),
        (
            {"o": {"x": 1, "y": 2}},
            {"data": {"o": {"y": 3, "z": 4}}},
            {"o": {"x": 1, "y": 3, "z": 4}},
        ),
        ({"items": [1, 2, 3]}, {"data": {"items": [9]}}, {"items": [9]}),  # arrays replace
        ({"o": {"x": 1}}, {"data": {"o": 5}}, {"o": 5}),  # a scalar replaces an object
        ({"o": 5}, {"data": {"o": {"x": 1}}}, {"o": {"x": 1}}),  # and the other way round
        ({"a": 1}, {"data": {"a": None}}, {"a": None}),  # null is a value
        ({}, {"data": {"a.b": 1}}, {"a.b": 1}),  # dots in keys are kept, not paths
        ({}, {"data": {"__proto__": {"x": 1}}}, {"__proto__": {"x": 1}}),
        # Without `data`: the body minus the envelope fields.
        (
            {},
            {
                "id": "e1",
                "type": "t",
                "eventType": "E",
                "timestamp": "2025-01-01T00:00:00Z",
                "aggregateId": "a",
                "aggregateType": "A",
                "version": 1,
                "metadata": {"source": "s"},
                "amount": 5,
                "status": "open",
            },
            {"amount": 5, "status": "open"},
        ),
    ],
)
def test_default_reducer_deep_merges_the_events_data(
    state: dict[str, Any], body: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = repr(state)
    assert default(state, body) == expected
    assert repr(state) == before, "the previous state is never changed"


def test_default_reducer_shows_data_that_is_not_an_object() -> None:
    with pytest.raises(ReducerError, match="data is a list, not an object"):
        default({}, {"data": [1, 2]})
    applied = DEFAULT_REDUCER.apply({"a": 1}, 2, event({"data": None}), FoldLimits())
    assert applied.state == {"a": 1}
    assert applied.notes == ("data is null: nothing merged",)


def _reference_merge(base: Any, incoming: Any) -> Any:
    if isinstance(base, dict) and isinstance(incoming, dict):
        out = dict(base)
        for k, v in incoming.items():
            out[k] = _reference_merge(base[k], v) if k in base else v
        return out
    return incoming


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from("abc.$_"), children, max_size=3)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.sampled_from(["a", "b", "c", "a.b"]), json_values, max_size=4)


@given(objects, objects)
def test_deep_merge_matches_a_plain_recursive_merge_and_changes_nothing(
    base: dict[str, Any], incoming: dict[str, Any]
) -> None:
    before, incoming_before = repr(base), repr(incoming)
    merged, _ = deep_merge(base, incoming)
    assert merged == _reference_merge(base, incoming)
    assert repr(base) == before and repr(incoming) == incoming_before


# --- values, paths and bounds ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("a", ("a",)),
        ("a.b.c", ("a", "b", "c")),
        ("labels.app\\.kubernetes\\.io", ("labels", "app.kubernetes.io")),
        ("back\\\\slash", ("back\\slash",)),
        ("__proto__.x", ("__proto__", "x")),
    ],
)
def test_dotted_paths(text: str, path: tuple[str, ...]) -> None:
    assert parse_path(text) == path


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "non-empty"),
        ("a..b", "empty segment"),
        (".a", "empty segment"),
        ("a.", "empty segment"),
        ("a\\b", "must be followed"),
        (".".join(["x"] * 33), "more than 32"),
    ],
)
def test_bad_paths_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_path(text)


@given(objects, st.lists(st.sampled_from(["a", "b", "x"]), min_size=1, max_size=4), json_values)
def test_replace_and_remove_never_change_the_state_they_are_given(
    state: dict[str, Any], path: list[str], value: Any
) -> None:
    before = repr(state)
    try:
        updated, _ = replace_at(state, tuple(path), value)
    except ValueProblem:
        assert repr(state) == before
        return
    assert lookup(updated, tuple(path)) == value
    removed, old = remove_at(updated, tuple(path))
    assert old == value and lookup(removed, tuple(path)) is MISSING
    assert repr(state) == before


def test_replace_through_a_value_that_is_not_an_object_names_it() -> None:
    with pytest.raises(ValueProblem, match=r"payment\.method is a string, not an object"):
        replace_at({"payment": {"method": "card"}}, ("payment", "method", "brand"), "visa")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({1: "a"}, r"key 1 at \(the state\) is not a string"),
        ({"a": {1, 2}}, "a Python set at a is not a JSON value"),
        ({"a": [dt.datetime(2025, 1, 1)]}, r"a Python datetime at a\[0\] is not a JSON value"),
        ({"a": ("t",)}, "a Python tuple at a is not a JSON value"),
    ],
)
def test_checked_copy_refuses_what_is_not_json(value: Any, problem: str) -> None:
    with pytest.raises(ValueProblem, match=problem):
        checked_copy(value, max_bytes=10_000)


def test_checked_copy_bounds_depth_and_shared_growth() -> None:
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"d": deep}
    with pytest.raises(ValueProblem, match="nested too deeply"):
        checked_copy(deep, max_bytes=10**9)
    # Sharing makes a value of 2^60 leaves from 60 small dicts: refused within the budget.
    shared: Any = {"x": "y" * 10}
    for _ in range(60):
        shared = {"l": shared, "r": shared}
    with pytest.raises(ValueProblem, match="too large"):
        checked_copy(shared, max_bytes=100_000)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "is not JSON"),
        (b"[1, 2]", "is a JSON array"),
        (b'"text"', "is not a JSON object"),
        (b"\xff\xfe{", "is not JSON"),
        (b'{"a":' * 100 + b"1" + b"}" * 100, "is nested more than 64 levels deep"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "is nested more than 64 levels deep"),
    ],
)
def test_bodies_that_cannot_be_folded_say_why(body: bytes, problem: str) -> None:
    assert parse_event_body(body) == problem


def test_bodies_keep_what_orjson_would_change() -> None:
    parsed = parse_event_body(b'{"big": 123456789012345678901234567890, "n": NaN, "s": "\\ud800"}')
    assert isinstance(parsed, dict)
    assert parsed["big"] == 123456789012345678901234567890  # not a float
    assert parsed["n"] != parsed["n"]  # NaN
    assert parsed["s"] == "\ud800"


@given(
    st.lists(
        st.one_of(
            st.integers(),
            st.integers(-(10**40), 10**40),
            st.floats(allow_nan=False),
            st.from_regex(r"[a-z_]{0,3}[0-9]{15,30}", fullmatch=True),
        ),
        max_size=6,
    ),
    st.sampled_from([(",", ":"), (", ", ": "), (",\n", ":\t"), (" ,", " :")]),
)
def test_bodies_parse_exactly_as_pythons_json_reads_them(
    values: list[Any], separators: tuple[str, str]
) -> None:
    body = json.dumps({"values": values, "n": values[:1]}, separators=separators).encode()
    assert repr(parse_event_body(body)) == repr(json.loads(body))


# --- level 3: Python reducers ---------------------------------------------------------------


def write_module(tmp_path: Path, name: str, source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


ORDER_MODULE = """
    def register(reducers):
        @reducers.on("Order", "OrderRefunded")
        def refunded(state, event):
            state["status"] = "refunded"  # in place: it is the reducer's own copy
            state.setdefault("refunds", []).append(event.data["amount"])
            return state

        @reducers.on("Order", "OrderBroken")
        def broken(state, event):
            raise ValueError("no amount in " + event.event_id)

        reducers.add("Order", "OrderOdd", lambda state, event: ["not", "a", "dict"])
        reducers.add("Order", "OrderDated", lambda state, event: {**state, "at": event.time})
"""


def python_reducers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = write_module(tmp_path, "shop_reducers", ORDER_MODULE, monkeypatch)
    return load_reducers(None, [name], demo=True, entry_points=False)


def test_python_reducers_fold_errors_show_at_their_step_and_the_rest_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reducers = python_reducers(tmp_path, monkeypatch)
    rows = [
        recorded(1, seed_event(1, "OrderCreated", {"total": 10})),
        recorded(2, seed_event(2, "OrderRefunded", {"amount": 4})),
        recorded(3, seed_event(3, "OrderBroken")),
        recorded(4, seed_event(4, "OrderOdd")),
        recorded(5, seed_event(5, "OrderDated")),
        recorded(6, seed_event(6, "OrderRefunded", {"amount": 6})),
    ]
    folded = fold(rows, reducers)
    errors = {s.version: s.error for s in folded.steps}
    assert errors[1] is None and errors[2] is None and errors[6] is None
    assert errors[3] is not None
    assert errors[3].startswith("ValueError: no amount in evt_OrderBroken_3 (at shop_reducers.py:")
    assert errors[4] == "shop_reducers.register.<locals>.<lambda> returned a list, not a dict"
    assert errors[5] is not None and "a Python datetime at at is not a JSON value" in errors[5]
    for step in folded.steps[2:5]:
        assert not step.changed
        assert [m.kind for m in step.markers] == ["error"]
    assert folded.steps[1].reducer == "python shop_reducers.register.<locals>.refunded"
    # In-place changes in the reducer's copy never reach earlier states.
    assert folded.state_after(1)["refunds"] == [4]
    assert folded.state == {"total": 10, "status": "refunded", "refunds": [4, 6]}


@pytest.mark.parametrize(
    ("source", "spec", "message"),
    [
        (None, "no_such_module_xyz", "reducer module 'no_such_module_xyz': cannot import: Module"),
        ("x = 1\n", "{name}", "has no function 'register'"),
        ("def setup(r):\n    pass\n", "{name}:missing", "has no function 'missing'"),
        (
            "def register(r):\n    r.add('Order', 'X', 'not callable')\n",
            "{name}",
            "register failed: TypeError: 'not callable' is not callable",
        ),
        ("raise RuntimeError('boom at import')\n", "{name}", "cannot import: RuntimeError: boom"),
    ],
)
def test_python_reducer_modules_that_cannot_load_fail_at_start_naming_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str | None, spec: str, message: str
) -> None:
    name = "bad_reducers_mod"
    if source is not None:
        write_module(tmp_path, name, source, monkeypatch)
    with pytest.raises(ReducerConfigError) as caught:
        load_modules([spec.format(name=name)], entry_points=False)
    assert message in str(caught.value)


def test_entry_points_of_the_group_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(
        tmp_path,
        "plugin_reducers",
        "def setup(r):\n    r.add('Invoice', '*', lambda s, e: {**s, 'seen': True})\n",
        monkeypatch,
    )
    info = tmp_path / "plugin_reducers-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-reducers\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[eventscope.reducers]\ninvoices = plugin_reducers:setup\n"
    )
    registry = load_modules([])
    assert ("Invoice", "*") in registry.reducers
    (info / "entry_points.txt").write_text("[eventscope.reducers]\nbroken = plugin_reducers:nope\n")
    with pytest.raises(ReducerConfigError, match=r"entry point 'broken'.*cannot load"):
        load_modules([])


# --- the reducer set ------------------------------------------------------------------------


def test_lookup_order_python_before_rules_specific_before_wildcards() -> None:
    book = rules_from_text(
        """
        [Order.OrderPaid]
        set = { by = "rules exact" }
        [Order."*"]
        set = { by = "rules order any" }
        ["*".OrderPaid]
        set = { by = "rules any paid" }
        """,
        "r.toml",
    )
    registry = ReducerRegistry()
    registry.add("Order", "OrderShipped", lambda s, e: {**s, "by": "python"})
    registry.add("Order", "OrderPaid", lambda s, e: {**s, "by": "python exact"})
    reducers = combine(book, registry.reducers, limits=FoldLimits())
    assert reducers.reducer_for("Order", "OrderPaid").label.startswith("python")
    assert reducers.reducer_for("Order", "OrderShipped").label.startswith("python")
    assert reducers.reducer_for("Order", "Other").label == 'rules r.toml [Order."*"]'
    assert reducers.reducer_for("Invoice", "OrderPaid").label == 'rules r.toml ["*".OrderPaid]'
    assert reducers.reducer_for("Invoice", "InvoiceSent") is DEFAULT_REDUCER
    assert reducers.reducer_for(None, None) is DEFAULT_REDUCER


def test_an_aggregate_type_with_rules_leaves_unlisted_event_types_unchanged_and_says_so() -> None:
    reducers = load_reducers(None, [], demo=True, entry_points=False)
    rows = [
        recorded(1, seed_event(1, "OrderCreated", {"total": 1})),
        recorded(2, seed_event(2, "OrderRefunded", {"total": 0})),
        recorded(3, seed_event(1, "InvoiceSent", {"n": 1}, aggregate_type="Invoice")),
    ]
    folded = fold(rows[:2], reducers)
    assert folded.state == {"total": 1, "status": "created"}
    unchanged = folded.steps[1]
    assert not unchanged.changed and unchanged.error is None
    assert unchanged.reducer is not None and "state unchanged" in unchanged.reducer
    assert [m.kind for m in unchanged.markers] == ["note"]
    assert fold(rows[2:], reducers).state == {"n": 1}  # no rules for Invoice: the default


def test_demo_rules_are_the_example_file_and_explicit_rules_win(tmp_path: Path) -> None:
    assert demo_rules_text() == (REPO / "examples/reducers/order.toml").read_text()
    demo = load_reducers(None, [], demo=True, entry_points=False)
    assert demo.sources == ("rules order.toml (demo)",)
    plain = load_reducers(None, [], demo=False, entry_points=False)
    assert plain.sources == () and plain.reducers == {}
    own = tmp_path / "mine.toml"
    own.write_text("[Invoice.InvoiceSent]\nset = { sent = true }\n")
    chosen = load_reducers(own, [], demo=True, entry_points=False)
    assert set(chosen.reducers) == {("Invoice", "InvoiceSent")}
    assert len({demo.fingerprint, plain.fingerprint, chosen.fingerprint}) == 3


def test_the_fingerprint_follows_the_rules_not_their_layout(tmp_path: Path) -> None:
    first, second, third = (tmp_path / n for n in ("a.toml", "b.toml", "c.toml"))
    first.write_text('[Order.OrderPaid]\nset = { status = "paid" }\n')
    second.write_text('# a comment\n\n[Order.OrderPaid]\nset = {status="paid"}\n')
    third.write_text('[Order.OrderPaid]\nset = { status = "PAID" }\n')
    prints = [
        load_reducers(p, [], demo=False, entry_points=False).fingerprint
        for p in (first, second, third)
    ]
    assert prints[0] == prints[1] != prints[2]
