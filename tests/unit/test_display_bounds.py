"""bus_text stays in proportion to its input: a value full of invisible characters gets at most
MAX_BADGES badges, the rest shown as U+FFFD and counted — never hidden, never 70 bytes of HTML
per byte."""

from __future__ import annotations

import time

from eventscope.web.display import MAX_BADGES, bus_text, safe_text, segments


def test_past_the_badge_limit_invisible_characters_are_shown_as_replacement_characters() -> None:
    parts = segments("a\x01" * (MAX_BADGES + 500), keep_layout=True)
    badges = [text for text, special in parts if special]
    assert len(badges) == MAX_BADGES + 1
    assert badges[-1] == "500 more invisible characters, shown as U+FFFD"
    assert parts[-1] == ("\ufffd" + "a\ufffd" * 499, False)
    assert "".join(text for text, special in parts if not special).count("a") == MAX_BADGES + 500


def test_the_markup_of_a_body_of_control_characters_is_bounded() -> None:
    body = "\x01\u202e" * (128 * 1024)
    start = time.perf_counter()
    html = bus_text(body, keep_layout=True)
    assert time.perf_counter() - start < 2.0  # generous: it took over half a second before
    assert len(html) < 2 * 3 * len(body)  # was 70 bytes per character
    assert "\u202e" not in html


def test_layout_survives_past_the_badge_limit() -> None:
    parts = segments("\x01" * (MAX_BADGES + 1) + "line\n\tnext", keep_layout=True)
    assert parts[-1] == ("\ufffdline\n\tnext", False)


def test_safe_text_leaves_encodable_text_alone_and_escapes_lone_surrogates() -> None:
    text = "für alle"
    assert safe_text(text) is text
    assert safe_text("a\ud800b\udfff") == "a\\ud800b\\udfff"
