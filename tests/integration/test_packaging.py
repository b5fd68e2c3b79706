"""The distribution: one import package, `eventscope`, that serves the timeline when installed
from its wheel into a fresh virtualenv (no checkout on the path)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import AMQP_URL, Names, free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("eventscope-*.whl")
    return built


def test_wheel_holds_one_import_package_with_its_assets(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {n for n in top if not n.endswith(".dist-info")} == {"eventscope"}, top
    for needed in (
        "eventscope/__init__.py",
        "eventscope/web/app.py",
        "eventscope/backend/settings.py",
        "eventscope/backend/migrations/env.py",
        "eventscope/templates/base.html",
        "eventscope/static/app.css",
        "eventscope/static/vendor/htmx.min.js",
        "eventscope/testing/__init__.py",
        "eventscope/testing/plugin.py",
        "eventscope/examples/reducers/order.toml",
    ):
        assert needed in names, needed
    assert not [n for n in names if "__pycache__" in n or n.startswith("eventscope/tests")]


def test_wheel_registers_the_pytest_plugin(wheel: Path) -> None:
    """Installing eventscope gives every pytest run the `eventscope` fixture."""
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "[pytest11]\neventscope = eventscope.testing.plugin" in text, text


def test_the_test_client_needs_nothing_but_the_standard_library(
    wheel: Path, tmp_path: Path
) -> None:
    """A project's test environment may lack the server's dependencies: eventscope.testing
    imports (and its client works) with none of them installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    check = (
        "import sys, eventscope.testing as t; "
        "assert t.EventscopeClient and t.load_fixture; "
        "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in "
        "('litestar', 'sqlalchemy', 'httpx', 'aio_pika', 'pytest')))"
    )
    found = subprocess.run(
        [str(python), "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_regular_install_in_a_fresh_virtualenv_serves_the_timeline(
    wheel: Path, tmp_path: Path, names: Names
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Dependencies come from the test environment's site-packages, put on PYTHONPATH: .pth files
    # there are not processed, so the editable checkout of eventscope is not visible.
    work = tmp_path / "work"
    work.mkdir()
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "EVENTSCOPE_AMQP_URL": AMQP_URL,
        "EVENTSCOPE_EXCHANGES": names.exchange,
        "EVENTSCOPE_TAP_QUEUE": names.tap_queue,
        "EVENTSCOPE_PORT": str(port),
        "EVENTSCOPE_TOKEN": "wheel-token",
    }
    where = subprocess.run(
        [str(python), "-c", "import eventscope; print(eventscope.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), f"imported from {where}, not the installed wheel"
    demo_rules = subprocess.run(
        [
            str(python),
            "-c",
            "from eventscope.backend.aggregates.reducer_set import load_reducers; "
            "print(sorted(load_reducers(None, [], demo=True).reducers))",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "('Order', 'OrderPaid')" in demo_rules.stdout, demo_rules.stderr  # package data
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(venv / "bin" / "eventscope"), "serve"], cwd=work, env=env, stdout=out, stderr=out
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("eventscope serve did not answer:\n" + log.read_text())
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor()
        )
        with opener.open(base + "/login?token=wheel-token", timeout=5) as page:
            body = page.read().decode()
            assert page.status == 200
        assert "Live timeline" in body
        assert _get(base + "/static/app.css")[0] == 200
        assert _get(base + "/static/vendor/htmx.min.js")[0] == 200
        assert (work / "eventscope.db").exists(), "the default SQLite file is in the working dir"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        asyncio.run(_delete_topology(names))


async def _delete_topology(names: Names) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        await channel.queue_delete(names.tap_queue)
        await channel.exchange_delete(names.exchange)
    finally:
        await connection.close()
