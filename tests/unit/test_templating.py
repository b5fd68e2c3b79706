"""The Jinja environment escapes everything, in template strings and in the real templates."""

from __future__ import annotations

import datetime as dt

import pytest
from jinja2 import Environment
from markupsafe import escape

from eventscope.web.templating import create_environment

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    '<div hx-get="/api/events" hx-trigger="load">',
    "' onmouseover='alert(1)",
]


@pytest.fixture(scope="module")
def env() -> Environment:
    return create_environment()


def test_string_templates_are_autoescaped(env: Environment) -> None:
    assert env.from_string("{{ x }}").render(x="<script>") == "&lt;script&gt;"


@pytest.mark.parametrize("name", ["page.html", "_macros.html", "x.htm", "feed.xml", "other.txt"])
def test_autoescape_is_on_for_every_template_name(env: Environment, name: str) -> None:
    assert callable(env.autoescape)
    assert env.autoescape(name) is True


def test_template_syntax_in_data_is_not_evaluated(env: Environment) -> None:
    assert env.from_string("{{ x }}").render(x="{{7*7}} ${7*7}") == "{{7*7}} ${7*7}"


@pytest.mark.parametrize("value", HOSTILE)
def test_text_escapes_hostile_values(env: Environment, value: str) -> None:
    html = env.from_string("{{ text(v) }}").render(v=value)
    assert html.startswith('<bdi class="v">')
    assert html.endswith("</bdi>")
    inner = html.removeprefix('<bdi class="v">').removesuffix("</bdi>")
    assert not set(inner) & set("<>\"'"), inner
    assert inner == str(escape(value))


def test_text_renders_invisible_characters_as_visible_badges(env: Environment) -> None:
    html = env.from_string("{{ text(v) }}").render(v="a\u202eb")
    assert "\u202e" not in html
    assert '<span class="cc" title="invisible or control character">U+202E</span>' in html


def test_text_of_nothing_is_a_dash_and_layout_is_kept_only_when_asked(env: Environment) -> None:
    assert env.from_string("{{ text(v) }}").render(v=None) == '<span class="none">—</span>'
    kept = env.from_string("{{ text(v, true) }}").render(v="a\nb")
    assert kept == '<bdi class="v">a\nb</bdi>'
    flat = env.from_string("{{ text(v) }}").render(v="a\nb")
    assert "U+000A" in flat


def test_real_template_escapes_row_values(env: Environment) -> None:
    row = {
        "id": 1,
        "exchange": "<script>alert(1)</script>",
        "routing_key": '"><img src=x onerror=alert(1)>',
        "event_type": "{{7*7}}",
        "correlation_id": None,
        "aggregate_type": None,
        "aggregate_id": None,
        "aggregate_version": None,
        "occurred_at": None,
        "received_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        "body_size": 1,
        "dead_letter": None,
        "observation": 1,
        "redelivered": False,
        "body_kind": "json",
        "body_truncated": False,
    }
    html = env.get_template("_live_rows.html").render(rows=[row], skipped=0)
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "{{7*7}}" in html
