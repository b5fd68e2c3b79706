"""The structural diff the compare page and the aggregates use: what it reports, that its changes
rebuild the other value, that it is bounded, and that its paths read unambiguously."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope.backend.structural_diff import Change, Run, apply, diff, path_text, summarise

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text()
json_data = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=20,
)
objects = st.dictionaries(st.text(max_size=4), json_data, max_size=5)


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN and types are strict (what the diff promises); keys in any
    order, as JSON objects compare."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def copied(value: Any) -> Any:
    return json.loads(json.dumps(value))


@given(json_data)
def test_a_value_does_not_differ_from_itself_or_its_copy(value: Any) -> None:
    assert diff(value, value) == []
    assert diff(value, copied(value)) == []


@given(objects, objects)
def test_applying_the_changes_rebuilds_the_other_object(before: Any, after: Any) -> None:
    changes = diff(before, after, max_changes=10_000)
    assert same(apply(before, changes), after)


@given(json_data, json_data)
def test_applying_the_changes_rebuilds_any_json_value(before: Any, after: Any) -> None:
    snapshot = copied(before)
    rebuilt = apply(before, diff(before, after, max_changes=10_000))
    assert same(rebuilt, after)
    assert same(before, snapshot), "apply must not modify its input"


@given(json_data, json_data, st.integers(min_value=1, max_value=20))
def test_the_output_is_bounded(before: Any, after: Any, bound: int) -> None:
    assert len(diff(before, after, max_changes=bound)) <= bound


def test_changes_name_paths_kinds_and_both_values() -> None:
    before = {"id": 1, "data": {"status": "new", "items": [{"sku": "a"}]}, "gone": True}
    after = {"id": 1, "data": {"status": "paid", "items": [{"sku": "b"}]}, "extra": None}
    assert diff(before, after) == [
        Change(("data", "status"), "changed", "new", "paid"),
        Change(("data", "items", 0, "sku"), "changed", "a", "b"),
        Change(("gone",), "removed", True, None),
        Change(("extra",), "added", None, None),
    ]


def test_types_compare_strictly() -> None:
    assert diff({"a": 1}, {"a": True}) == [Change(("a",), "changed", 1, True)]
    assert diff({"a": 1}, {"a": 1.0}) == [Change(("a",), "changed", 1, 1.0)]
    assert diff({"a": []}, {"a": {}}) == [Change(("a",), "changed", [], {})]
    assert diff({"a": float("nan")}, {"a": float("nan")}) == []
    assert diff(1, "1") == [Change((), "changed", 1, "1")]


def test_deep_nesting_does_not_recurse() -> None:
    depth = 5000  # far past the recursion limit
    before: Any = "x"
    after: Any = "y"
    for _ in range(depth):
        before, after = [before], [after]
    [change] = diff(before, after)
    assert change.path == (0,) * depth
    assert change.kind == "changed"


def test_long_array_tails_fold_into_runs() -> None:
    before = {"items": [1, 2]}
    after = {"items": [1, 2, *range(3, 503)], "x": 1}
    shown = summarise(diff(before, after))
    assert shown[0] == Run(("items",), "added", 2, 501, tuple(range(3, 503)))
    assert shown[0].count == 500
    assert shown[1] == Change(("x",), "added", None, 1)
    few = summarise(diff([1], [1, 2, 3]))
    assert all(isinstance(c, Change) for c in few), "short runs stay single changes"
    removed = summarise(diff(list(range(10)), [0]))
    assert removed == [Run((), "removed", 1, 9, tuple(range(1, 10)))]


def test_a_large_diff_stops_at_its_bound() -> None:
    before = {f"k{i}": i for i in range(50_000)}
    after = {f"k{i}": -i for i in range(50_000)}
    assert len(diff(before, after, max_changes=1000)) == 1000


def test_paths_read_like_code_and_quote_what_would_be_ambiguous() -> None:
    assert path_text(()) == "(root)"
    assert path_text(("data", "items", 0, "sku")) == "data.items[0].sku"
    assert path_text(("x-death", 0, "routing-keys")) == "x-death[0].routing-keys"
    assert path_text(("a.b",)) == '["a.b"]'
    assert path_text(("data", "a b", "c[0]")) == 'data["a b"]["c[0]"]'
    assert path_text(("",)) == '[""]'
    assert path_text(("0",)) == '["0"]', "a key of digits is not an index"
    assert path_text((0,)) == "[0]"
    assert path_text(('say "hi"',)) == '["say \\"hi\\""]'
    assert path_text(("\u0430",)) == '["\u0430"]', "a Cyrillic look-alike is quoted"
    assert path_text(("\ud800",)) == '["\\ud800"]', "a lone surrogate is spelled as an escape"


path_parts = st.text(alphabet='a0.[]" \\(', max_size=3) | st.integers(min_value=0, max_value=3)


@given(st.lists(path_parts, max_size=4), st.lists(path_parts, max_size=4))
@settings(max_examples=500)
def test_different_paths_read_differently(a: list[str | int], b: list[str | int]) -> None:
    if tuple(a) != tuple(b):
        assert path_text(tuple(a)) != path_text(tuple(b))
