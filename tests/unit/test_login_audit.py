"""LoginAudit on its own: what reaches the append-only log for floods from many clients, and
that the memory it holds is bounded. The recorder is a list; the clock is a fake one."""

from __future__ import annotations

from typing import Any

from eventscope.web.login_audit import LoginAudit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def audit(max_clients: int = 10_000) -> tuple[LoginAudit, list[dict[str, Any]], Clock]:
    written: list[dict[str, Any]] = []

    async def record(**entry: Any) -> None:
        written.append(entry)

    clock = Clock()
    return LoginAudit(record, max_clients=max_clients, clock=clock), written, clock


async def test_each_client_writes_at_most_two_entries_per_window() -> None:
    log, written, clock = audit()
    for n in range(3000):
        await log.failed(client=f"10.0.0.{n % 3}", actor="x", result="failed")
    assert len(written) == 3
    clock.now = 61
    await log.flush()
    summaries = [e for e in written if e["actor"] == "anonymous"]
    assert sorted(e["reason"] for e in summaries) == [
        f"999 more failed attempts from 10.0.0.{n}" for n in range(3)
    ]
    assert log.pending == 0


async def test_windows_held_are_bounded_and_the_oldest_is_written_out_early() -> None:
    log, written, _ = audit(max_clients=100)
    for _ in range(2):
        for n in range(1000):
            await log.failed(client=f"c{n}", actor="x", result="failed")
    assert len(log) <= 100
    assert log.pending <= 100
    counted = sum(e["details"]["more"] for e in written if e["actor"] == "anonymous")
    firsts = [e for e in written if e["actor"] == "x"]
    assert counted + len(firsts) + log.pending == 2000  # nothing lost, nothing twice
