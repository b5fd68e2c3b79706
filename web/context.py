"""What the HTTP layer holds for one app: the runtime it serves, templates, credentials, the
live hub, the login limiter. Kept on `app.state.web`; handlers receive its parts through
dependency injection (web/dependencies.py), the middleware reads it from the app."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment

from eventscope.backend.redaction import Redactor
from eventscope.backend.runtime import Runtime
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.web.auth import Authenticator, Principal
from eventscope.web.live import LiveHub
from eventscope.web.login_attempts import LoginAttempts
from eventscope.web.login_audit import LoginAudit
from eventscope.web.ratelimit import SlidingWindow


@dataclass
class WebContext:
    runtime: Runtime
    env: Environment
    auth: Authenticator
    hub: LiveHub
    redactor: Redactor
    login_failures: SlidingWindow
    attempts: LoginAttempts = field(init=False)  # login outcomes: counted, audited

    def __post_init__(self) -> None:
        audit = LoginAudit(self.runtime.store.audit.record)
        self.attempts = LoginAttempts(self.login_failures, audit, self.settings.trusted_proxies)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def store(self) -> EventStore:
        return self.runtime.store

    def mask_for(self, principal: Principal) -> Redactor | None:
        """Viewers see secrets masked; operators see what was stored."""
        return None if principal.is_operator else self.redactor

    def _error_text(self, message: str | None) -> str | None:
        """An error message as everyone may see it: secrets and card numbers masked."""
        return self.redactor.text(message) if message else message

    async def status(self) -> dict[str, Any]:
        """The numbers behind the status bar and /api/status."""
        recorder = self.runtime.recorder
        rec = recorder.status if recorder else None
        settings = self.settings
        bound_hit = rec.tap_bound_hit_at if rec else None
        health = rec.health() if rec else None
        text = self._error_text  # errors can quote bus data (a routing key, a refused value)
        return {
            "health": health.state if health else "unknown",
            "health_reason": text(health.reason)
            if health
            else "recorder not running in this process",
            "last_error": text(rec.last_error) if rec else None,
            "last_error_at": _iso(rec.last_error_at) if rec else None,
            "last_stored_at": _iso(rec.last_stored_at) if rec else None,
            "broker_connected": bool(rec and rec.broker_connected),
            "broker_error": text(rec.broker_error)
            if rec
            else "recorder not running in this process",
            "database_reachable": await self.store.ping(),
            "database_error": text(rec.database_error) if rec else None,
            "database": self.store.dialect,
            "exchanges": dict(rec.exchanges) if rec else {},
            "tap_queue": settings.tap_queue,
            "tap_queue_depth": rec.tap_depth if rec else None,
            "tap_queue_bound": settings.tap_queue_max_length,
            "tap_queue_bound_hit_seconds_ago": round(time.time() - bound_hit)
            if bound_hit
            else None,
            "tap_queue_args_mismatch": rec.tap_queue_args_mismatch if rec else None,
            "events_recorded": self.hub.total,
            "ingest_rate": round(rec.rate(), 1) if rec else 0.0,
            "holding_uncommitted": rec.holding if rec else 0,
            "held": {  # bytes held uncommitted; at the bound the recorder takes nothing more
                "bytes": rec.held_bytes if rec else 0,
                "bound": rec.held_bound if rec else settings.max_held_bytes,
                "paused": bool(rec and rec.paused),
            },
            "duplicates_seen": rec.duplicates if rec else 0,
            "redeliveries_skipped": rec.skipped_redeliveries if rec else 0,
            "stored_reduced": rec.reduced if rec else 0,
            "undecodable": rec.undecodable if rec else 0,
            "excluded": rec.excluded if rec else 0,
            # Work kept behind ingest: how stale search and the type catalog are (None: not
            # started yet; 0: caught up).
            "search_behind_seconds": _seconds(self.runtime.indexer.behind),
            "types_behind_seconds": _seconds(self.runtime.catalog.behind),
            # Owned dead-letter queues: whether eventscope consumes each (a second process
            # waits: the queue is in exclusive use), what it took, its last error.
            "dead_letter_queues": {
                c.queue: {
                    "consuming": c.status.broker_connected,
                    "held": c.status.stored,
                    "depth": c.status.tap_depth,
                    "last_error": text(c.status.last_error),
                }
                for c in self.runtime.captures
            },
        }


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")
