"""One runtime: builds everything that runs in the background from settings, in one place.

`eventscope serve` (with the web layer on top), `eventscope ingest` and the benchmarks all use
it: the store, the change feed, the search indexer, the type catalog, the recorder, the demo
publisher — and, as they land, the dead-letter consumer, the replay worker and retention. A
new background task is added here once. `create_app` (web/app.py) only adds HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from eventscope.backend.aggregate_catalog import AggregateCatalog
from eventscope.backend.aggregate_folds import AggregateFolds, reducers_for
from eventscope.backend.changefeed import ChangeFeed
from eventscope.backend.correlation_catalog import CorrelationCatalog
from eventscope.backend.ingest.capture import DeadLetterCapture
from eventscope.backend.ingest.recorder import Recorder
from eventscope.backend.redaction import Redactor
from eventscope.backend.replay import Replayer
from eventscope.backend.replay_bulk import BulkReplays
from eventscope.backend.replay_targets import default_allowlist
from eventscope.backend.search_index import SearchIndexer
from eventscope.backend.settings import Settings
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.migrate import upgrade_async
from eventscope.backend.type_catalog import TypeCatalog
from eventscope.backend.waiting import sleep_unless_stopped

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
DEMO_WAIT = 30.0  # seconds the demo waits for the recorder's tap before it publishes anyway


def with_demo_exchanges(settings: Settings) -> Settings:
    """`--demo` records the demo's dead-letter exchange too, so its dead letters show up, holds
    its dead-letter queue, and allows replays to the demo's queues (where they died)."""
    from eventscope.backend.demo import DEMO_DLX_EXCHANGE, DemoTopology

    if not settings.demo:
        return settings
    exchanges = settings.exchanges
    if DEMO_DLX_EXCHANGE not in exchanges:
        exchanges = (*exchanges, DEMO_DLX_EXCHANGE)
    topology = DemoTopology()
    demo_queues = f"queue:{topology.prefix}.*"
    targets = settings.replay_targets or default_allowlist(settings.exchanges)
    if demo_queues not in targets:
        targets = (*targets, demo_queues)
    owned = settings.dead_letter_queues
    if topology.dead_letters not in owned:
        owned = (*owned, topology.dead_letters)
    return dataclasses.replace(
        settings, exchanges=exchanges, replay_targets=targets, dead_letter_queues=owned
    )


class Runtime:
    """What runs for one set of settings. Use `async with runtime.running(): ...`."""

    def __init__(
        self,
        settings: Settings,
        *,
        record: bool = True,
        demo: bool | None = None,
        migrate: bool = True,
        store: EventStore | None = None,
        connection_name: str = "eventscope-recorder",
    ) -> None:
        self.settings = settings
        self.migrate = migrate
        self.demo = settings.demo if demo is None else demo
        self.store = store or EventStore(settings.database_url)
        self.feed = ChangeFeed(self.store)
        self.indexer = SearchIndexer(
            self.store, Redactor(settings.redact_fields), busy=self._recording_backlog
        )
        self.catalog = TypeCatalog(self.store, busy=self._recording_backlog)
        # Reducers are loaded once, here: rules or modules that cannot work stop the start.
        self.aggregates = AggregateFolds(self.store, reducers_for(settings))
        self.aggregate_catalog = AggregateCatalog(self.store, busy=self._recording_backlog)
        self.correlation_catalog = CorrelationCatalog(self.store, busy=self._recording_backlog)
        self.recorder = (
            Recorder(
                settings, self.store, connection_name=connection_name, on_commit=self._committed
            )
            if record
            else None
        )
        # Owned dead-letter queues: one consumer each, committed like the tap (not benchmarked
        # with it: `record=False` runs none).
        self.captures = (
            [
                DeadLetterCapture(settings, self.store, queue, on_commit=self._committed)
                for queue in settings.dead_letter_queues
            ]
            if record
            else []
        )
        self.replayer = Replayer(self.store, settings)
        self.bulk = BulkReplays(self.store, self.replayer, settings)
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._extra: list[tuple[str, Callable[[asyncio.Event], Coroutine[Any, Any, Any]]]] = []

    def _recording_backlog(self) -> bool:
        """The recorder has more than a batch waiting: background work gives way."""
        if self.recorder is None:
            return False
        status = self.recorder.status
        return bool(status.tap_depth) or status.holding >= self.settings.batch_max_events

    def _committed(self) -> None:
        """The recorder committed rows: wake whoever follows the store."""
        self.feed.notify()
        self.indexer.notify()
        self.catalog.notify()
        self.aggregate_catalog.notify()
        self.correlation_catalog.notify()

    def add_task(self, name: str, run: Callable[[asyncio.Event], Coroutine[Any, Any, Any]]) -> None:
        """Another background task (e.g. the web layer's live hub), started with the rest."""
        self._extra.append((name, run))

    def _background(self) -> list[tuple[str, Callable[[asyncio.Event], Coroutine[Any, Any, Any]]]]:
        tasks: list[tuple[str, Callable[[asyncio.Event], Coroutine[Any, Any, Any]]]] = [
            ("change-feed", self.feed.run),
            ("search-indexer", self.indexer.run),
            ("type-catalog", self.catalog.run),
            ("aggregate-catalog", self.aggregate_catalog.run),
            ("correlation-catalog", self.correlation_catalog.run),
            ("replay-reconcile", self.replayer.run_reconcile),
            ("replay-outcomes", self.replayer.run_outcomes),
            ("replay-bulk", self.bulk.run),
        ]
        if self.recorder is not None:
            tasks.append(("recorder", self.recorder.run))
        tasks += [(f"dead-letters:{c.queue}", c.run) for c in self.captures]
        if self.demo:
            tasks.append(("demo", self._run_demo))
        return tasks + self._extra

    async def _run_demo(self, stop: asyncio.Event) -> None:
        """The demo publishes once the recorder's tap is bound (its first session is up):
        events published before would route nowhere, and the first order would lack its
        OrderCreated. Past DEMO_WAIT it starts anyway (a broker refusing the tap)."""
        from eventscope.backend.demo import run_demo_for

        deadline = asyncio.get_running_loop().time() + DEMO_WAIT
        while self.recorder is not None and not self.recorder.status.broker_connected:
            if stop.is_set() or asyncio.get_running_loop().time() > deadline:
                break
            await sleep_unless_stopped(stop, 0.05)
        if not stop.is_set():
            await run_demo_for(self.settings, stop)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        """Migrate, start every background task, and stop them all (then close the store)."""
        if self.migrate:
            await upgrade_async(self.settings.database_url)
        self.stop.clear()
        self._tasks = [
            asyncio.create_task(run(self.stop), name=f"eventscope-{name}")
            for name, run in self._background()
        ]
        try:
            yield self
        finally:
            self.stop.set()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=STOP_TIMEOUT)
            self.aggregates.close()
            await self.replayer.close()
            await self.store.close()

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (the CLI's `ingest` and `demo` commands)."""
        async with self.running():
            await stop.wait()
