"""The app served by a real uvicorn on a free port, in a thread: for what the ASGI test client
cannot show — requests that truly run at the same time (its async transport handles one request
at a time, blocking), and a real peer address (it always says `testclient`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from litestar import Litestar


@contextmanager
def serving(app: Litestar, port: int) -> Iterator[str]:
    """`app` on 127.0.0.1:`port` until the block ends; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        proxy_headers=False,  # as `eventscope serve`: X-Forwarded-For is the app's to judge
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
