"""The `eventscope` command: serve, ingest, demo, db upgrade.

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
    for sub in (serve, ingest, demo, upgrade):
        _add_setting_flags(sub)
    return parser


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


if __name__ == "__main__":
    main()
