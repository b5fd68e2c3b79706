"""`eventscope export` in a subprocess, on both databases: the filters as flags or as a query
string, a file or stdout, a progress line on stderr, and errors that say what is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eventscope.backend.export_read import read_export, read_records
from eventscope.backend.store.eventstore import EventStore
from tests.integration.test_export import seed


def run_export(database_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSCOPE_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "eventscope.web.cli",
            "export",
            "--database-url",
            database_url,
            *args,
        ],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


async def _store_orders(database_url: str) -> None:
    store = EventStore(database_url)
    try:
        await store.write(
            [seed(n, ("order.created", "order.paid", "payment.failed")[n % 3]) for n in range(30)]
        )
    finally:
        await store.close()


async def test_export_writes_the_filtered_events_to_a_file_with_progress(
    database_url: str, tmp_path: Path
) -> None:
    await _store_orders(database_url)
    out = tmp_path / "orders.json"
    done = run_export(database_url, "--routing-key", "order.*", "--format", "json", "-o", str(out))
    assert done.returncode == 0, done.stderr.decode()
    got = json.loads(out.read_bytes())
    assert [r["body"]["n"] for r in got] == [n for n in range(30) if n % 3 != 2]
    assert not (tmp_path / "orders.json.part").exists()
    stderr = done.stderr.decode()
    assert "20 / 20 events" in stderr
    assert f"exported 20 events to {out}" in stderr


async def test_export_takes_a_query_string_and_writes_to_stdout(database_url: str) -> None:
    await _store_orders(database_url)
    done = run_export(database_url, "--filter", "routing_key=order.*&type=OrderCreated", "-o", "-")
    assert done.returncode == 0, done.stderr.decode()
    messages = list(read_export(done.stdout))
    assert len(messages) == 20 and all(m.routing_key.startswith("order.") for m in messages)
    both = run_export(database_url, "--filter", "routing_key=order.paid", "--type", "Nothing")
    assert both.returncode == 0 and both.stdout == b""  # flags and query string combine (AND)


async def test_masked_exports_mask_secrets(database_url: str) -> None:
    store = EventStore(database_url)
    try:
        await store.write([seed(1, password="hunter2")])
    finally:
        await store.close()
    done = run_export(database_url, "--masked", "--quiet")
    assert done.returncode == 0 and done.stderr == b""
    (item,) = read_records(done.stdout)
    assert item["masked"] is True and "hunter2" not in done.stdout.decode()


def test_bad_filters_and_missing_databases_are_errors_that_say_so(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/missing.db"
    missing = run_export(url)
    assert missing.returncode != 0
    assert b"no database at" in missing.stderr
    assert not (tmp_path / "missing.db").exists()
    typo = run_export(url, "--filter", "routng_key=a")
    assert typo.returncode != 0
    assert b"routng_key: not a filter (did you mean routing_key?)" in typo.stderr
