"""Waiting that a shutdown interrupts, and the one backoff schedule every retry loop uses."""

from __future__ import annotations

import asyncio
import contextlib

FIRST_BACKOFF = 0.5  # seconds before the first retry
MAX_BACKOFF = 30.0  # the longest wait between retries


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less when `stop` is set meanwhile; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def next_backoff(current: float) -> float:
    return min(current * 2, MAX_BACKOFF)
