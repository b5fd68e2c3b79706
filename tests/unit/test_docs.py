"""The docs cannot drift from the code: the README's settings table is generated, and the
schema has one migration head."""

from __future__ import annotations

import re
from pathlib import Path

from alembic.script import ScriptDirectory

from eventscope.backend.settings import SETTINGS_FIELDS, env_name, markdown_table
from eventscope.backend.store.migrate import alembic_config
from eventscope.web.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_exactly_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert found, "README.md lost its settings markers"
    assert found.group(1) == markdown_table(), "README settings table is stale: run `make docs`"


def test_every_setting_is_a_documented_flag_on_serve() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    helps = {a.dest: a.help or "" for a in serve._actions}
    for f in SETTINGS_FIELDS:
        assert f.metadata["help"] in helps[f.name], f.name
        assert env_name(f.name) in helps[f.name], f.name


def test_the_schema_has_exactly_one_migration_head() -> None:
    """Two branches of work each adding a migration must be merged before they land."""
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"alembic heads: {heads}"
