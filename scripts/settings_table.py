"""Rewrite the README's settings table from the settings definition (`make docs`).

The table sits between `<!-- settings:start -->` and `<!-- settings:end -->`;
tests/unit/test_docs.py fails when it is not exactly what `markdown_table()` prints.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from eventscope.backend.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = re.compile(r"(<!-- settings:start -->\n).*?(<!-- settings:end -->)", re.S)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    if not SECTION.search(text):
        print("README.md has no settings markers", file=sys.stderr)
        return 1
    updated = SECTION.sub(lambda m: m.group(1) + markdown_table() + m.group(2), text)
    if updated != text:
        README.write_text(updated, encoding="utf-8")
        print("README.md: settings table updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
