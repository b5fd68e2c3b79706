"""Every setting in one place: a frozen dataclass whose fields carry their own help text.

The CLI, the README table and a docs test all read `SETTINGS_FIELDS`, so a setting cannot exist
without being documented. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventscope.backend.aggregates.reducer_rules import load_rules as load_reducer_rules
from eventscope.backend.aggregates.reducers import ReducerConfigError
from eventscope.backend.extraction import load_rules
from eventscope.backend.replay_targets import Allowlist
from eventscope.backend.topic import TopicPattern

ENV_PREFIX = "EVENTSCOPE_"


def _setting(default: Any, help: str, *, secret: bool = False, shown: str | None = None) -> Any:
    """One setting: its default, help text (Markdown: `code` in backticks), whether it is a
    secret, and how the default reads in the docs when its value says nothing (e.g. none)."""
    return field(default=default, metadata={"help": help, "secret": secret, "shown": shown})


@dataclass(frozen=True)
class Settings:
    """Runtime configuration, built once from env and CLI flags and passed explicitly."""

    amqp_url: str = _setting(
        "amqp://guest:guest@localhost:5672/", "AMQP URL of the broker to observe.", secret=True
    )
    database_url: str = _setting(
        "sqlite+aiosqlite:///eventscope.db",
        "SQLAlchemy URL of the event store: a SQLite file in the working directory (WAL), or "
        "`postgresql+asyncpg://user@host/db`.",
        secret=True,
    )
    exchanges: tuple[str, ...] = _setting(
        ("events",),
        "Comma-separated exchanges to record. A missing one is declared durable/topic; "
        "fanout and headers exchanges get a catch-all binding.",
    )
    host: str = _setting("127.0.0.1", "Address the web UI binds to.")
    port: int = _setting(8000, "Port the web UI listens on.")
    token: str | None = _setting(
        None,
        "Access token (operator). When unset a random one is generated and a login URL printed.",
        secret=True,
        shown="generated",
    )
    no_auth: bool = _setting(
        False, "Disable authentication. Refused unless the host is a loopback address."
    )
    viewer_tokens: tuple[str, ...] = _setting(
        (),
        "Comma-separated viewer tokens: read everything, act on nothing.",
        secret=True,
        shown="none",
    )
    users_file: str | None = _setting(
        None,
        "File of `name:role:argon2-hash` lines (role `viewer` or `operator`) for name and "
        "password logins; make lines with `eventscope hash-password`.",
        shown="none",
    )
    read_only: bool = _setting(
        False, "Hide and refuse every action that publishes, discards or edits, for every role."
    )
    allowed_hosts: tuple[str, ...] = _setting(
        (),
        "Host names the UI answers to (others get 400). Empty: loopback names plus `--host`, "
        "or any host when bound to all interfaces.",
        shown="loopback + `--host`",
    )
    allowed_origins: tuple[str, ...] = _setting(
        (),
        "Extra origins (`scheme://host:port`) allowed to post and open the websocket, e.g. a "
        "proxy's public URL. The UI's own origin is always allowed.",
        shown="none",
    )
    secure_cookies: bool = _setting(
        False, "Mark the session cookie Secure (automatic when the request came over https)."
    )
    redact_fields: tuple[str, ...] = _setting(
        ("password", "secret", "token", "authorization"),
        "Field and header names (substring, case-insensitive) masked for viewers; card "
        "numbers are always masked for viewers.",
    )
    login_attempts_per_minute: int = _setting(
        10, "Failed logins allowed per client address per minute before 429."
    )
    trusted_proxies: tuple[str, ...] = _setting(
        (),
        "Comma-separated addresses or networks (CIDR) of reverse proxies whose "
        "`X-Forwarded-For` names the client; from anyone else the header is ignored.",
        shown="none",
    )
    tap_queue: str = _setting(
        "eventscope.tap", "Name of the durable queue the recorder binds to every exchange."
    )
    tap_queue_max_length: int = _setting(
        1_000_000,
        "Bound of the tap queue in messages; past it the oldest are dropped (`drop-head`), "
        "so a stopped recorder never blocks producers.",
    )
    tap_queue_type: str = _setting(
        "classic", "Tap queue type: `classic`, or `quorum` for clustered brokers."
    )
    prefetch: int = _setting(
        2000,
        "Deliveries the recorder holds unacknowledged; bounds memory during a database outage.",
    )
    max_held_bytes: int = _setting(
        256 * 1024 * 1024,
        "Most message bytes (body, headers, properties) the recorder holds uncommitted; at the "
        "bound it stops consuming until a commit frees room (with `--prefetch`, bounds memory "
        "during a database outage).",
    )
    batch_max_events: int = _setting(1000, "Most events stored in one transaction.")
    batch_max_bytes: int = _setting(8 * 1024 * 1024, "Most body bytes stored in one transaction.")
    batch_max_wait_ms: int = _setting(
        50, "Longest an event waits in a partial batch before it is committed (ms)."
    )
    max_body_bytes: int = _setting(
        16 * 1024 * 1024,
        "Bodies larger than this are stored truncated (flagged, original size kept).",
    )
    exclude_routing_keys: tuple[str, ...] = _setting(
        (),
        "Comma-separated routing-key patterns (AMQP topic: `*` one word, `#` any number) the "
        "recorder never stores, e.g. `heartbeat.#`; such deliveries are acked and counted in "
        "the status.",
        shown="none",
    )
    error_headers: tuple[str, ...] = _setting(
        ("x-exception-message", "x-error", "error"),
        "Comma-separated header names (case-insensitive) a dead letter's error text is read "
        "from, first found wins; native dead letters carry none of their own.",
    )
    dead_letter_queues: tuple[str, ...] = _setting(
        (),
        "Comma-separated dead-letter queues eventscope takes over: it consumes each as its only "
        "consumer, stores every dead letter (acked after the commit) and holds it until it is "
        "replayed or discarded. `--demo` adds the demo's `demo.dead-letters`.",
    )
    replay_targets: tuple[str, ...] = _setting(
        (),
        "Comma-separated targets a replay may go to: `exchange:<glob>` and `queue:<glob>` "
        "(`*` matches any characters). Empty: every recorded exchange except dead-letter ones "
        "(named with dlx, dlq or dead), and no queue. `--demo` adds `queue:demo.*`.",
    )
    replay_rate: float = _setting(
        100.0,
        "Bulk replays publish at most this many messages per second (0: no limit).",
    )
    replay_quiet_seconds: float = _setting(
        60.0,
        "A delivered replay counts as resolved once this many seconds passed without it "
        "coming back as a dead letter.",
    )
    extraction_rules: str | None = _setting(
        None,
        "TOML file saying where each event's id, type, correlation id, aggregate, source, trace "
        "and time are found (docs/configuration.md); unset: the documented defaults. After a "
        "change, `eventscope reindex` re-extracts the stored events.",
        shown="none",
    )
    reducers: str | None = _setting(
        None,
        "TOML file of reducer rules that rebuild aggregates' state (docs/reducers.md); unset: "
        "each event's `data` is deep-merged (with `--demo`: the seed's Order rules). Checked at "
        "start: an invalid rule stops it, naming the file, the rule and the reason.",
        shown="none",
    )
    reducer_modules: tuple[str, ...] = _setting(
        (),
        "Comma-separated Python modules (`pkg.mod`, or `pkg.mod:function`) whose `register` "
        "function adds reducers, called once at start (docs/reducers.md).",
        shown="none",
    )
    live_rows: int = _setting(200, "Rows the live timeline keeps in the page.")
    page_size: int = _setting(100, "Rows per page in the timeline and the API default limit.")
    max_wait_seconds: int = _setting(
        30,
        "Longest a `wait=` request (the long-poll of end-to-end tests, docs/testing.md) is held "
        "open, in seconds; a longer `wait` is cut to this, 0 answers at once.",
    )
    demo: bool = _setting(False, "`serve`: also run the demo publisher (the seed's order flow).")
    demo_rate: float = _setting(5.0, "Demo events published per second.")
    demo_failure_rate: float = _setting(
        0.1, "Share of demo events that fail and are dead-lettered."
    )
    log_level: str = _setting("info", "Log level: debug, info, warning, error.")

    @property
    def is_loopback(self) -> bool:
        """`--host` is `localhost` or a loopback address (127.0.0.0/8, ::1), parsed as one:
        a name that merely starts with `127.` (`127.attacker.example`) is not."""
        host = self.host.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host.lower() == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback

    @property
    def hosts(self) -> list[str]:
        """Host header values served: configured names, else loopback + --host, else anything;
        each bare and with --port (the header carries the port when it is not the default)."""
        if self.allowed_hosts:
            names = set(self.allowed_hosts)
        elif self.host in {"0.0.0.0", "::", ""}:  # noqa: S104 - comparing, not binding
            return ["*"]
        else:
            names = {"localhost", "127.0.0.1", "[::1]", self.host}
        names = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
        return sorted(names | {f"{n}:{self.port}" for n in names})

    def redacted(self) -> dict[str, Any]:
        """Settings safe to show or log: secrets replaced by a mark."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "••••" if f.metadata["secret"] and value else value
        return out


SETTINGS_FIELDS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Settings)


def shown_default(f: dataclasses.Field[Any]) -> str:
    """The default as the docs show it."""
    if f.metadata["shown"]:
        return str(f.metadata["shown"])
    value = f.default
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, tuple):
        value = ",".join(value)
    return f"`{value}`"


def markdown_table() -> str:
    """The README's settings table, generated: the docs cannot drift from the code."""
    lines = ["| Variable | Flag | Default | What it does |", "|---|---|---|---|"]
    for f in SETTINGS_FIELDS:
        lines.append(
            f"| `{env_name(f.name)}` | `{flag_name(f.name)}` | {shown_default(f)} "
            f"| {f.metadata['help']} |"
        )
    return "\n".join(lines) + "\n"


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """EVENTSCOPE_* variables that are no setting (a typo is otherwise silently ignored),
    each with the closest real name when there is one."""
    known = {env_name(f.name) for f in SETTINGS_FIELDS}
    found = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in known or name in NOT_SETTINGS:
            continue
        suffixes = sorted(k.removeprefix(ENV_PREFIX) for k in known)
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1)
        found.append(f"{name} (did you mean {ENV_PREFIX}{close[0]}?)" if close else name)
    return found


# EVENTSCOPE_* variables read by something other than the settings (tests, the test client).
NOT_SETTINGS = frozenset({"EVENTSCOPE_URL", "EVENTSCOPE_TEST_AMQP_URL", "EVENTSCOPE_TEST_PG"})


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_kind(f: dataclasses.Field[Any]) -> type:
    """The Python type a field parses to (str for optional strings)."""
    default = f.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, tuple):
        return tuple
    return str


def parse_value(f: dataclasses.Field[Any], raw: str) -> Any:
    """Parse one setting from its string form; raises ValueError with the setting's name."""
    kind = field_kind(f)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{env_name(f.name)}: {exc}") from None
    return raw


def load_settings(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build settings: defaults, then EVENTSCOPE_* variables, then explicit overrides (CLI)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in SETTINGS_FIELDS:
        raw = env.get(env_name(f.name))
        if raw is not None:
            values[f.name] = parse_value(f, raw)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Reject settings that cannot work, with a message naming the variable."""
    if not settings.exchanges:
        raise ValueError("EVENTSCOPE_EXCHANGES: at least one exchange is needed")
    if "" in settings.exchanges:
        raise ValueError("EVENTSCOPE_EXCHANGES: the default exchange cannot be bound")
    if settings.tap_queue_type not in {"classic", "quorum"}:
        raise ValueError("EVENTSCOPE_TAP_QUEUE_TYPE: must be classic or quorum")
    for name in (
        "prefetch",
        "batch_max_events",
        "batch_max_bytes",
        "live_rows",
        "page_size",
        "login_attempts_per_minute",
        "max_held_bytes",
    ):
        if getattr(settings, name) < 1:
            raise ValueError(f"{env_name(name)}: must be at least 1")
    if settings.replay_rate < 0:
        raise ValueError("EVENTSCOPE_REPLAY_RATE: must be 0 (no limit) or more")
    if settings.replay_quiet_seconds < 0:
        raise ValueError("EVENTSCOPE_REPLAY_QUIET_SECONDS: must be 0 or more")
    if settings.max_wait_seconds < 0:
        raise ValueError("EVENTSCOPE_MAX_WAIT_SECONDS: must be 0 or more")
    if settings.batch_max_wait_ms < 0 or settings.tap_queue_max_length < 1:
        raise ValueError("EVENTSCOPE_BATCH_MAX_WAIT_MS / TAP_QUEUE_MAX_LENGTH out of range")
    for pattern in settings.exclude_routing_keys:
        try:
            parsed = TopicPattern.parse(pattern)
        except ValueError as exc:
            raise ValueError(f"EVENTSCOPE_EXCLUDE_ROUTING_KEYS: {pattern[:60]!r}: {exc}") from None
        if parsed.parts and set(parsed.parts) == {"#"}:
            raise ValueError(
                f"EVENTSCOPE_EXCLUDE_ROUTING_KEYS: {pattern!r} would exclude every event"
            )
    for queue in settings.dead_letter_queues:
        if not queue or len(queue.encode("utf-8", "surrogatepass")) > 255:
            raise ValueError("EVENTSCOPE_DEAD_LETTER_QUEUES: a queue name has 1 to 255 bytes")
        if queue == settings.tap_queue:
            raise ValueError("EVENTSCOPE_DEAD_LETTER_QUEUES: the tap queue is eventscope's own")
    try:
        Allowlist(settings.replay_targets)
    except ValueError as exc:
        raise ValueError(f"EVENTSCOPE_REPLAY_TARGETS: {exc}") from None
    if settings.extraction_rules:
        try:
            load_rules(settings.extraction_rules)
        except ValueError as exc:
            raise ValueError(f"EVENTSCOPE_EXTRACTION_RULES: {exc}") from None
    if settings.reducers:
        try:
            load_reducer_rules(Path(settings.reducers))
        except ReducerConfigError as exc:
            raise ValueError(f"EVENTSCOPE_REDUCERS: {exc}") from None
    for entry in settings.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"EVENTSCOPE_TRUSTED_PROXIES: {entry[:60]!r} is not an address or a network "
                "(e.g. 10.0.0.7 or 10.0.0.0/8)"
            ) from None
    if settings.no_auth and not settings.is_loopback:
        raise ValueError(
            f"--no-auth is refused on {settings.host}: without authentication anyone who can "
            "reach this address could read every event. Bind to 127.0.0.1 or set "
            "EVENTSCOPE_TOKEN."
        )
