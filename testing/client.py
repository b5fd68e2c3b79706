"""A client of eventscope's test API, for end-to-end tests: "did my click emit these events?"

Every question is a long-poll (`wait`, `min_count`, `after` on `/api/events`): the answer comes
as soon as the events are there, so a passing test waits no longer than the system takes, and a
failing one says what did arrive. Everything a client looks at comes after its `start` cursor —
the position of the store when the client was made (in the pytest plugin: when the test began)
— unless a call passes `after`; `mark()` moves it. Standard library only, so importing it (and
loading the pytest plugin) costs nothing.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eventscope.testing.fixtures import Fixture, differences, load_fixture, parse_fixture
from eventscope.testing.report import event_table, filter_text, sequence_table

DEFAULT_TIMEOUT = 10.0  # seconds a wait_for/assert_* waits unless told otherwise
MAX_LIMIT = 1000  # the API's largest page
MAX_WAIT_PARAMETER = 3600.0  # the largest `wait` the API takes
NETWORK_SLACK = 10.0  # seconds an HTTP request may take beyond the wait it asks for

Event = dict[str, Any]  # an event summary as /api/events returns it


class EventscopeError(RuntimeError):
    """eventscope could not be asked: not reachable, refused the token, or answered an error."""


class EventsMissing(AssertionError):
    """The events a test waited for did not all arrive in time."""


class EventscopeClient:
    """`EventscopeClient("http://127.0.0.1:8000", token)`; checks the token at once."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        start: str | None = None,
    ) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"eventscope's URL must be http:// or https://, not {url[:60]!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._opener = _opener_for(self.url)
        self.start = start if start is not None else self.cursor()

    def __repr__(self) -> str:
        return f"EventscopeClient({self.url!r}, start={self.start!r})"

    # -- the HTTP API --------------------------------------------------------------------------

    def get(self, path: str, params: Sequence[tuple[str, Any]] = (), *, wait: float = 0.0) -> Any:
        """GET an API path, the JSON answer (raises EventscopeError on anything else)."""
        return json.loads(self.get_bytes(path, params, wait=wait))

    def get_bytes(
        self, path: str, params: Sequence[tuple[str, Any]] = (), *, wait: float = 0.0
    ) -> bytes:
        query = urllib.parse.urlencode([(k, str(v)) for k, v in params if v is not None])
        target = f"{self.url}{path}" + (f"?{query}" if query else "")
        # http(s) only: the URL's scheme was checked when the client was made.
        request = urllib.request.Request(target, headers={"Accept": "application/json"})  # noqa: S310
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=wait + NETWORK_SLACK) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            detail = _detail(exc.read())
            if exc.code in (401, 429):
                raise EventscopeError(
                    f"eventscope at {self.url} refused the token ({exc.code}: {detail}); "
                    "set EVENTSCOPE_TOKEN or --eventscope-token"
                ) from None
            raise EventscopeError(f"GET {path}: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EventscopeError(
                f"eventscope is not reachable at {self.url} ({reason}); is `eventscope serve` "
                "running? (set EVENTSCOPE_URL or --eventscope-url)"
            ) from None

    def cursor(self) -> str:
        """Where the store ends now: events recorded later come after it."""
        return str(self.get("/api/cursor")["cursor"])

    def mark(self) -> str:
        """Move `start` to now (e.g. before a second click) and return it."""
        self.start = self.cursor()
        return self.start

    def event(self, event_id: int) -> Event:
        """One event with headers, properties and body (`body_json`, `body_text`, ...)."""
        return dict(self.get(f"/api/events/{int(event_id)}"))

    def poll(
        self,
        filters: Mapping[str, Any],
        *,
        min_count: int = 1,
        timeout: float | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[Event], bool]:
        """(events, timed_out): matching events after `after` (default `start`), oldest first,
        as soon as `min_count` are there or when `timeout` seconds have passed. A wait longer
        than the server allows (EVENTSCOPE_MAX_WAIT_SECONDS) is asked again until it ends."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, budget)
        size = limit or min(MAX_LIMIT, max(100, min_count))
        params = [
            *_filter_pairs(filters),
            ("after", self.start if after is None else after),
            ("min_count", min_count),
            ("limit", size),
        ]
        while True:
            left = max(0.0, deadline - time.monotonic())
            asked = round(min(left, MAX_WAIT_PARAMETER), 3)
            answer = self.get("/api/events", [*params, ("wait", asked)], wait=asked)
            items = list(answer["items"])
            if not answer["timed_out"] or time.monotonic() >= deadline:
                return items, bool(answer["timed_out"])

    # -- what tests call -------------------------------------------------------------------------

    def wait_for(
        self,
        correlation_id: str | None = None,
        routing_key: str | Sequence[str] | None = None,
        *,
        min_count: int = 1,
        timeout: float | None = None,
        after: str | None = None,
        **filters: Any,
    ) -> list[Event]:
        """The matching events (at least `min_count`, oldest first) once they are there; any
        parameter of the filter language may be given (`type=`, `aggregate_id=`, `header=`, ...).
        Raises EventsMissing, showing what did arrive, when they are not there in time."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        wanted = _with(filters, correlation_id=correlation_id, routing_key=routing_key)
        budget = self.timeout if timeout is None else timeout
        events, timed_out = self.poll(wanted, min_count=min_count, timeout=budget, after=after)
        if timed_out:
            raise EventsMissing(
                f"eventscope: waited {budget:g} s for {min_count} event(s) matching "
                f"{filter_text(wanted)}; {len(events)} arrived"
                + (":\n" + event_table(events) if events else ".")
                + self._context(wanted, after)
            )
        return events

    def assert_sequence(
        self,
        correlation_id: str,
        expected: Sequence[str],
        *,
        timeout: float | None = None,
        quiet: float = 0.0,
        after: str | None = None,
        **filters: Any,
    ) -> list[Event]:
        """The correlation's events are exactly `expected`, in order: each item names an event
        by routing key or by type (`order.created` or `OrderCreated`). Waits up to `timeout`
        for them; with `quiet`, also that nothing more follows for that many seconds."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        wanted = _with(filters, correlation_id=correlation_id)
        budget = self.timeout if timeout is None else timeout
        events, _ = self.poll(wanted, min_count=max(1, len(expected)), timeout=budget, after=after)
        if not _same_sequence(expected, events):
            raise AssertionError(
                f"eventscope: correlation {correlation_id!r} did not follow the expected "
                f"sequence ({len(expected)} expected, {len(events)} arrived, waited up to "
                f"{budget:g} s):\n" + sequence_table(expected, events)
            )
        if quiet > 0 and events:
            more, _ = self.poll(wanted, timeout=quiet, after=events[-1]["cursor"])
            if more:
                raise AssertionError(
                    f"eventscope: correlation {correlation_id!r} followed the expected "
                    f"sequence, then more arrived within {quiet:g} s:\n" + event_table(more)
                )
        return events

    def assert_no_event(
        self,
        correlation_id: str | None = None,
        routing_key: str | Sequence[str] | None = None,
        *,
        quiet: float = 2.0,
        after: str | None = None,
        **filters: Any,
    ) -> None:
        """Nothing matching arrives after `after` (default `start`) within `quiet` seconds; an
        event already there fails at once."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        wanted = _with(filters, correlation_id=correlation_id, routing_key=routing_key)
        events, _ = self.poll(wanted, timeout=quiet, after=after)
        if events:
            raise AssertionError(
                f"eventscope: expected no event matching {filter_text(wanted)}, "
                f"{len(events)} arrived:\n" + event_table(events)
            )

    # -- fixtures ----------------------------------------------------------------------------------

    def fixture_bytes(self, correlation_id: str) -> bytes:
        """The correlation as a fixture file, exactly as eventscope serves it."""
        return self.get_bytes("/api/fixture", [("correlation_id", correlation_id)])

    def fixture(self, correlation_id: str) -> Fixture:
        return parse_fixture(self.fixture_bytes(correlation_id), source=correlation_id)

    def export_fixture(self, correlation_id: str, path: str | Path) -> Path:
        """Download the correlation as a fixture file (to keep next to the test)."""
        target = Path(path)
        target.write_bytes(self.fixture_bytes(correlation_id))
        return target

    def assert_matches_fixture(
        self,
        correlation_id: str,
        fixture: Fixture | str | Path,
        *,
        ignore: Iterable[str] = (),
        timeout: float | None = None,
    ) -> Fixture:
        """The correlation has the fixture's events in the same causal order, with equal
        bodies except ids, correlation ids, timestamps and the `ignore` paths (`data.total`,
        `items.*.price`). Waits up to `timeout` for as many events as the fixture has."""
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        expected = fixture if isinstance(fixture, Fixture) else load_fixture(fixture)
        if expected.truncated:
            raise ValueError(f"{expected.source}: the fixture was cut at its bound")
        self.poll(
            {"correlation_id": correlation_id},
            min_count=max(1, len(expected.events)),
            timeout=timeout,
            after="0-0",
        )
        actual = self.fixture(correlation_id)
        found = differences(expected, actual, ignore)
        if found:
            name = expected.source or expected.correlation_id
            raise AssertionError(
                f"eventscope: correlation {correlation_id!r} does not match the fixture "
                f"{name} ({len(expected.events)} events expected, {len(actual.events)} "
                "arrived):\n" + "\n".join(f"  {line}" for line in found)
            )
        return actual

    def _context(self, wanted: Mapping[str, Any], after: str | None) -> str:
        """For a failure: what else the correlation did, if the filter had one."""
        correlation = wanted.get("correlation_id")
        if correlation is None or set(wanted) == {"correlation_id"}:
            return ""
        events, _ = self.poll({"correlation_id": correlation}, timeout=0, after=after)
        if not events:
            return f"\nno event at all arrived for correlation {correlation!r}."
        return f"\nall events of correlation {correlation!r}:\n" + event_table(events)


def _with(filters: Mapping[str, Any], **named: Any) -> dict[str, Any]:
    return {**{k: v for k, v in named.items() if v is not None}, **filters}


def _filter_pairs(filters: Mapping[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for name, value in filters.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(name, "true" if v is True else "false" if v is False else v) for v in values]
    return pairs


def _same_sequence(expected: Sequence[str], events: Sequence[Event]) -> bool:
    return len(expected) == len(events) and all(
        name in (event.get("routing_key"), event.get("event_type"))
        for name, event in zip(expected, events, strict=True)
    )


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body).get("detail"))[:300]
    except (ValueError, AttributeError):
        return body[:300].decode("utf-8", "replace")


def _opener_for(url: str) -> urllib.request.OpenerDirector:
    """No proxy for a loopback eventscope (an HTTP_PROXY meant for the outside would break
    local tests); the environment's settings otherwise."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()
