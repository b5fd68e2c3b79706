"""The status never claims health while nothing is recorded (hardening item 1's status part)."""

from __future__ import annotations

import pytest

from eventscope.backend.ingest import status as status_module
from eventscope.backend.ingest.status import STALLED_AFTER, RecorderStatus


class Clock:
    """The one thing a test cannot make real: time passing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(status_module.time, "monotonic", fake)
    return fake


def connected() -> RecorderStatus:
    status = RecorderStatus()
    status.broker_connected = True
    return status


def test_connected_and_idle_is_healthy(clock: Clock) -> None:
    status = connected()
    clock.now += 3600
    status.note_idle()
    assert status.health().state == "ok"


def test_messages_waiting_without_commits_is_reported_as_stopped(clock: Clock) -> None:
    status = connected()
    status.tap_depth = 1200
    clock.now += STALLED_AFTER + 1
    health = status.health()
    assert health.state == "stopped"
    assert "1,200 messages wait" in (health.reason or "")


def test_held_deliveries_without_commits_is_stopped(clock: Clock) -> None:
    status = connected()
    status.holding = 5
    clock.now += STALLED_AFTER + 1
    assert status.health().state == "stopped"


def test_a_commit_is_progress(clock: Clock) -> None:
    status = connected()
    status.tap_depth = 10
    clock.now += STALLED_AFTER + 1
    status.record_commit(10, 0, 0)
    assert status.health().state == "ok"
    assert status.last_stored_at is not None


def test_broker_down_and_database_errors_are_stopped_with_their_reason() -> None:
    status = RecorderStatus(broker_error="ConnectionError: refused")
    assert status.health().state == "stopped"
    assert "refused" in (status.health().reason or "")
    status = connected()
    status.set_database_error("OSError: connection lost")
    assert status.health().state == "stopped"
    assert status.database_error_since is not None
    assert status.last_error == "database: OSError: connection lost"
    status.set_database_error(None)
    assert status.health().state == "warning", "the recent error is still shown"


def test_a_recent_error_is_a_warning_with_the_error() -> None:
    status = connected()
    status.note_error("message on 'k': properties could not be decoded")
    health = status.health()
    assert health.state == "warning"
    assert health.reason == "message on 'k': properties could not be decoded"
