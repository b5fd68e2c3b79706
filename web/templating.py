"""The Jinja environment: autoescaped, with the display filters every template relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

import eventscope
from eventscope.web import display
from eventscope.web.aggregate_links import aggregate_url

_PACKAGE = Path(eventscope.__file__).parent


def asset_dir(name: str) -> Path:
    """templates/ or static/, inside the package (a symlink in a checkout, a copy in a wheel)."""
    path = _PACKAGE / name
    if not path.is_dir():
        raise FileNotFoundError(f"cannot find {name}/ in the eventscope package at {_PACKAGE}")
    return path


def create_environment() -> Environment:
    """Autoescape is forced on for every template (a test pins this)."""
    env = Environment(
        loader=FileSystemLoader(asset_dir("templates")),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        segments=display.segments,
        visible=display.visible,
        human_size=display.human_size,
        clock=display.clock,
        iso=display.iso,
        hexdump=display.hexdump,
        cursor=display.cursor,
    )
    env.globals["text"] = display.bus_text
    env.globals["aggregate_url"] = aggregate_url  # links to an aggregate at a version
    return env


def render(env: Environment, template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)
