"""Dead-letter queues eventscope owns (`EVENTSCOPE_DEAD_LETTER_QUEUES`): consumed like the tap
queue, by the same recorder — batches committed, then acked; the pending-listing ledger telling
a redelivery after a crash from a new dead letter — so a crash at any point loses nothing and
stores nothing twice. What differs from the tap:

- the queue is the operator's: it is looked up (passive declare), never declared or bound; a
  missing queue is reported and retried;
- it is consumed as its only consumer (`exclusive`): a second eventscope process is refused
  by the broker and retries, taking over when the first one goes — two never split a queue;
- every row is marked with the queue it was taken from (`captured_from`), and its fingerprint
  includes it, so the tap's copy of the same dead letter (when its dead-letter exchange is
  recorded too) is a copy, not a duplicate publish; /dlq shows the owned one;
- nothing is left out: routing-key exclusions apply to the tap only.

Once stored and acked, the dead letter is held by eventscope: it stays unresolved until it is
replayed or discarded (backend/replay.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq

from eventscope.backend.ingest.recorder import Recorder
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore

log = logging.getLogger(__name__)

MAX_HELD_BODY = 128 * 1024 * 1024  # RabbitMQ's default max_message_size


class MissingQueue(ConnectionError):
    """The owned queue does not exist (yet): reported, then retried with backoff."""


def owned_fingerprint(queue: str, fingerprint: bytes) -> bytes:
    """A dead letter taken from `queue`: its own identity, apart from its tap copy's."""
    h = hashlib.blake2b(digest_size=16)
    h.update(b"owned\x00")
    h.update(queue.encode("utf-8", "surrogatepass"))
    h.update(b"\x00\x01")
    h.update(fingerprint)
    return h.digest()


class DeadLetterCapture(Recorder):
    """Consumes one owned dead-letter queue into the store. Run with `run(stop)`."""

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        queue: str,
        *,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(
            settings, store, connection_name=f"eventscope-dead-letters {queue}"[:200],
            on_commit=on_commit,
        )  # fmt: skip
        self.queue = queue
        self._exclusive = True
        self._excluded = None  # a dead letter is never left out
        # Acked once stored, a dead letter exists nowhere else: keep its whole body (the
        # broker's own limit, 128 MiB by default), not EVENTSCOPE_MAX_BODY_BYTES' cut.
        self._max_body = max(settings.max_body_bytes, MAX_HELD_BODY)
        self._mark = self._owned

    def _owned(self, row: dict[str, Any]) -> None:
        row["captured_from"] = self.queue
        fingerprint = row.get("fingerprint")
        if isinstance(fingerprint, bytes):
            row["fingerprint"] = owned_fingerprint(self.queue, fingerprint)

    async def _source(
        self, connection: aio_pika.abc.AbstractConnection, channel: aio_pika.abc.AbstractChannel
    ) -> None:
        try:
            await channel.declare_queue(self.queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            self.status.note_error(f"dead-letter queue {self.queue!r} does not exist")
            raise MissingQueue(f"dead-letter queue {self.queue!r} does not exist") from None
        self.status.exchanges = {}

    def _started(self) -> None:
        log.info("holding the dead letters of queue %s", self.queue)
