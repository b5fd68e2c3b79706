"""The app factory: HTTP (routes, auth, security headers, error pages) on top of one runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Response
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.datastructures import MutableScopeHeaders, State
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.template.config import TemplateConfig
from litestar.types import Message, Scope

from eventscope.backend.event_wait import WaitRoom
from eventscope.backend.redaction import Redactor
from eventscope.backend.runtime import Runtime
from eventscope.backend.settings import Settings
from eventscope.web.auth import Authenticator, AuthMiddleware, authenticator_for
from eventscope.web.context import WebContext
from eventscope.web.dependencies import DEPENDENCIES
from eventscope.web.event_view import masked_row
from eventscope.web.live import LiveHub, Renderers
from eventscope.web.ratelimit import SlidingWindow
from eventscope.web.request import AnyRequest
from eventscope.web.routes.aggregates import (
    AggregatePages,
    AggregatesApi,
    aggregates_api,
    aggregates_page,
)
from eventscope.web.routes.api import EventsApi
from eventscope.web.routes.audit import audit_api, audit_page
from eventscope.web.routes.compare import compare_api, compare_page
from eventscope.web.routes.correlation_events import CorrelationEventsApi
from eventscope.web.routes.correlations import CorrelationPages, CorrelationsApi
from eventscope.web.routes.dead_letters import DeadLetterPages, DeadLettersApi
from eventscope.web.routes.export import export_events
from eventscope.web.routes.health import healthz
from eventscope.web.routes.live import live_socket
from eventscope.web.routes.login import login_page, login_submit, logout
from eventscope.web.routes.pages import Pages
from eventscope.web.routes.publish import PublishApi, PublishPages
from eventscope.web.routes.replay_batches import ReplayBatchesApi, ReplayBatchPages, batch_socket
from eventscope.web.routes.replays import ReplayPages, ReplaysApi
from eventscope.web.routes.types import type_api, type_changes_api, types_api, types_page
from eventscope.web.templating import asset_dir, create_environment, render

log = logging.getLogger(__name__)

# The most rows one live update carries; a faster stream shows its newest rows and "N more"
# (a person reads a few rows a second; a browser swapping hundreds per update falls behind).
LIVE_ROWS_PER_UPDATE = 100

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make browsers send `Origin: null`
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


async def add_security_headers(message: Message, scope: Scope) -> None:
    """Every HTTP response gets them, 404s and 500s included."""
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        for name, value in SECURITY_HEADERS.items():
            headers[name] = value
        if not scope.get("path", "").startswith("/static/"):  # every page shows bus data
            headers.setdefault("cache-control", "no-store")


def _wants_html(request: AnyRequest) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(
        "/api/"
    )


def handle_http_error(request: AnyRequest, exc: HTTPException) -> Response[Any]:
    """Errors say what happened, never how (no traceback, no settings)."""
    detail = exc.detail if exc.status_code < 500 else "Internal error"
    if _wants_html(request):
        return Template(
            "error.html",
            context={"code": exc.status_code, "detail": detail},
            status_code=exc.status_code,
        )
    return Response({"status_code": exc.status_code, "detail": detail}, status_code=exc.status_code)


def handle_crash(request: AnyRequest, exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return handle_http_error(request, HTTPException(status_code=HTTP_500_INTERNAL_SERVER_ERROR))


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    run_recorder: bool = True,
    run_demo: bool | None = None,
    migrate: bool = True,
    auth: Authenticator | None = None,
) -> Litestar:
    """HTTP on top of a runtime (built from `settings` unless given). Tests pass
    `run_recorder=False` and store events themselves."""
    runtime = runtime or Runtime(settings, record=run_recorder, demo=run_demo, migrate=migrate)
    env = create_environment()
    redactor = Redactor(settings.redact_fields)

    async def status_fragment() -> str:
        return render(env, "_status.html", status=await web.status())

    hub = LiveHub(
        runtime.feed,
        Renderers(
            rows=lambda rows, new, masked: render(
                env,
                "_live_rows.html",
                rows=[masked_row(row, redactor if masked else None) for row in rows],
                skipped=new - len(rows),
            ),
            paused=lambda missed: render(env, "_live_controls.html", paused=True, missed=missed),
            status=status_fragment,
            contents=runtime.store.events.contents,
        ),
        max_rows=min(settings.live_rows, LIVE_ROWS_PER_UPDATE),
        redactor=redactor,
    )
    runtime.add_task("live-hub", hub.run)
    waits = WaitRoom(runtime.feed)  # the long-poll's waiters (`?wait=`), woken by the feed
    runtime.add_task("event-waits", waits.run)
    web = WebContext(
        runtime=runtime,
        env=env,
        auth=auth or authenticator_for(settings),
        hub=hub,
        redactor=redactor,
        login_failures=SlidingWindow(settings.login_attempts_per_minute),
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with runtime.running():
            yield

    return Litestar(
        route_handlers=[
            Pages,
            EventsApi,
            CorrelationEventsApi,
            CorrelationPages,
            CorrelationsApi,
            DeadLetterPages,
            DeadLettersApi,
            ReplaysApi,
            ReplayPages,
            ReplayBatchesApi,
            ReplayBatchPages,
            batch_socket,
            PublishPages,
            PublishApi,
            export_events,
            healthz,
            live_socket,
            login_page,
            login_submit,
            logout,
            audit_page,
            audit_api,
            types_page,
            types_api,
            type_api,
            type_changes_api,
            compare_page,
            compare_api,
            aggregates_page,
            aggregates_api,
            AggregatePages,
            AggregatesApi,
            create_static_files_router(path="/static", directories=[asset_dir("static")]),
        ],
        dependencies=DEPENDENCIES,
        middleware=[AuthMiddleware(settings.allowed_origins)],
        template_config=TemplateConfig(instance=JinjaTemplateEngine.from_environment(env)),
        openapi_config=OpenAPIConfig(title="eventscope", version="0.1.0", path="/schema"),
        lifespan=[lifespan],
        before_send=[add_security_headers],
        exception_handlers={HTTPException: handle_http_error, Exception: handle_crash},
        allowed_hosts=AllowedHostsConfig(allowed_hosts=settings.hosts),
        state=State({"web": web, "waits": waits}),
        request_max_body_size=64 * 1024,
        debug=False,
    )
