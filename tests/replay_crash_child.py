"""A process that replays one stored message and is killed (SIGKILL) at a chosen point:
`after-publish` (the publish is on the wire, its confirmation not yet handled) or
`after-confirm` (the broker confirmed, the ledger not yet told). Run by
tests/integration/test_replay_crash.py: `python -m tests.replay_crash_child POINT EVENT_ID`
with EVENTSCOPE_* settings in the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import aiormq

from eventscope.backend.replay import Replayer
from eventscope.backend.settings import load_settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.replays import ReplayLedger


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash_after_publish() -> None:
    """The publish frames are written; the process dies before it reads the confirmation."""
    original = aiormq.Channel.basic_publish

    async def publish(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["wait"] = True  # the frames are flushed to the socket before this returns
        task = asyncio.ensure_future(original(self, *args, **kwargs))
        await asyncio.sleep(0.05)
        die()
        return await task

    aiormq.Channel.basic_publish = publish  # type: ignore[method-assign]


def crash_after_confirm() -> None:
    """The broker confirmed; the process dies before the ledger records it."""

    async def finish(self: Any, *args: Any, **kwargs: Any) -> Any:
        die()

    ReplayLedger.finish = finish  # type: ignore[method-assign]


async def main(point: str, event_id: int) -> None:
    {"after-publish": crash_after_publish, "after-confirm": crash_after_confirm}[point]()
    settings = load_settings()
    store = EventStore(settings.database_url)
    replayer = Replayer(store, settings)
    await replayer.replay(event_id, actor="ann", role="operator", reason="crash test")
    print("not killed", file=sys.stderr)
    sys.exit(3)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
