"""Occurred-at times at the edges (hardening item 3): every year the calendar has, every UTC
offset, every epoch unit, and absurd values — parsed exactly or kept as they came."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventscope.backend.envelope import Delivery, parse_time, to_row
from eventscope.backend.fieldtable import decode_table

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def row_for(value: Any) -> dict[str, Any]:
    import json

    body = json.dumps({"id": "e", "timestamp": value}).encode()
    return to_row(Delivery("events", "k", False, {}, None, body, NOW), 1024)


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


@given(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)),
    offsets,
)
def test_iso_text_of_any_year_and_offset_is_exact_or_kept_as_text(
    local: dt.datetime, offset: dt.timezone
) -> None:
    aware = local.replace(tzinfo=offset)
    text = aware.isoformat()
    parsed = parse_time(text)
    try:
        expected = aware.astimezone(dt.UTC)
    except OverflowError:
        expected = None
    assert parsed == expected
    row = row_for(text)
    assert row["occurred_at"] == expected
    if expected is None:
        assert decode_table(row["originals"])["occurred_at"] == text, "the original text is kept"
    else:
        assert row["originals"] is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0001-01-01T00:00:00Z", dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
        ("0001-01-01T00:00:00-14:00", dt.datetime(1, 1, 1, 14, tzinfo=dt.UTC)),
        (
            "9999-12-31T23:59:59.999999Z",
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        ),
        ("9999-12-31T23:59:59+14:00", dt.datetime(9999, 12, 31, 9, 59, 59, tzinfo=dt.UTC)),
        (1_764_547_200, dt.datetime(2025, 12, 1, tzinfo=dt.UTC)),
        (1_764_547_200_123, dt.datetime(2025, 12, 1, 0, 0, 0, 123000, tzinfo=dt.UTC)),
        (1_764_547_200_123_456, dt.datetime(2025, 12, 1, 0, 0, 0, 123456, tzinfo=dt.UTC)),
        (1_764_547_200_123_456_789, dt.datetime(2025, 12, 1, 0, 0, 0, 123456, tzinfo=dt.UTC)),
        (0, EPOCH),
        (-86_400, dt.datetime(1969, 12, 31, tzinfo=dt.UTC)),
        (-62_135_596_800, dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
        (1.5, dt.datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=dt.UTC)),
    ],
    ids=repr,
)
def test_edge_values_parse_exactly(value: Any, expected: dt.datetime) -> None:
    assert parse_time(value) == expected
    assert row_for(value)["occurred_at"] == expected


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
        -(10**20),
        10**400,
        10**21,  # nanoseconds past year 9999
        1e308,
        -1e308,
        "yesterday",
    ],
    ids=repr,
)
def test_times_no_utc_datetime_can_hold_are_kept_as_they_came(value: Any) -> None:
    row = row_for(value)
    assert row["occurred_at"] is None
    assert decode_table(row["originals"])["occurred_at"] == value


def test_epoch_zero_is_a_time_not_a_missing_value() -> None:
    """`0` is falsy; it is still the value that was sent."""
    assert row_for(0)["occurred_at"] == EPOCH


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text()))
def test_parse_time_never_raises(value: Any) -> None:
    parsed = parse_time(value)
    assert parsed is None or (parsed.tzinfo is not None and 1 <= parsed.year <= 9999)
