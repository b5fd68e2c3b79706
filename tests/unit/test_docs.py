"""The README documents every setting: its EVENTSCOPE_* variable and its CLI flag."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventscope.backend.settings import SETTINGS_FIELDS, env_name, flag_name

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def _mentions(text: str, word: str) -> bool:
    """`word` as a whole token: a mention of X_TYPE does not count for X."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_readme_mentions_every_setting_env_var(readme: str) -> None:
    missing = [env_name(f.name) for f in SETTINGS_FIELDS if not _mentions(readme, env_name(f.name))]
    assert missing == [], f"README.md does not document {', '.join(missing)}"


def test_readme_mentions_every_setting_cli_flag(readme: str) -> None:
    missing = [
        flag_name(f.name) for f in SETTINGS_FIELDS if not _mentions(readme, flag_name(f.name))
    ]
    assert missing == [], f"README.md does not document {', '.join(missing)}"
