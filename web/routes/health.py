"""Liveness for load balancers and the container healthcheck: ok or not, no details."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from eventscope.backend.store.eventstore import EventStore


@get("/healthz", include_in_schema=True, summary="Liveness: ok / not ok")
async def healthz(store: NamedDependency[EventStore]) -> Response[dict[str, str]]:
    ok = await store.ping()
    return Response({"status": "ok" if ok else "not ok"}, status_code=200 if ok else 503)
