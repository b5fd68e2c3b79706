"""Talking to the broker the same way everywhere: named connections, reconnect with backoff,
and queues declared with our arguments or, when they exist with others, used as they are.

The recorder, the demo publisher and (as they land) the dead-letter consumer and the replay
worker all keep a session to the broker for as long as they run; each session is a coroutine
that returns or raises when the connection is lost, and `run_reconnecting` keeps starting it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq

from eventscope.backend.waiting import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    next_backoff,
    sleep_unless_stopped,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0


async def connect(url: str, name: str) -> aio_pika.abc.AbstractConnection:
    """A connection named `name` (shown by `rabbitmqctl list_connections` and the management
    UI, so an operator can tell eventscope's connections apart and close one)."""
    return await aio_pika.connect(
        url, client_properties={"connection_name": name}, timeout=CONNECT_TIMEOUT
    )


async def run_reconnecting(
    session: Callable[[], Awaitable[Any]],
    stop: asyncio.Event,
    *,
    on_lost: Callable[[BaseException, float], None],
    on_ended: Callable[[], None] = lambda: None,
    done: Callable[[], bool] = lambda: False,
) -> None:
    """Run `session()` again and again until `stop` (or `done()`): before each restart wait a
    backoff, 0.5 s doubling to 30 s, back to 0.5 s after a session that returned or lasted
    longer than the longest wait. `on_lost(error, wait)` and `on_ended()` (after every
    session, either way) let the caller keep its status."""
    loop = asyncio.get_running_loop()
    backoff = FIRST_BACKOFF
    while not stop.is_set() and not done():
        started = loop.time()
        try:
            await session()
            backoff = FIRST_BACKOFF
        except Exception as exc:
            if stop.is_set():
                return
            if loop.time() - started > MAX_BACKOFF:
                backoff = FIRST_BACKOFF
            on_lost(exc, backoff)
        finally:
            on_ended()
        if done():
            return
        await sleep_unless_stopped(stop, backoff)
        backoff = next_backoff(backoff)


async def declare_queue(
    channel: aio_pika.abc.AbstractChannel, name: str, arguments: dict[str, Any]
) -> tuple[aio_pika.abc.AbstractQueue, str | None]:
    """A durable queue with `arguments`; one that already exists with other arguments is used
    as it is (the broker refuses to change them), with a message saying so."""
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments), None
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        message = (
            f"queue {name!r} exists with other arguments ({exc}); using it as it is. "
            "Delete it to apply the configured ones."
        )
        log.warning(message)
        await channel.reopen()
        return await channel.declare_queue(name, passive=True), message
