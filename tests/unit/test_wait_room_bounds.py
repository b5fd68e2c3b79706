"""The long-poll's waiting room is bounded: past its bounds a request is refused at once (the
HTTP layer answers 503 with Retry-After) instead of every commit checking unboundedly many
filters on the event loop."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from eventscope.backend import event_wait
from eventscope.backend.event_wait import TooManyWaiters, WaitRoom
from eventscope.backend.filters import parse_filter


def test_waiters_past_the_bounds_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_wait, "MAX_SCANNING_WAITERS", 3)
    monkeypatch.setattr(event_wait, "MAX_WAITERS", 5)
    room = WaitRoom(feed=None)  # type: ignore[arg-type]  # the feed is only used by run()
    scanning = parse_filter({"routing_key": ["order.*"]})
    with contextlib.ExitStack() as held:
        for _ in range(3):
            held.enter_context(room.waiting(scanning))
        with pytest.raises(TooManyWaiters), room.waiting(scanning):
            pass
        by_correlation: Any = [parse_filter({"correlation_id": [f"req_{n}"]}) for n in range(3)]
        held.enter_context(room.waiting(by_correlation[0]))
        held.enter_context(room.waiting(by_correlation[1]))  # indexed by id: still room
        with pytest.raises(TooManyWaiters), room.waiting(by_correlation[2]):
            pass
        assert len(room) == 5
    assert len(room) == 0, "leaving frees the room"
    with room.waiting(scanning):
        assert len(room) == 1
