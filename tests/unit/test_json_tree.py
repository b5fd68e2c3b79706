"""The foldable JSON of the detail and compare pages: it reads exactly as the pretty-printed JSON,
escapes everything, stays bounded on hostile documents, and starts folded when large."""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from eventscope.web.json_tree import LARGE_NODES, MAX_BADGES, MAX_FOLD_DEPTH, json_tree, pretty_tree

json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)
BADGE = re.compile(r'<span class="cc"[^>]*>[^<]*</span>')


def shown_text(markup: str) -> str:
    """What a reader selects and copies: the text without tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


@given(json_data)
def test_the_tree_reads_as_the_pretty_printed_json(data: Any) -> None:
    markup = str(json_tree(data))
    if BADGE.search(markup):  # invisible characters are shown as badges, not as themselves
        return
    expected = json.dumps(data, indent=2, ensure_ascii=False)
    expected = expected.encode("utf-8", "backslashreplace").decode("utf-8")
    assert shown_text(markup) == expected


def test_hostile_keys_and_values_are_text() -> None:
    data = {
        "<script>alert(1)</script>": '"><img src=x onerror=alert(1)>',
        "{{7*7}}": "<div hx-get='/api/events' hx-trigger='load'>",
    }
    markup = str(json_tree(data))
    assert "<script" not in markup and "<img" not in markup and "<div" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert "{{7*7}}" in markup
    assert shown_text(markup) == json.dumps(data, indent=2, ensure_ascii=False)


def test_direction_changes_are_visible_and_right_to_left_text_is_isolated() -> None:
    markup = str(json_tree({"k": "abc\u202edef", "he": "\u05e9\u05dc\u05d5\u05dd"}))
    assert "U+202E" in markup and "\u202e" not in markup
    assert '<bdi class="v">&#34;\u05e9\u05dc\u05d5\u05dd&#34;</bdi>' in markup


def test_badges_are_bounded_per_document() -> None:
    data = ["\u200b" * 3 for _ in range(2 * MAX_BADGES)]
    markup = str(json_tree(data))
    assert len(BADGE.findall(markup)) <= MAX_BADGES + 1  # + the note saying how many more
    assert "more invisible characters, shown as U+FFFD" in markup
    assert "\u200b" not in markup


def test_objects_and_arrays_fold_and_say_what_they_hold() -> None:
    markup = str(json_tree({"items": [1, 2, 3], "meta": {"a": 1}, "empty": {}}))
    assert markup.count('class="jf"') == 3
    assert (
        'data-n="3 items"' in markup and 'data-n="1 key"' in markup and 'data-n="3 keys"' in markup
    )
    assert "folded" not in markup, "a small document starts open"


def test_a_large_document_starts_folded_below_the_top_levels() -> None:
    data = {"items": [{"sku": f"s{i}", "tags": ["a"]} for i in range(LARGE_NODES)]}
    markup = str(json_tree(data))
    assert markup.startswith('<span class="jc"><button'), "the top stays open"
    assert '<span class="jc"><button class="jf"></button>[' in markup, "so does the array"
    assert markup.count('class="jc folded"') == 2 * LARGE_NODES


def test_deep_nesting_is_folded_only_to_a_bounded_depth() -> None:
    depth = 900
    data = json.loads("[" * depth + "]" * depth)
    markup = str(json_tree(data))
    assert markup.count('class="jf"') == MAX_FOLD_DEPTH
    assert shown_text(markup) == json.dumps(data, indent=2)


def test_a_256_kib_body_renders_quickly() -> None:
    data = {"items": [{"sku": f"sku_{i}", "qty": i, "tags": ["x", "y"]} for i in range(4000)]}
    assert len(json.dumps(data)) > 200_000
    started = time.perf_counter()
    json_tree(data)
    assert time.perf_counter() - started < 5.0  # ~0.1 s here; a generous bound, not a benchmark


def test_pretty_tree_reads_the_detail_pages_pretty_text() -> None:
    assert pretty_tree(None) is None
    assert pretty_tree("not json") is None
    pretty = json.dumps({"a": float("nan"), "s": "\ud800"}, indent=2, ensure_ascii=False)
    pretty = pretty.encode("utf-8", "backslashreplace").decode("utf-8")
    tree = pretty_tree(pretty)
    assert tree is not None
    assert shown_text(str(tree)) == pretty
