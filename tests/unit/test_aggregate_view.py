"""Aggregates as the pages show them, without I/O: links in the path or the query form that
lead back to the same name, selecting a step, the catalog's counts and prefix ranges, states
made safe for JSON, masking, and the fold cache's byte bound."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscope.backend.aggregates.fold import fold
from eventscope.backend.aggregates.reducer_set import load_reducers
from eventscope.backend.aggregates.snapshots import FoldCache
from eventscope.backend.envelope import aggregate_key, id_text
from eventscope.backend.redaction import MASK, Redactor
from eventscope.backend.store.aggregates import AggregateRef, catalog_rows, prefix_bounds
from eventscope.web.aggregate_links import aggregate_url
from eventscope.web.aggregate_view import (
    Selection,
    SelectionError,
    api_diff,
    api_state,
    json_safe,
    page_view,
    selected_index,
)
from tests.unit.aggregate_rows import T0, recorded, seed_event

ORDER = load_reducers(None, [], demo=True, entry_points=False)
NAMES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)


def named(url: str) -> tuple[str | None, str, int | None, dict[str, list[str]]]:
    """(type, id, key, other parameters) a link leads to, read as the routes read it."""
    parts = urlsplit(url)
    params = parse_qs(parts.query, keep_blank_values=True)
    segments = parts.path.split("/")
    if segments[-1] == "view":
        kind = params.pop("type", [None])[0]
        ident = params.pop("id")[0]
        key = params.pop("key", [None])[0]
        return kind, ident, None if key is None else int(key), params
    assert "%2F" not in parts.path and len(segments) == 4, url
    return unquote(segments[2]), unquote(segments[3]), None, params


@given(kind=st.none() | NAMES, ident=NAMES, version=st.none() | st.integers(0, 10**6))
def test_every_link_leads_back_to_the_same_aggregate(
    kind: str | None, ident: str, version: int | None
) -> None:
    shown_kind, shown_id = id_text(kind), id_text(ident)
    assert shown_id is not None
    key = aggregate_key(kind, ident)
    url = aggregate_url(shown_kind, shown_id, key, version=version)
    if MASK in shown_id or (shown_kind is not None and MASK in shown_kind):
        assert url is None
        return
    assert url is not None and url.startswith("/aggregates/")
    got_kind, got_id, got_key, params = named(url)
    assert (got_kind, got_id) == (shown_kind, shown_id)
    assert AggregateRef.of(got_kind, got_id, got_key).key == key
    assert params == ({"version": [str(version)]} if version is not None else {})


@pytest.mark.parametrize(
    ("kind", "ident", "expected"),
    [
        ("Order", "order_1", "/aggregates/Order/order_1"),
        ("Order", "a/b", "/aggregates/view?type=Order&id=a%2Fb"),
        ("Order", "..", "/aggregates/view?type=Order&id=.."),
        ("view", "x", "/aggregates/view?type=view&id=x"),
        (None, "x", "/aggregates/view?id=x"),
        ("", "x", "/aggregates/view?type=&id=x"),
        ("Order", f"card {MASK}1111", None),
    ],
)
def test_plain_names_get_the_path_form_and_any_other_the_query_form(
    kind: str | None, ident: str, expected: str | None
) -> None:
    assert aggregate_url(kind, ident) == expected


def test_a_name_stored_altered_is_linked_with_its_key() -> None:
    key = aggregate_key("Order", "a\x00b")
    url = aggregate_url("Order", "a\u2400b", key, step=3)
    assert url == f"/aggregates/view?type=Order&id=a%E2%90%80b&key={key}&step=3"
    assert aggregate_url("Order", "order_1", object(), api=True) == "/api/aggregates/Order/order_1"  # type: ignore[arg-type]


def history() -> list[Any]:
    return [
        recorded(1, seed_event(1, "OrderCreated", {"total": 5})),
        recorded(2, seed_event(2, "OrderPaid", {})),
        recorded(3, seed_event(4, "OrderShipped", {})),
    ]


def test_a_step_is_selected_by_version_number_event_or_time() -> None:
    folded = fold(history(), ORDER)
    assert selected_index(folded, Selection()) == 2
    assert selected_index(folded, Selection(version=0)) == -1
    assert selected_index(folded, Selection(version=3)) == 1  # in the gap: the state at 3
    assert selected_index(folded, Selection(step=1)) == 0
    assert selected_index(folded, Selection(event=3)) == 2
    assert selected_index(folded, Selection(as_of=T0 - dt.timedelta(days=1))) == -1
    for wrong in (Selection(step=4), Selection(event=99)):
        with pytest.raises(SelectionError):
            selected_index(folded, wrong)
    unversioned = fold([recorded(1, {"eventType": "X", "data": {"a": 1}})], ORDER)
    with pytest.raises(SelectionError, match="step"):
        selected_index(unversioned, Selection(version=1))


def test_the_page_and_the_api_show_the_step_its_changes_and_its_neighbours() -> None:
    ref = AggregateRef.of("Order", "order_1")
    folded = fold(history(), ORDER)
    view = page_view(ref, folded, False, Selection(version=2), None)
    assert view["index"] == 1 and view["selected"]["version"] == 2
    assert [c["path_text"] for c in view["changes"].changes] == ["status", "paidAt"]
    assert view["links"]["prev"] == "/aggregates/Order/order_1?version=1"
    assert view["links"]["next"] == "/aggregates/Order/order_1?version=4"
    assert view["links"]["self"] == "/aggregates/Order/order_1?version=2"
    assert view["form"] == {"action": "/aggregates/Order/order_1", "hidden": []}
    assert [p["kind"] for p in view["problems"]] == ["gap"]
    state = api_state(ref, folded, False, Selection(version=2), None, limit=1)
    assert [s["step"] for s in state["steps"]] == [2] and state["steps_from"] == 2
    assert state["state"]["status"] == "paid"
    diff = api_diff(folded, Selection(version=1), Selection(version=4), None)
    assert {c["path_text"] for c in diff["changes"]} == {"status", "paidAt", "shippedAt"}


def test_viewers_get_states_diffs_and_texts_masked() -> None:
    ref = AggregateRef.of("Order", "order_1")
    rows = [
        recorded(1, seed_event(1, "OrderCreated", {"password": "hunter2", "note": "token=abc"})),
        recorded(2, seed_event(2, "OrderCreated", {"card": "4111111111111111"})),
    ]
    folded = fold(rows, ORDER)
    mask = Redactor()
    text = json.dumps(api_state(ref, folded, False, Selection(), mask))
    assert "hunter2" not in text and "4111111111111111" not in text and "abc" not in text
    view = page_view(ref, folded, False, Selection(), mask)
    assert "hunter2" not in str(view["state_tree"]) and view["redacted"]
    assert "4111111111111111" not in json.dumps(view["changes"].changes)


def test_states_are_made_readable_json_without_losing_order() -> None:
    odd = {"b": float("nan"), "\ud800": ["x\udfff", math.inf, -math.inf], "a": 1}
    safe = json_safe(odd)
    assert list(safe) == ["b", "\\ud800", "a"]
    assert safe == {"b": "NaN", "\\ud800": ["x\\udfff", "Infinity", "-Infinity"], "a": 1}
    json.dumps(safe, allow_nan=False).encode("utf-8")
    plain = {"a": [1, {"b": None}]}
    assert json_safe(plain) is plain


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=70))
def test_a_prefix_range_holds_exactly_the_ids_that_start_with_it(prefix: str) -> None:
    low, high = prefix_bounds(prefix)
    head = prefix[:64]
    inside = [head, head + "a", head + "\U0010ffff", head + "\x00"]
    for value in inside:
        key = value.encode()
        assert low.encode() <= key and (high is None or key < high.encode())
    if high is not None:
        assert not high.startswith(head)
        assert high.encode() > (head + "\U0010ffff" * 3).encode()


def test_catalog_counts_of_a_batch() -> None:
    def stored(n: int, ident: str, version: int | None, dead: str | None = None) -> dict[str, Any]:
        return {
            "id": n,
            "received_at": T0 + dt.timedelta(seconds=n),
            "aggregate_key": aggregate_key("Order", ident),
            "aggregate_type": "Order",
            "aggregate_id": ident,
            "aggregate_version": version,
            "event_type": f"E{n}",
            "dead_letter": dead,
        }

    rows = catalog_rows(
        [
            stored(1, "a", 1),
            stored(2, "a", 5, "x-death"),
            stored(3, "b", None),
            stored(4, "a", 2),
            {**stored(5, "c", 1), "aggregate_key": None},
        ]
    )
    by_id = {r["aggregate_id"]: r for r in rows}
    assert set(by_id) == {"a", "b"}
    a = by_id["a"]
    assert (a["events"], a["dead_letters"], a["max_version"]) == (3, 1, 2)
    assert (a["first_event_id"], a["last_event_id"], a["last_event_type"]) == (1, 4, "E4")
    assert a["first_seen"] == T0 + dt.timedelta(seconds=1)
    assert by_id["b"]["max_version"] is None and by_id["b"]["id_prefix"] == "b"


def test_the_fold_cache_is_bounded_by_body_bytes_too() -> None:
    big = "x" * 5000
    folds = [
        fold([recorded(1, seed_event(1, "OrderCreated", {"blob": big}))], ORDER) for _ in range(3)
    ]
    weight = len(folds[0].rows[0].body)
    cache = FoldCache(max_rows=100, max_bytes=2 * weight + 10)
    for n, folded in enumerate(folds):
        cache.put(n, folded)
    assert cache.get(0, ORDER) is None  # the least recently used went: bytes, not rows
    assert cache.get(1, ORDER) is folds[1] and cache.get(2, ORDER) is folds[2]
    cache.put(
        "huge",
        fold(
            [recorded(i, seed_event(i, "OrderCreated", {"blob": big})) for i in range(1, 4)], ORDER
        ),
    )
    assert cache.get("huge", ORDER) is None
    cache.clear()
    assert cache.rows == 0


def test_viewers_see_what_kind_a_reducer_error_was_not_its_message() -> None:
    """A Python reducer's message can quote any value of the event; viewers get its kind."""
    from eventscope.backend.aggregates.reducer_modules import ReducerRegistry
    from eventscope.backend.aggregates.reducer_set import combine
    from eventscope.backend.aggregates.reducers import FoldLimits

    registry = ReducerRegistry()
    registry.add("Order", "OrderCreated", lambda s, e: {"pin": int(e.data["pin"])})
    rows = [recorded(1, seed_event(1, "OrderCreated", {"pin": "hunter2"}))]
    folded = fold(rows, combine(None, registry.reducers, limits=FoldLimits()))
    ref = AggregateRef.of("Order", "order_1")
    operator = json.dumps(api_state(ref, folded, False, Selection(), None))
    assert "hunter2" in operator, "operators see the whole message"
    viewer = json.dumps(api_state(ref, folded, False, Selection(), Redactor()))
    assert "hunter2" not in viewer and "ValueError" in viewer
