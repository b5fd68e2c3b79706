"""The filter language: every parameter parsed, every bad value a FilterError naming it."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscope.backend.filters import (
    PARAMETERS,
    FilterError,
    lookup,
    multi,
    parse_filter,
    parse_when,
    plain_string,
)
from eventscope.backend.search_query import fts5_match, parse_search
from eventscope.backend.topic import TopicPattern

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def parse(**params: str | list[str]) -> object:
    return parse_filter({k: v if isinstance(v, list) else [v] for k, v in params.items()}, now=NOW)


def test_every_parameter_parses() -> None:
    f = parse_filter(
        {
            "routing_key": ["order.*", "payment.#"],
            "routing_key_exact": ["a.*"],
            "exchange": ["events"],
            "type": ["OrderCreated"],
            "correlation_id": ["req_1"],
            "causation_id": ["evt_1"],
            "aggregate_type": ["Order"],
            "aggregate_id": ["o1"],
            "source": ["order-service"],
            "trace_id": ["4bf92f3577b34da6a3ce929d0e0e4736"],
            "message_id": ["m1"],
            "header": ["x-tenant:acme", "x-url:http://a:b"],
            "field": ["data.orderId:order_42"],
            "dead_letter": ["true"],
            "since": ["15m"],
            "until": ["2026-12-01T11:59:00Z"],
            "q": ['payment "card declined" -test'],
        },
        now=NOW,
    )
    assert [p.text for p in f.routing_keys] == ["order.*", "payment.#"]
    assert f.routing_keys_exact == ("a.*",)
    assert f.value("type") == "OrderCreated" and f.value("source") == "order-service"
    assert f.headers == (("x-tenant", "acme"), ("x-url", "http://a:b")), "split at the first colon"
    assert f.fields == ((("data", "orderId"), "order_42"),)
    assert f.dead_letter is True
    assert f.since == NOW - dt.timedelta(minutes=15)
    assert f.until == dt.datetime(2026, 12, 1, 11, 59, tzinfo=dt.UTC)
    assert f.q is not None and [t.words for t in f.q.terms] == [
        ("payment",),
        ("card", "declined"),
        ("test",),
    ]
    assert f.indexed and not f.empty


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"routing_key": "a." * 200}, "routing_key"),
        ({"header": "no-colon"}, "header"),
        ({"header": ":value"}, "header"),
        ({"field": "data..x:1", "type": "T"}, "field"),
        ({"field": "data.x:1"}, "field"),  # no narrowing filter
        ({"dead_letter": "maybe"}, "dead_letter"),
        ({"since": "yesterday"}, "since"),
        ({"until": "99999-01-01"}, "until"),
        ({"since": "1h", "until": "2h"}, "since"),
        ({"q": "-only -exclusions"}, "q"),
        ({"q": "x" * 600}, "q"),
        ({"type": ["A", "B"]}, "type"),
        ({"typ": "OrderCreated"}, "typ"),
        ({"since": "999999999w"}, "since"),
    ],
)
def test_a_value_that_cannot_be_parsed_names_its_parameter(
    params: dict[str, str | list[str]], parameter: str
) -> None:
    with pytest.raises(FilterError) as error:
        parse(**params)
    assert error.value.parameter == parameter
    assert str(error.value).startswith(f"{parameter}: ")


def test_a_misspelt_parameter_suggests_the_right_one() -> None:
    with pytest.raises(FilterError, match="did you mean correlation_id"):
        parse(corelation_id="req_1")


def test_parameters_the_caller_handles_are_ignored_and_empty_values_mean_nothing() -> None:
    f = parse_filter({"limit": ["5"], "before": ["1-2"], "type": [""]}, ignore=("limit", "before"))
    assert f.empty


@pytest.mark.parametrize("value", ["%", "_", "a%b_c", "'; DROP TABLE events; --", "\\"])
def test_values_are_data_never_like_syntax(value: str) -> None:
    assert parse(correlation_id=value).value("correlation_id") == value


def test_chip_removal_keeps_the_other_values() -> None:
    f = parse(routing_key=["a.*", "b.#"], type="T")
    assert f.without("routing_key", "a.*") == [("routing_key", "b.#"), ("type", "T")]
    assert parse_filter(multi(f.without("type", "T")), now=NOW).value("type") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", NOW - dt.timedelta(seconds=30)),
        ("15m", NOW - dt.timedelta(minutes=15)),
        ("2h", NOW - dt.timedelta(hours=2)),
        ("7d", NOW - dt.timedelta(days=7)),
        ("2w", NOW - dt.timedelta(weeks=2)),
        ("2026-12-01T10:00:00", dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)),
        ("2026-12-01T12:00:00+02:00", dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)),
        ("2026-12-01", dt.datetime(2026, 12, 1, tzinfo=dt.UTC)),
        ("0001-01-01T00:00:00Z", dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_times_are_iso_or_an_age(value: str, expected: dt.datetime) -> None:
    assert parse_when("since", value, NOW) == expected


def test_search_syntax_words_phrases_exclusions_and_nothing_else() -> None:
    query = parse_search('Order.Created "payment  declined" -test -"dry run" OR (x)')
    assert [(t.words, t.exclude) for t in query.terms] == [
        (("order", "created"), False),
        (("payment", "declined"), False),
        (("test",), True),
        (("dry", "run"), True),
        (("or",), False),
        (("x",), False),
    ]
    assert fts5_match(query) == (
        '(("order created" AND "payment declined" AND "or" AND "x") NOT "test") NOT "dry run"'
    )


def test_an_unclosed_quote_runs_to_the_end() -> None:
    assert [t.words for t in parse_search('"card declined').terms] == [("card", "declined")]


@given(st.text(max_size=200))
def test_any_search_text_parses_or_is_refused_with_a_reason(text: str) -> None:
    try:
        query = parse_search(text)
    except ValueError as exc:
        assert str(exc)
        return
    match = fts5_match(query)
    assert match.count('"') % 2 == 0, "every term is a closed quoted string"


@given(
    st.dictionaries(
        st.sampled_from([*PARAMETERS, "limit", "bogus"]),
        st.lists(st.text(max_size=60), max_size=3),
        max_size=6,
    )
)
def test_any_parameters_parse_or_raise_a_filter_error(params: dict[str, list[str]]) -> None:
    try:
        parse_filter(params, now=NOW, ignore=("limit",))
    except FilterError as exc:
        assert exc.parameter in params


def test_lookup_and_plain_strings_follow_json() -> None:
    doc = {"data": {"items": [{"sku": "A"}], "total": 99.5, "paid": True, "none": None}}
    assert lookup(doc, ("data", "items", "0", "sku")) == (True, "A")
    assert lookup(doc, ("data", "missing")) == (False, None)
    assert lookup(doc, ("data", "items", "7")) == (False, None)
    assert [plain_string(lookup(doc, ("data", k))[1]) for k in ("total", "paid", "none")] == [
        "99.5",
        "true",
        "null",
    ]


def test_topic_matching_is_linear_even_for_many_hashes() -> None:
    pattern = TopicPattern.parse(".".join(["#"] * 60) + ".x")
    assert not pattern.matches(".".join(["a"] * 200))
    assert pattern.matches(".".join(["a"] * 200) + ".x")
