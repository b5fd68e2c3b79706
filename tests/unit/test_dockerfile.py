"""The image is built from a copy of the repo's parts: every directory the `eventscope` package
links to must be copied into the build stage, or the wheel silently lacks it (no Docker engine
here to find out by building)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_copies_every_part_of_the_package() -> None:
    linked = {
        entry.readlink().parts[-1]
        for entry in (ROOT / "eventscope").iterdir()
        if entry.is_symlink()
    }
    assert {"backend", "web", "templates", "static", "testing", "examples"} <= linked
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", (ROOT / "Dockerfile").read_text(), re.M))
    assert linked <= copied, f"Dockerfile does not COPY {sorted(linked - copied)}"
