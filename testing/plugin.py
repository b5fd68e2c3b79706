"""The pytest plugin (entry point `pytest11`): an `eventscope` fixture for end-to-end tests.

    def test_checkout(page, eventscope):
        page.get_by_role("button", name="Pay").click()
        eventscope.assert_sequence(order_id, ["order.created", "payment.succeeded"])

The fixture is an EventscopeClient made when the test starts, so it sees only events recorded
after that. Configure with `--eventscope-url` (or `EVENTSCOPE_URL`), `--eventscope-token` (or
`EVENTSCOPE_TOKEN`) and `--eventscope-timeout` (default 10 s). Without a URL, a test that asks
for the fixture fails saying so; tests that don't use it are not affected.
"""

from __future__ import annotations

import os

import pytest

from eventscope.testing.client import DEFAULT_TIMEOUT, EventscopeClient, EventscopeError


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eventscope", "eventscope: assert on recorded events")
    group.addoption(
        "--eventscope-url",
        default=None,
        help="eventscope's URL, e.g. http://127.0.0.1:8000 (default: $EVENTSCOPE_URL)",
    )
    group.addoption(
        "--eventscope-token",
        default=None,
        help="an eventscope token (default: $EVENTSCOPE_TOKEN)",
    )
    group.addoption(
        "--eventscope-timeout",
        type=float,
        default=None,
        help=f"seconds the eventscope fixture waits for events (default {DEFAULT_TIMEOUT:g})",
    )


def _setting(config: pytest.Config, option: str, variable: str) -> str | None:
    value = config.getoption(option)
    return str(value) if value else os.environ.get(variable) or None


def pytest_report_header(config: pytest.Config) -> str | None:
    url = _setting(config, "eventscope_url", "EVENTSCOPE_URL")
    return f"eventscope: {url}" if url else None


@pytest.fixture
def eventscope(pytestconfig: pytest.Config) -> EventscopeClient:
    """A client of eventscope's test API that sees the events recorded after the test began."""
    url = _setting(pytestconfig, "eventscope_url", "EVENTSCOPE_URL")
    if url is None:
        pytest.fail(
            "the eventscope fixture needs eventscope's URL: --eventscope-url or EVENTSCOPE_URL",
            pytrace=False,
        )
    timeout = pytestconfig.getoption("eventscope_timeout")
    try:
        return EventscopeClient(
            url,
            _setting(pytestconfig, "eventscope_token", "EVENTSCOPE_TOKEN"),
            timeout=DEFAULT_TIMEOUT if timeout is None else float(timeout),
        )
    except EventscopeError as exc:
        pytest.fail(str(exc), pytrace=False)
