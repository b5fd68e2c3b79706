"""display.segments: invisible and direction-changing characters are shown, never hidden."""

from __future__ import annotations

import datetime as dt

import pytest

from eventscope.web.display import (
    clock,
    hexdump,
    human_size,
    iso,
    safe_text,
    segments,
)


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\u202e", "U+202E"),  # right-to-left override
        ("\u202d", "U+202D"),  # left-to-right override
        ("\u2066", "U+2066"),  # left-to-right isolate
        ("\u200b", "U+200B"),  # zero-width space
        ("\u200d", "U+200D"),  # zero-width joiner
        ("\u200e", "U+200E"),  # left-to-right mark
        ("\u061c", "U+061C"),  # arabic letter mark
        ("\x00", "U+0000"),
        ("\x1b", "U+001B"),  # escape
        ("\x7f", "U+007F"),
        ("\x85", "U+0085"),  # next line (C1)
        ("\ufeff", "U+FEFF"),  # byte order mark
        ("\u00ad", "U+00AD"),  # soft hyphen
        ("\u2028", "U+2028"),  # line separator
        ("\u2060", "U+2060"),  # word joiner
    ],
)
def test_invisible_character_becomes_a_visible_special_segment(char: str, name: str) -> None:
    assert segments(f"order{char}created") == [("order", False), (name, True), ("created", False)]


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\U000e0041", "U+E0041"),  # tag latin capital A: invisible, used to smuggle text
        ("\u3164", "U+3164"),  # hangul filler: renders as blank space
        ("\u034f", "U+034F"),  # combining grapheme joiner
    ],
)
def test_other_invisible_characters_are_made_visible_too(char: str, name: str) -> None:
    assert segments(f"pay{char}ment") == [("pay", False), (name, True), ("ment", False)]


def test_rlo_spoofed_routing_key_is_unambiguous() -> None:
    value = "invoice.\u202eexe.pdf"
    parts = segments(value)
    assert ("U+202E", True) in parts
    assert all("\u202e" not in text for text, _ in parts)


@pytest.mark.parametrize("value", ["order.created", "🐇 emoji ✓ 漢字", "café", "x" * 1000])
def test_ordinary_text_and_emoji_stay_one_plain_segment(value: str) -> None:
    assert segments(value) == [(value, False)]


def test_emoji_with_variation_selector_and_zwj_family() -> None:
    # the ZWJ inside an emoji sequence is still shown: ambiguity beats prettiness here
    parts = segments("👨\u200d👩")
    assert parts == [("👨", False), ("U+200D", True), ("👩", False)]


def test_newlines_and_tabs_are_shown_in_single_line_values() -> None:
    assert segments("a\nb\tc") == [
        ("a", False),
        ("U+000A", True),
        ("b", False),
        ("U+0009", True),
        ("c", False),
    ]


def test_keep_layout_keeps_newlines_and_tabs_in_body_text() -> None:
    body = '{\n\t"id": "x"\n}'
    assert segments(body, keep_layout=True) == [(body, False)]


def test_keep_layout_still_shows_other_invisible_characters() -> None:
    assert segments("a\n\u202eb", keep_layout=True) == [
        ("a\n", False),
        ("U+202E", True),
        ("b", False),
    ]


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "\ud800\udc00"])
def test_lone_surrogates_do_not_raise_and_encode(value: str) -> None:
    parts = segments(value)
    for text, _ in parts:
        text.encode("utf-8")
    assert "".join(text for text, _ in parts).startswith(("\\ud8", "a\\udfff"))


def test_none_is_shown_as_a_dash() -> None:
    assert segments(None) == [("—", True)]


def test_non_string_values_are_shown_as_text() -> None:
    assert segments(42) == [("42", False)]


def test_only_invisible_characters() -> None:
    assert segments("\u200b\u200b") == [("U+200B", True), ("U+200B", True)]


def test_safe_text_escapes_lone_surrogates() -> None:
    assert safe_text("a\ud800b") == "a\\ud800b"
    safe_text("\udfff").encode("utf-8")


def test_human_size_units() -> None:
    assert human_size(None) == "—"
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(16 * 1024 * 1024) == "16.0 MiB"


def test_times_are_shown_in_utc_even_when_stored_naive() -> None:
    naive = dt.datetime(2025, 10, 22, 14, 30, 5, 123456)
    assert clock(naive) == "14:30:05.123"
    assert iso(naive) == "2025-10-22T14:30:05.123Z"
    aware = dt.datetime(2025, 10, 22, 16, 30, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert clock(aware) == "14:30:05.123"
    assert clock(None) == "—"
    assert iso(None) == "—"


def test_hexdump_shows_offsets_hex_and_printable_ascii() -> None:
    rows = hexdump(b"\x00\x01AB" + bytes(range(0x7E, 0x82)) + b"z" * 12)
    assert rows[0] == (
        "00000000",
        "00 01 41 42 7e 7f 80 81 7a 7a 7a 7a 7a 7a 7a 7a",
        "··AB~···zzzzzzzz",
    )
    assert rows[1] == ("00000010", "7a 7a 7a 7a", "zzzz")


def test_hexdump_is_capped() -> None:
    assert len(hexdump(b"x" * 1000, limit=64)) == 4
