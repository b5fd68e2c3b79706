"""Login attempts in the append-only audit log, without letting a flood fill it.

Failed and rate-limited attempts come from anyone, as fast as they can send them. The first one
per client in a window is written at once; the rest are counted in memory and written as one
entry, "N more failed attempts from X", once the window has closed — noticed at any later
attempt, before the audit log is read, and before that client's next successful login (so the
log reads in order). The table grows by at most two entries per client per window, whatever the
rate; the log stays append-only (nothing is ever updated). At most `max_clients` windows are
held; past that the oldest is written out early. Counts still open when the process stops are
lost: at most one window's worth per client.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Record = Callable[..., Awaitable[None]]  # AuditLog.record


@dataclass
class _Window:
    opened: float  # clock time
    first_at: dt.datetime
    last_at: dt.datetime
    more: Counter[str] = field(default_factory=Counter)  # result → attempts not yet written


class LoginAudit:
    """Writes login outcomes through `record`, summarising failures per client and window."""

    def __init__(
        self,
        record: Record,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.record = record
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._open: OrderedDict[str, _Window] = OrderedDict()  # oldest window first

    def __len__(self) -> int:
        """Windows held."""
        return len(self._open)

    @property
    def pending(self) -> int:
        """Attempts counted and not yet written."""
        return sum(sum(w.more.values()) for w in self._open.values())

    async def failed(
        self, *, client: str, actor: str, result: str, details: dict[str, Any] | None = None
    ) -> None:
        """A failed (`failed`) or refused (`rate-limited`) attempt from `client`."""
        now, at = self.clock(), dt.datetime.now(dt.UTC)
        due = self._closed(now)
        window = self._open.get(client)
        first = window is None
        if window is None:
            self._open[client] = _Window(now, at, at)
            while len(self._open) > self.max_clients:
                due.append(self._open.popitem(last=False))
        else:
            window.more[result] += 1
            window.last_at = at
        await self._write(due)
        if first:
            await self.record(
                actor=actor, action="login", result=result, client=client, details=details
            )

    async def succeeded(
        self, *, client: str, actor: str, role: str, details: dict[str, Any] | None = None
    ) -> None:
        """A successful login: that client's pending failures are written first."""
        due = self._closed(self.clock())
        window = self._open.pop(client, None)
        if window is not None:
            due.append((client, window))
        await self._write(due)
        await self.record(
            actor=actor, role=role, action="login", result="ok", client=client, details=details
        )

    async def flush(self) -> None:
        """Write the summaries of every window that has closed."""
        await self._write(self._closed(self.clock()))

    def _closed(self, now: float) -> list[tuple[str, _Window]]:
        due = []
        while self._open:
            window = next(iter(self._open.values()))
            if now - window.opened < self.window:
                break
            due.append(self._open.popitem(last=False))
        return due

    async def _write(self, due: list[tuple[str, _Window]]) -> None:
        for client, window in due:
            more = sum(window.more.values())
            if not more:
                continue
            await self.record(
                actor="anonymous",
                action="login",
                result="failed" if window.more["failed"] else "rate-limited",
                client=client,
                reason=f"{more} more failed attempts from {client}",
                details={
                    "more": more,
                    **dict(window.more),
                    "from": window.first_at.isoformat(timespec="seconds"),
                    "to": window.last_at.isoformat(timespec="seconds"),
                },
            )
