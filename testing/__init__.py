"""Test helpers for systems that publish events: ask eventscope what a test made happen.

    from eventscope.testing import EventscopeClient
    events = EventscopeClient("http://127.0.0.1:8000", token).assert_sequence(
        correlation_id, ["order.created", "payment.succeeded"]
    )

With pytest, the `eventscope` fixture (eventscope.testing.plugin, loaded by the `pytest11`
entry point) is such a client, configured by `--eventscope-url` / `EVENTSCOPE_URL` and
`--eventscope-token` / `EVENTSCOPE_TOKEN`. See docs/testing.md. Standard library only.
"""

from eventscope.testing.client import EventscopeClient, EventscopeError, EventsMissing
from eventscope.testing.fixtures import (
    Fixture,
    FixtureError,
    FixtureEvent,
    differences,
    load_fixture,
    normalise,
    parse_fixture,
)

__all__ = [
    "EventsMissing",
    "EventscopeClient",
    "EventscopeError",
    "Fixture",
    "FixtureError",
    "FixtureEvent",
    "differences",
    "load_fixture",
    "normalise",
    "parse_fixture",
]
