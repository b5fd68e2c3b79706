"""Databases for the benchmarks that keep their stores (`query.py`, `aggregates.py`): created
through psql on the local server, kept for `--reuse`, dropped otherwise."""

from __future__ import annotations

import subprocess

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def psql(sql: str) -> None:
    subprocess.run(["psql", PG_ADMIN, "-qc", sql], check=True)


def ensure_database(name: str) -> None:
    """Create `name` unless it exists (a store kept by `--reuse`)."""
    exists = subprocess.run(
        ["psql", PG_ADMIN, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not exists:
        psql(f"CREATE DATABASE {name}")
