"""Shapes of payloads (backend/shapes.py) and type samples (backend/payload_sample.py): what a
type's page row says about its fields, and that no payload can break or bloat it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope.backend import shapes
from eventscope.backend.payload_sample import MAX_STRING, bounded, sample
from eventscope.backend.shapes import (
    EMPTY,
    MAX_PATHS,
    ROOT,
    Change,
    child_path,
    covers,
    diff,
    from_data,
    infer,
    items_path,
    merge,
    of_body,
    parent_of,
    to_data,
)

ORDER = {
    "id": "evt_1",
    "type": "order.created",
    "data": {"orderId": "order_1", "total": 10, "items": [{"sku": "a", "qty": 1}]},
    "metadata": {"correlationId": "req_1"},
}

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
keys = st.one_of(
    any_text,
    st.sampled_from(["", ".", "[]", '["x"]', "$", "a.b", '"', "\\", "<b>", "\u202e", "9" * 30]),
    st.text(min_size=90, max_size=130),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | any_text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


def paths(value: Any) -> dict[str, list[str]]:
    return {p: sorted(t) for p, t in infer(value).paths.items()}


def test_paths_name_every_field_with_its_json_type() -> None:
    assert paths(ORDER) == {
        "$": ["object"],
        "id": ["string"],
        "type": ["string"],
        "data": ["object"],
        "data.orderId": ["string"],
        "data.total": ["integer"],
        "data.items": ["array"],
        "data.items[]": ["object"],
        "data.items[].sku": ["string"],
        "data.items[].qty": ["integer"],
        "metadata": ["object"],
        "metadata.correlationId": ["string"],
    }


def test_a_body_that_is_not_json_is_its_kind_at_the_root() -> None:
    assert of_body("text").paths == {ROOT: frozenset({"text"})}
    assert of_body("empty").paths == {ROOT: frozenset({"empty"})}
    assert of_body("json", [1, "x", None]).paths == {
        ROOT: frozenset({"array"}),
        "[]": frozenset({"integer", "string", "null"}),
    }


def test_keys_that_are_not_plain_words_are_quoted_with_invisible_characters_escaped() -> None:
    found = infer({"a.b": 1, "<script>": 2, "x\u202ey": 3, "$": 4, "n\x00l": 5, "grüße": 6})
    assert set(found.paths) == {
        ROOT,
        '["a.b"]',
        '["<script>"]',
        '["x\\u202ey"]',
        '["$"]',
        '["n\\u0000l"]',
        "grüße",
    }


def test_a_very_long_key_is_cut_and_never_inside_a_run_of_digits() -> None:
    card_key = "x" * 95 + "4111111111111111"
    found = infer({card_key: 1, "k" * 10_000: 2})
    written = sorted(p for p in found.paths if p != ROOT)
    assert written == ['["' + "k" * 100 + '…"]', '["' + "x" * 95 + '…"]']


def test_optional_fields_are_told_from_missing_ones() -> None:
    found = infer({"items": [{"sku": "a", "gift": True}, {"sku": "b"}]})
    assert found.optional == {"items[].gift"}


def test_the_first_event_is_the_baseline_and_changes_nothing() -> None:
    assert diff(EMPTY, infer(ORDER)) == []


def test_an_added_field_is_flagged_once_at_its_top() -> None:
    known = infer(ORDER)
    new = infer({**ORDER, "shipping": {"address": {"city": "Oslo"}}})
    assert diff(known, new) == [Change("shipping", "added", after=("object",))]
    assert diff(merge(known, new), new) == []


def test_a_removed_field_is_flagged_once_then_known_as_optional() -> None:
    known = infer(ORDER)
    gone = {k: v for k, v in ORDER.items() if k != "metadata"}
    assert diff(known, infer(gone)) == [Change("metadata", "removed", before=("object",))]
    merged = merge(known, infer(gone))
    assert "metadata" in merged.optional
    assert diff(merged, infer(gone)) == []


def test_an_empty_array_does_not_remove_the_fields_of_its_items() -> None:
    known = infer(ORDER)
    empty_items = {**ORDER, "data": {**ORDER["data"], "items": []}}
    assert diff(known, infer(empty_items)) == []


def test_a_field_missing_from_some_items_is_flagged_as_removed() -> None:
    known = infer(ORDER)
    some = {**ORDER, "data": {**ORDER["data"], "items": [{"sku": "a", "qty": 1}, {"sku": "b"}]}}
    assert diff(known, infer(some)) == [Change("data.items[].qty", "removed", before=("integer",))]


def test_a_new_type_at_a_path_is_a_change_but_integer_and_number_are_one() -> None:
    known = infer(ORDER)
    priced = {**ORDER, "data": {**ORDER["data"], "total": 10.5}}
    assert diff(known, infer(priced)) == []
    text_total = {**ORDER, "data": {**ORDER["data"], "total": "10"}}
    assert diff(known, infer(text_total)) == [
        Change("data.total", "type_changed", ("integer",), ("string",))
    ]


def test_a_field_retyped_from_object_to_text_is_one_change() -> None:
    known = infer(ORDER)
    flat = {**ORDER, "data": "gone"}
    assert diff(known, infer(flat)) == [Change("data", "type_changed", ("object",), ("string",))]


def test_a_json_type_that_turns_into_text_is_a_change_at_the_root() -> None:
    assert diff(infer(ORDER), of_body("text")) == [
        Change(ROOT, "type_changed", ("object",), ("text",))
    ]


def test_deep_nesting_is_cut_and_marked_truncated() -> None:
    value: Any = "leaf"
    for _ in range(10_000):
        value = {"a": value}
    found = infer(value)
    assert found.truncated
    assert len(found.paths) <= MAX_PATHS


def test_a_huge_array_and_a_wide_object_stay_within_the_bounds() -> None:
    wide = {f"k{i}": [{"n": i}] * 3 for i in range(5_000)}
    found = infer({"wide": wide, "long": list(range(1_000_000))})
    assert found.truncated
    assert len(found.paths) == MAX_PATHS


def test_a_truncated_shape_flags_no_additions_and_a_truncated_event_no_removals() -> None:
    wide = infer({f"k{i}": i for i in range(MAX_PATHS + 10)})
    assert wide.truncated
    assert not [c for c in diff(wide, infer({"new": 1})) if c.kind == "added"]
    assert "kept" not in wide.paths
    assert all(c.kind == "added" for c in diff(infer({"kept": 1}), wide))


def test_a_stored_shape_reads_back_the_same_and_garbage_reads_as_empty() -> None:
    found = infer({"items": [{"a": 1}, {"b": "x"}]})
    assert from_data(json.loads(json.dumps(to_data(found)))) == found
    for garbage in (None, [], {"paths": "x"}, {"paths": [1, {"path": 2}]}, "text"):
        assert from_data(garbage) == EMPTY


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_json_value_gives_a_bounded_well_formed_shape(value: Any) -> None:
    found = infer(value)
    assert ROOT in found.paths
    assert len(found.paths) <= MAX_PATHS
    assert found.optional <= set(found.paths)
    for path, types in found.paths.items():
        assert types and types <= set(shapes.JSON_TYPES)
        assert len(path) <= shapes.MAX_PATH_CHARS
        assert path.isprintable()
        if path != ROOT:
            parent = parent_of(path)
            assert parent is not None, path
            assert parent[0] in found.paths, path
    json.dumps(to_data(found), ensure_ascii=True, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(json_values, json_values)
def test_merge_is_commutative_and_idempotent(a: Any, b: Any) -> None:
    x, y = infer(a), infer(b)
    assert merge(x, y) == merge(y, x)
    assert merge(x, x) == x
    assert merge(x, EMPTY) == x == merge(EMPTY, x)


@settings(max_examples=100, deadline=None)
@given(json_values, json_values)
def test_a_shape_never_differs_from_itself_or_from_what_it_already_covers(a: Any, b: Any) -> None:
    x = infer(a)
    assert diff(x, x) == []
    merged = merge(x, infer(b))
    assert diff(merged, x) == []
    assert covers(merged, x)
    assert covers(merged, infer(b))


@given(st.lists(st.one_of(keys, st.none()), min_size=1, max_size=8))
def test_a_path_knows_its_parent_whatever_its_keys(steps: list[str | None]) -> None:
    path = ROOT
    for step in steps:
        longer = items_path(path) if step is None else child_path(path, step)
        assert parent_of(longer) == (path, step is not None)
        path = longer


def test_a_sample_keeps_the_structure_and_says_what_it_left_out() -> None:
    value = {"items": list(range(100)), "note": "x" * 1000, "deep": {"a": {"b": {"c": 1}}}}
    got = bounded(value)
    assert got["items"] == [0, 1, 2, "… 97 more items"]
    assert got["note"] == "x" * MAX_STRING + "…"
    assert got["deep"] == {"a": {"b": {"c": 1}}}


def test_a_sample_never_cuts_a_card_number_in_half() -> None:
    got = bounded({"note": "x" * 190 + " 4111 1111 1111 1111"})
    assert got["note"] == "x" * 190 + "…"


def test_a_text_sample_and_no_sample_for_binary() -> None:
    assert sample("text", None, b"hello") == {"kind": "text", "value": "hello"}
    assert sample("binary", None, b"\x00\xff") is None
    assert sample("empty", None, b"") is None


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_any_sample_is_strict_json_and_small(value: Any) -> None:
    found = sample("json", value, b"")
    assert found is not None
    text = json.dumps(found, ensure_ascii=True, allow_nan=False)
    assert len(text) < 200_000


def test_a_huge_document_makes_a_small_sample() -> None:
    huge = {f"k{i}": {"nested": ["x" * 500] * 50} for i in range(2000)}
    text = json.dumps(bounded(huge))
    assert len(text) < 100_000
