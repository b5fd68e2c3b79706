"""The app factory: one Litestar app, settings passed in, background tasks in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Response
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.datastructures import MutableScopeHeaders, State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.template.config import TemplateConfig
from litestar.types import Message, Scope
from sqlalchemy.ext.asyncio import AsyncEngine

from eventscope.backend.ingest.recorder import Recorder
from eventscope.backend.live import LiveHub, Renderers
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.migrate import upgrade_async
from eventscope.web.auth import Authenticator, AuthMiddleware, authenticator_for
from eventscope.web.event_view import masked_row
from eventscope.web.ratelimit import SlidingWindow
from eventscope.web.routes.api import EventsApi
from eventscope.web.routes.audit import audit_api, audit_page
from eventscope.web.routes.health import healthz
from eventscope.web.routes.live import live_socket
from eventscope.web.routes.login import login_page, login_submit, logout
from eventscope.web.routes.pages import Pages
from eventscope.web.services import AnyRequest, Services
from eventscope.web.templating import asset_dir, create_environment, render

log = logging.getLogger(__name__)

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
        if scope.get("path", "").startswith(("/api/", "/events/")) or scope.get("path") == "/":
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
    engine: AsyncEngine | None = None,
    run_recorder: bool = True,
    run_demo: bool | None = None,
    migrate: bool = True,
    auth: Authenticator | None = None,
) -> Litestar:
    """Build the app. Tests pass `run_recorder=False` and their own engine."""
    engine = engine or create_engine(settings.database_url)
    env = create_environment()
    recorder = Recorder(settings, engine) if run_recorder else None
    auth = auth or authenticator_for(settings)
    redactor = Redactor(settings.redact_fields)

    async def status_fragment() -> str:
        return render(env, "_status.html", status=await services.status())

    hub = LiveHub(
        engine,
        Renderers(
            rows=lambda rows, new, masked: render(
                env,
                "_live_rows.html",
                rows=[masked_row(row, redactor if masked else None) for row in rows],
                skipped=new - len(rows),
            ),
            paused=lambda missed: render(env, "_live_controls.html", paused=True, missed=missed),
            status=status_fragment,
        ),
        max_rows=settings.live_rows,
    )
    services = Services(
        settings,
        engine,
        env,
        auth,
        hub,
        recorder,
        redactor=redactor,
        login_failures=SlidingWindow(settings.login_attempts_per_minute),
    )
    demo = settings.demo if run_demo is None else run_demo

    @asynccontextmanager
    async def background(app: Litestar) -> AsyncIterator[None]:
        if migrate:
            await upgrade_async(settings.database_url)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(hub.run(stop), name="live-hub")]
        if recorder is not None:
            tasks.append(asyncio.create_task(recorder.run(stop), name="recorder"))
        if demo:
            from eventscope.backend.demo import run_demo as demo_main

            tasks.append(
                asyncio.create_task(
                    demo_main(
                        settings.amqp_url,
                        exchange=settings.exchanges[0],
                        rate=settings.demo_rate,
                        failure_rate=settings.demo_failure_rate,
                        stop=stop,
                    ),
                    name="demo",
                )
            )
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=10)
            await engine.dispose()

    return Litestar(
        route_handlers=[
            Pages,
            EventsApi,
            healthz,
            live_socket,
            login_page,
            login_submit,
            logout,
            audit_page,
            audit_api,
            create_static_files_router(path="/static", directories=[asset_dir("static")]),
        ],
        dependencies={"services": Provide(lambda: services, use_cache=True, sync_to_thread=False)},
        middleware=[AuthMiddleware(settings.allowed_origins)],
        template_config=TemplateConfig(instance=JinjaTemplateEngine.from_environment(env)),
        openapi_config=OpenAPIConfig(title="eventscope", version="0.1.0", path="/schema"),
        lifespan=[background],
        before_send=[add_security_headers],
        exception_handlers={HTTPException: handle_http_error, Exception: handle_crash},
        allowed_hosts=AllowedHostsConfig(allowed_hosts=settings.hosts),
        state=State({"services": services}),
        request_max_body_size=64 * 1024,
        debug=False,
    )
