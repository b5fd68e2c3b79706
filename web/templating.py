"""The Jinja environment: autoescaped, with the display filters every template relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from web import display

_WEB = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """templates/ or static/: beside the package in a checkout, inside it in a wheel."""
    for candidate in (_WEB / name, _WEB.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ directory next to {_WEB}")


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
    )
    return env


def render(env: Environment, template: str, **context: Any) -> str:
    return env.get_template(template).render(**context)
