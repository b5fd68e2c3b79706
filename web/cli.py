"""The `eventscope` command: serve, ingest, demo, db upgrade, export, reindex.

Every setting is a flag on every command and an EVENTSCOPE_* variable; flags win over the
environment. The flags are generated from backend.settings, so they cannot drift from the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from eventscope.backend.settings import (
    SETTINGS_FIELDS,
    Settings,
    env_name,
    field_kind,
    flag_name,
    load_settings,
    parse_value,
    unknown_variables,
)
from eventscope.web.cli_replay import add_replay_flags, cmd_replay

log = logging.getLogger("eventscope")


def _parser_for(f: dataclasses.Field[Any]) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            return parse_value(f, raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also an EVENTSCOPE_* variable)")
    for f in SETTINGS_FIELDS:
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        help_text = f"{f.metadata['help']} [{env_name(f.name)}; default: {default}]"
        if field_kind(f) is bool:
            group.add_argument(
                flag_name(f.name),
                dest=f.name,
                action="store_const",
                const=True,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                flag_name(f.name),
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                type=_parser_for(f),
                help=help_text,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventscope",
        description="Record every event on RabbitMQ exchanges, watch them live, trace and replay.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the web UI and the recorder in one process")
    ingest = commands.add_parser("ingest", help="run the recorder alone")
    demo = commands.add_parser("demo", help="publish the seed's order scenario, with failures")
    db = commands.add_parser("db", help="database schema commands")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="upgrade the schema to the latest version")
    hasher = commands.add_parser(
        "hash-password", help="print a users-file line for NAME (reads the password from stdin)"
    )
    hasher.add_argument("name", help="login name")
    hasher.add_argument("--role", choices=("viewer", "operator"), default="viewer")
    exporter = commands.add_parser(
        "export", help="write the events a filter selects as NDJSON or JSON (oldest first)"
    )
    _add_export_flags(exporter)
    reindexer = commands.add_parser(
        "reindex", help="re-extract stored events with the current extraction rules"
    )
    reindexer.add_argument("--batch-size", type=int, default=500, metavar="N")
    reindexer.add_argument(
        "--after", metavar="CURSOR", help="resume after this cursor (printed when interrupted)"
    )
    reindexer.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_setting_flags(reindexer)
    replayer = commands.add_parser(
        "replay", help="replay stored dead letters (or events) in bulk, with a progress bar"
    )
    add_replay_flags(replayer)
    _add_filter_flags(replayer)
    for sub in (serve, ingest, demo, upgrade, exporter, replayer):
        _add_setting_flags(sub)
    return parser


def _add_export_flags(parser: argparse.ArgumentParser) -> None:
    _add_filter_flags(parser)
    parser.add_argument("--after", metavar="CURSOR", help="only events newer than this cursor")
    parser.add_argument("--before", metavar="CURSOR", help="only events older than this cursor")
    parser.add_argument("--format", choices=("ndjson", "json"), default="ndjson")
    parser.add_argument(
        "--output", "-o", default="-", metavar="FILE", help="where to write (- for stdout)"
    )
    parser.add_argument(
        "--masked", action="store_true", help="mask secrets as viewers see them (no raw bytes)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_filter_flags(parser: argparse.ArgumentParser) -> None:
    from eventscope.backend.filters import PARAMETERS

    parser.add_argument(
        "--filter",
        default="",
        metavar="QUERY",
        help="filters as a query string, as in the page's URL: 'routing_key=order.*&type=X'",
    )
    group = parser.add_argument_group("filters (docs/api.md#filters; repeat the repeatable ones)")
    for name in PARAMETERS:
        group.add_argument(
            "--" + name.replace("_", "-"), dest=f"filter_{name}", action="append", default=[]
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {f.name: getattr(args, f.name, None) for f in SETTINGS_FIELDS}
    return load_settings(overrides=overrides)


def login_url(settings: Settings, token: str | None) -> str:
    host = "localhost" if settings.host in {"0.0.0.0", "::", ""} else settings.host  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{settings.port}"
    return f"{base}/login?token={token}" if token else base + "/"


def _run_until_signalled(main: Callable[[asyncio.Event], Awaitable[Any]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


def cmd_serve(settings: Settings) -> None:
    import uvicorn

    from eventscope.backend.runtime import Runtime, with_demo_exchanges
    from eventscope.web.access_log import log_config
    from eventscope.web.app import create_app
    from eventscope.web.auth import authenticator_for

    settings = with_demo_exchanges(settings)
    try:
        auth = authenticator_for(settings)
        runtime = Runtime(settings)
    except ValueError as exc:
        raise SystemExit(f"eventscope: {exc}") from None
    app = create_app(settings, runtime=runtime, auth=auth)
    print(
        f"eventscope: recording {', '.join(settings.exchanges)} into {runtime.store.name}",
        flush=True,
    )
    if auth.disabled:
        print("eventscope: authentication is OFF (--no-auth, loopback only)", flush=True)
    elif auth.generated:
        print("eventscope: no EVENTSCOPE_TOKEN set, generated one for this run.", flush=True)
    print(
        f"eventscope: open {login_url(settings, auth.token if auth.generated else None)}",
        flush=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config(settings.redact_fields),  # no login token in the access log
        ws="websockets-sansio",
        proxy_headers=False,
        server_header=False,
    )


def cmd_ingest(settings: Settings) -> None:
    from eventscope.backend.runtime import Runtime

    async def main(stop: asyncio.Event) -> None:
        await Runtime(settings, demo=False).run_until(stop)

    log.info("recording %s", ", ".join(settings.exchanges))
    _run_until_signalled(main)


def cmd_demo(settings: Settings) -> None:
    from eventscope.backend.demo import run_demo_for

    async def main(stop: asyncio.Event) -> None:
        await run_demo_for(settings, stop)

    _run_until_signalled(main)


def cmd_db_upgrade(settings: Settings) -> None:
    from eventscope.backend.store.migrate import upgrade

    upgrade(settings.database_url)
    print("eventscope: schema is up to date", flush=True)


def cmd_hash_password(name: str, role: str) -> None:
    import getpass

    from eventscope.backend.users import hash_password

    if ":" in name or not name.strip():
        raise SystemExit("eventscope: a name cannot be empty or contain ':'")
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise SystemExit("eventscope: the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise SystemExit("eventscope: use at least 8 characters")
    print(f"{name}:{role}:{hash_password(password)}")


class ExportProgress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, a line per 10,000
    events otherwise. The total comes from a capped count (`≥ N` when capped, none for
    header/field filters)."""

    def __init__(self, total: int, capped: bool, stream: Any | None) -> None:
        self.total, self.capped, self.stream = total, capped, stream  # None: count only
        self.done = 0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._shown = 0.0

    def line(self) -> str:
        if self.total < 0:
            return f"{self.done:,} events"
        if self.capped:
            return f"{self.done:,} of ≥ {self.total:,} events"
        share = min(self.done / self.total, 1.0) if self.total else 1.0
        bar = "#" * int(share * 30)
        return f"[{bar:<30}] {self.done:,} / {self.total:,} events"

    def __call__(self, n: int) -> None:
        import time

        before, self.done = self.done, self.done + n
        if self.stream is None:
            return
        if self.tty and time.monotonic() - self._shown > 0.1:
            self._shown = time.monotonic()
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif not self.tty and before // 10_000 != self.done // 10_000:
            self.stream.write(self.line() + "\n")

    def finish(self) -> None:
        if self.stream is None:
            return
        self.stream.write(("\r" if self.tty else "") + self.line() + "\n")
        self.stream.flush()


def _export_filter_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    from eventscope.backend.filters import PARAMETERS

    pairs = parse_qsl(args.filter.lstrip("?"), keep_blank_values=True)
    for name in PARAMETERS:
        pairs += [(name, value) for value in getattr(args, f"filter_{name}")]
    return pairs


def cmd_export(settings: Settings, args: argparse.Namespace) -> None:
    """`eventscope export`: the same export as the page's Export link, from the database."""
    from eventscope.backend.export import Span, export_stream
    from eventscope.backend.filters import FilterError, multi, parse_filter
    from eventscope.backend.redaction import Redactor
    from eventscope.backend.store.eventstore import EventStore
    from eventscope.backend.store.paging import Cursor
    from eventscope.backend.store.sqlite_writer import sqlite_path

    try:
        event_filter = parse_filter(multi(_export_filter_pairs(args)))
        span = Span(
            after=Cursor.parse(args.after) if args.after else None,
            before=Cursor.parse(args.before) if args.before else None,
        )
    except (FilterError, ValueError) as exc:
        raise SystemExit(f"eventscope: {exc}") from None
    mask = Redactor(settings.redact_fields) if args.masked else None
    target = None if args.output == "-" else args.output
    database = sqlite_path(settings.database_url)
    if database is not None and not os.path.exists(database):
        raise SystemExit(f"eventscope: no database at {database}")

    async def run() -> int:
        store = EventStore(settings.database_url)
        try:
            total, capped = await store.search.count(event_filter)
            progress = ExportProgress(total, capped, None if args.quiet else sys.stderr)
            out = sys.stdout.buffer if target is None else open(target + ".part", "wb")  # noqa: SIM115, ASYNC230
            try:
                async for chunk in export_stream(
                    store,
                    event_filter,
                    args.format,
                    span=span,
                    mask=mask,
                    progress=progress,
                ):
                    out.write(chunk)
                out.flush()
            finally:
                if target is not None:
                    out.close()
            if target is not None:
                os.replace(target + ".part", target)
            progress.finish()
            return progress.done
        finally:
            await store.close()

    try:
        count = asyncio.run(run())
    except Exception as exc:  # a database that is missing, not migrated or unreachable
        raise SystemExit(f"eventscope: export failed: {type(exc).__name__}: {exc}") from None
    if not args.quiet:
        where = target or "stdout"
        print(f"eventscope: exported {count:,} events to {where}", file=sys.stderr)


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> None:
    """`eventscope reindex`: re-extract stored events after a rule change (backend/reindex.py),
    with a progress bar on stderr; on an interrupt or error, says where to resume."""
    from eventscope.backend.extraction import extractor_for
    from eventscope.backend.redaction import Redactor
    from eventscope.backend.reindex import Progress, progress_line, reindex
    from eventscope.backend.store.eventstore import EventStore
    from eventscope.backend.store.migrate import upgrade_async
    from eventscope.backend.store.paging import ORIGIN, Cursor
    from eventscope.backend.store.sqlite_writer import sqlite_path

    try:
        start = Cursor.parse(args.after) if args.after else ORIGIN
    except ValueError as exc:
        raise SystemExit(f"eventscope: --after: {exc}") from None
    if args.batch_size < 1:
        raise SystemExit("eventscope: --batch-size must be at least 1")
    database = sqlite_path(settings.database_url)
    if database is not None and not os.path.exists(database):
        raise SystemExit(f"eventscope: no database at {database}")
    tty = sys.stderr.isatty()
    last = [Progress(0, position=start)]

    def show(p: Progress) -> None:
        shown_tenth = last[0].done * 10 // max(last[0].total, 1)
        last[0] = p
        if args.quiet:
            return
        if tty:
            print("\r" + progress_line(p), end="", file=sys.stderr, flush=True)
        elif p.done * 10 // max(p.total, 1) != shown_tenth or not p.done:
            print(progress_line(p), file=sys.stderr, flush=True)

    result: list[Progress] = []

    async def main(stop: asyncio.Event) -> None:
        await upgrade_async(settings.database_url)
        store = EventStore(settings.database_url)
        try:
            done = await reindex(
                store,
                extractor_for(settings.extraction_rules),
                mask=Redactor(settings.redact_fields),
                batch=args.batch_size,
                start=start,
                progress=show,
                stop=stop.is_set,
            )
            result.append(done)
            if done.updated:  # the catalogs counted the old values: count again
                await store.types.reset()
                await store.aggregates.reset()
                await store.correlations.reset()
        finally:
            await store.close()

    try:
        _run_until_signalled(main)
    except Exception as exc:  # the database went away: what is done stays done
        if tty and not args.quiet:
            print(file=sys.stderr)
        raise SystemExit(
            f"eventscope: reindex stopped ({type(exc).__name__}: {exc}); continue with "
            f"`eventscope reindex --after {last[0].position}`"
        ) from None
    if tty and not args.quiet:
        print(file=sys.stderr)
    done = result[0]
    print(
        f"eventscope: re-extracted {done.done:,} of {done.total:,} events: {done.updated:,} "
        f"updated, {done.kept + done.refused:,} left as they were",
        file=sys.stderr,
    )
    if done.updated:
        print(
            "eventscope: the type and aggregate catalogs (/types, /aggregates) are counted "
            "again from the start; restart `eventscope serve` so cached aggregate states are "
            "folded again",
            file=sys.stderr,
        )
    if not done.finished:
        raise SystemExit(
            f"eventscope: interrupted; continue with `eventscope reindex --after {done.position}`"
        )


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "hash-password":
        cmd_hash_password(args.name, args.role)
        return
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"eventscope: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for unknown in unknown_variables(os.environ):
        log.warning("%s is not an eventscope setting; it is ignored", unknown)
    if args.command == "serve":
        cmd_serve(settings)
    elif args.command == "ingest":
        cmd_ingest(settings)
    elif args.command == "demo":
        cmd_demo(settings)
    elif args.command == "db":
        cmd_db_upgrade(settings)
    elif args.command == "export":
        cmd_export(settings, args)
    elif args.command == "reindex":
        cmd_reindex(settings, args)
    elif args.command == "replay":
        cmd_replay(settings, args, _export_filter_pairs(args))


if __name__ == "__main__":
    main()
