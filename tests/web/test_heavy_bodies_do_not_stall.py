"""A viewer opening a body built to make masking slow must not stall the server: masking is
linear, bounded, and large bodies are prepared off the event loop, so `/healthz` (and the
recorder on the same loop) keep answering. Served by a real uvicorn so requests truly overlap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from eventscope.web.app import create_app
from tests.conftest import Names, free_port, make_settings
from tests.web.conftest import TOKEN, delivery
from tests.web.serving import serving
from tests.web.test_security import HTML, VIEWER, bearer

# Generous: quadratic masking took minutes for these 50 KB bodies; linear takes milliseconds.
STALL_BOUND_SECONDS = 5.0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"token" * 10_000, "text/plain"),
        (b'{"n": NaN, "note": "' + b"token" * 10_000 + b'"}', "application/json"),
        (b'["' + b"token" * 10_000 + b'"', "application/json"),  # truncated JSON: text path
        (b"4111-" * 10_000, "text/plain"),
    ],
    ids=["text", "json-nan", "json-truncated", "card-groups"],
)
async def test_a_viewer_opening_a_body_of_repeated_secret_words_does_not_stall_the_server(
    web_db: str, names: Names, put: Callable[..., Any], body: bytes, content_type: str
) -> None:
    (event_id,) = await put(
        delivery("repeated.token", body, properties={"content_type": content_type})
    )
    port = free_port()
    settings = make_settings(
        web_db,
        names,
        token=TOKEN,
        viewer_tokens=(VIEWER,),
        port=port,
        allowed_hosts=("127.0.0.1",),
    )
    app = create_app(settings, run_recorder=False, migrate=False)
    with serving(app, port) as base:
        async with httpx.AsyncClient(base_url=base, timeout=600) as http:

            async def timed(path: str, headers: dict[str, str]) -> float:
                start = time.monotonic()
                response = await http.get(path, headers=headers)
                assert response.status_code == 200, path
                return time.monotonic() - start

            async def health_while_busy() -> float:
                await asyncio.sleep(0.05)  # the viewer's requests are in flight
                return await timed("/healthz", {})

            viewer = bearer(VIEWER)
            page, api, health = await asyncio.gather(
                timed(f"/events/{event_id}", {**HTML, **viewer}),
                timed(f"/api/events/{event_id}", viewer),
                health_while_busy(),
            )
    assert health < STALL_BOUND_SECONDS
    assert page < STALL_BOUND_SECONDS
    assert api < STALL_BOUND_SECONDS
