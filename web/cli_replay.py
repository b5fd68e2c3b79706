"""`eventscope replay`: a bulk replay from the command line, as the /dlq page starts one.

The selection is given like the page's (ids, a failure group, filter flags; `--events` for
any matching event rather than unresolved dead letters), previewed, confirmed (`--yes`, or a
yes on a terminal), then run in this process by the same worker `serve` runs, with a progress
bar on stderr. The audit log names the actor `cli:<os user>`. Ctrl-C cancels the batch after
the chunk in flight. Exit status 0 when every message was delivered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from eventscope.backend.settings import Settings

FLAGS_HELP = "queue:NAME, or exchange:NAME with --target-key (default: each message's own)"


def add_replay_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", type=int, action="append", default=[], metavar="N",
                        help="a stored message to replay (repeatable)")  # fmt: skip
    parser.add_argument("--group", metavar="FINGERPRINT", help="a failure group of /dlq")
    parser.add_argument(
        "--events", action="store_true", help="any matching event, not only dead letters"
    )
    parser.add_argument("--target", metavar="KIND:NAME", help=FLAGS_HELP)
    parser.add_argument(
        "--target-key", default="", metavar="KEY", help="the routing key of an exchange target"
    )
    parser.add_argument("--reason", required=True, help="why (ledger and audit log)")
    parser.add_argument("--yes", action="store_true", help="replay without asking")


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def cmd_replay(settings: Settings, args: argparse.Namespace, filter_pairs: list[Any]) -> None:
    if settings.read_only:
        raise SystemExit("eventscope: read-only (EVENTSCOPE_READ_ONLY): nothing is replayed")
    from eventscope.backend.filters import FilterError, multi, parse_filter
    from eventscope.backend.replay_bulk import Selection
    from eventscope.backend.replay_targets import target_from_json

    try:
        selection = Selection(
            ids=tuple(args.id),
            filter=parse_filter(multi(filter_pairs)),
            fingerprint=args.group,
            dead_letters=not args.events,
        )
        target = None
        if args.target:
            kind, _, name = args.target.partition(":")
            target = target_from_json({"kind": kind, "name": name, "routing_key": args.target_key})
    except (FilterError, ValueError) as exc:
        raise SystemExit(f"eventscope: {exc}") from None
    try:
        code = asyncio.run(_replay(settings, args, selection, target))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)


async def _replay(settings: Settings, args: argparse.Namespace, selection: Any, target: Any) -> int:
    from eventscope.backend.replay import Replayer, ReplayRefused
    from eventscope.backend.replay_bulk import BulkReplays
    from eventscope.backend.store.eventstore import EventStore
    from eventscope.backend.store.migrate import upgrade_async

    await upgrade_async(settings.database_url)
    store = EventStore(settings.database_url)
    replayer = Replayer(store, settings)
    bulk = BulkReplays(store, replayer, settings)
    out = sys.stderr
    try:
        preview = await bulk.preview(selection, target)
        more = "+" if preview.at_least else ""
        print(f"eventscope: {preview.count:,}{more} to replay: {selection.describe()}", file=out)
        for label, count, allowed in preview.targets:
            print(f"  {count:>8,}  {label}  {'allowed' if allowed else 'REFUSED'}", file=out)
        for why, count in preview.refusals:
            print(f"  {count:>8,}  not replayed: {why}", file=out)
        if preview.count == 0:
            return 0
        if not args.yes and not _confirmed(preview.count):
            print("eventscope: nothing replayed (pass --yes to replay without asking)", file=out)
            return 2
        try:
            batch_id = await bulk.start(
                selection, actor=actor(), role="operator", reason=args.reason, target=target
            )
        except ReplayRefused as exc:
            print(f"eventscope: {exc}", file=out)
            return 2
        return await _follow(store, bulk, batch_id)
    finally:
        await replayer.close()
        await store.close()


def _confirmed(count: int) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"Replay {count:,}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def _follow(store: Any, bulk: Any, batch_id: str) -> int:
    """Run the worker until the batch ends, drawing its progress; Ctrl-C cancels it."""
    stop = asyncio.Event()
    worker = asyncio.create_task(bulk.run(stop, only=batch_id))
    tty = sys.stderr.isatty()
    batch: dict[str, Any] = {}
    try:
        while True:
            await asyncio.sleep(0.2)
            batch = await store.replay_batches.get(batch_id) or batch
            line = _line(batch)
            if tty:
                print("\r" + line, end="", file=sys.stderr, flush=True)
            if batch.get("state") in ("finished", "cancelled", "failed"):
                break
    except (KeyboardInterrupt, asyncio.CancelledError):
        await bulk.cancel(batch_id, actor=actor(), role="operator")
        print("\neventscope: cancelling after the chunk in flight…", file=sys.stderr)
        batch = await _ended(store, batch_id)
    finally:
        stop.set()
        await worker
    if tty:
        print(file=sys.stderr)
    print(f"eventscope: {_line(batch)} (batch {batch_id})", file=sys.stderr)
    return 0 if batch.get("state") == "finished" and not batch.get("failed") else 1


async def _ended(store: Any, batch_id: str) -> dict[str, Any]:
    """The batch once the worker has ended it (polled: the worker writes it to the store)."""
    while True:
        batch: dict[str, Any] = await store.replay_batches.get(batch_id) or {}
        if batch.get("state") in ("cancelled", "finished", "failed"):
            return batch
        await asyncio.sleep(0.2)


def _line(batch: dict[str, Any]) -> str:
    total, done = int(batch.get("total") or 0), int(batch.get("done") or 0)
    share = min(done / total, 1.0) if total else 0.0
    bar = "#" * int(share * 30)
    return (
        f"[{bar:<30}] {done:,} / {total:,}: {int(batch.get('delivered') or 0):,} delivered, "
        f"{int(batch.get('failed') or 0):,} failed, {int(batch.get('skipped') or 0):,} skipped "
        f"· {batch.get('state', '…')}"
    )
