"""Who is asking, and may they: tokens, users, sessions, roles, CSRF — for every route.

The middleware runs for every HTTP request and websocket, so a new route is protected without
anyone remembering to: only `PUBLIC_PATHS` are reachable anonymously. Credentials:

- an operator token (`EVENTSCOPE_TOKEN`, or generated and printed at start), viewer tokens, or a
  name and password from the users file; each is exchanged once for a server-side session;
- `Authorization: Bearer <token>` for scripts (no cookie, so no CSRF exposure).

A session-authenticated state-changing request must carry the session's CSRF token in the
`X-CSRF-Token` header (htmx adds it from `hx-headers` on <body>), and any state-changing request
from a browser must come from an allowed origin.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from eventscope.backend.settings import Settings
from eventscope.backend.users import PasswordChecks, User, load_users

SESSION_COOKIE = "eventscope_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = 12 * 3600
PUBLIC_PATHS = re.compile(r"^/(login|healthz|static/.*|favicon\.ico)$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # "viewer" or "operator"
    read_only: bool = False

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def can_act(self) -> bool:
        """May publish, discard or edit (the operator actions), unless the app is read-only."""
        return self.is_operator and not self.read_only


@dataclass
class Session:
    principal: Principal
    csrf: str
    expires: float


@dataclass
class Authenticator:
    """Credentials and the server-side sessions (in memory: a restart logs everyone out)."""

    token: str | None
    viewer_tokens: tuple[str, ...] = ()
    users: dict[str, User] = field(default_factory=dict)
    disabled: bool = False
    generated: bool = False
    read_only: bool = False
    sessions: dict[str, Session] = field(default_factory=dict)
    password_checks: PasswordChecks = field(default_factory=PasswordChecks)

    @classmethod
    def from_settings(
        cls,
        token: str | None,
        no_auth: bool,
        *,
        viewer_tokens: tuple[str, ...] = (),
        users: dict[str, User] | None = None,
        read_only: bool = False,
    ) -> Authenticator:
        return cls(
            token=None if no_auth else token or secrets.token_urlsafe(24),
            viewer_tokens=viewer_tokens,
            users=users or {},
            disabled=no_auth,
            generated=not no_auth and not token,
            read_only=read_only,
        )

    def _principal(self, name: str, role: str) -> Principal:
        return Principal(name=name, role=role, read_only=self.read_only)

    def check_token(self, candidate: str | None) -> Principal | None:
        """Compares against every token in constant time per token."""
        if not candidate:
            return None
        given = candidate.encode()
        found = None
        if self.token is not None and hmac.compare_digest(given, self.token.encode()):
            found = self._principal("operator token", "operator")
        for number, viewer in enumerate(self.viewer_tokens, 1):
            if hmac.compare_digest(given, viewer.encode()) and found is None:
                found = self._principal(f"viewer token {number}", "viewer")
        return found

    async def check_password(self, name: str, password: str) -> Principal | None:
        """argon2 in a worker thread, a few at a time (never on the event loop)."""
        if not self.users:
            return None
        user = await self.password_checks.verify(self.users, name, password)
        return self._principal(user.name, user.role) if user else None

    def open_session(self, principal: Principal) -> str:
        self._expire()
        session_id = secrets.token_urlsafe(32)
        self.sessions[session_id] = Session(
            principal, secrets.token_urlsafe(32), time.time() + SESSION_TTL
        )
        return session_id

    def close_session(self, session_id: str | None) -> Session | None:
        return self.sessions.pop(session_id, None) if session_id else None

    def session(self, session_id: str | None) -> Session | None:
        entry = self.sessions.get(session_id) if session_id else None
        if entry is None or entry.expires < time.time():
            return None
        return entry

    def _expire(self) -> None:
        now = time.time()
        for key in [k for k, s in self.sessions.items() if s.expires < now]:
            del self.sessions[key]


def authenticator_for(settings: Settings) -> Authenticator:
    """The authenticator the settings describe; a bad users file is a ValueError naming it."""
    try:
        users = load_users(settings.users_file)
    except OSError as exc:
        raise ValueError(
            f"EVENTSCOPE_USERS_FILE: cannot read {settings.users_file}: {exc}"
        ) from None
    return Authenticator.from_settings(
        settings.token,
        settings.no_auth,
        viewer_tokens=settings.viewer_tokens,
        users=users,
        read_only=settings.read_only,
    )


def principal_of(connection: ASGIConnection) -> Principal:  # type: ignore[type-arg]
    principal: Principal = connection.scope["state"]["principal"]
    return principal


def operator_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: operators only (e.g. the unmasked raw body)."""
    if not principal_of(connection).is_operator:
        raise PermissionDeniedException("Operators only.")


def operator_action(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard for every action that publishes, discards or edits: operators, and not read-only."""
    principal = principal_of(connection)
    if principal.read_only:
        raise PermissionDeniedException("eventscope runs read-only: actions are disabled.")
    if not principal.is_operator:
        raise PermissionDeniedException("Operators only.")


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def origin_allowed(scope: Scope, allowed: tuple[str, ...]) -> bool | None:
    """True/False when the request names its origin (Origin, else Referer), None when not.

    Same origin means the Origin's host:port equals the Host header; `allowed` adds origins
    such as a proxy's public URL."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    origin = headers.get("origin") or headers.get("referer")
    if not origin or origin == "null":
        return False if origin == "null" else None
    parts = urlsplit(origin)
    if f"{parts.scheme}://{parts.netloc}".lower() in {a.lower().rstrip("/") for a in allowed}:
        return True
    return parts.netloc.lower() == headers.get("host", "").lower()


class AuthMiddleware(ASGIMiddleware):
    """Authenticates every request outside `PUBLIC_PATHS` and enforces CSRF on unsafe ones."""

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, allowed_origins: tuple[str, ...] = ()) -> None:
        self.allowed_origins = allowed_origins

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        is_http = scope["type"] == ScopeType.HTTP
        unsafe = is_http and scope.get("method", "GET") not in SAFE_METHODS
        if unsafe and origin_allowed(scope, self.allowed_origins) is False:
            await _deny(send, 403, "cross-origin request refused")
            return
        if PUBLIC_PATHS.match(scope["path"]):
            await next_app(scope, receive, send)
            return
        web = scope["litestar_app"].state.web  # the app's WebContext (web/context.py)
        auth: Authenticator = web.auth
        connection: ASGIConnection = ASGIConnection(scope, receive=receive, send=send)  # type: ignore[type-arg]
        bearer = connection.headers.get("authorization", "").lower().startswith("bearer ")
        principal, session = self._identify(auth, connection)  # the credential first, always
        if principal is None and bearer:
            details = {"via": "bearer", "path": scope["path"]}
            if await web.attempts.refused(scope, "bearer token", details) and is_http:
                await _deny(send, 429, "too many failed attempts; wait a minute")
                return
        if principal is None:
            if not is_http:
                await send({"type": "websocket.close", "code": 4401, "reason": "log in first"})
                return
            await _refuse(scope, send)
            return
        if unsafe and session is not None:
            given = connection.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                await _deny(send, 403, "missing or wrong CSRF token")
                return
        scope["state"]["principal"] = principal
        scope["state"]["csrf"] = session.csrf if session else ""
        await next_app(scope, receive, send)

    @staticmethod
    def _identify(
        auth: Authenticator,
        connection: ASGIConnection,  # type: ignore[type-arg]
    ) -> tuple[Principal | None, Session | None]:
        if auth.disabled:
            return Principal("anonymous", "operator", auth.read_only), None
        header = connection.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return auth.check_token(header[7:].strip()), None
        session = auth.session(connection.cookies.get(SESSION_COOKIE))
        return (session.principal, session) if session else (None, None)


async def _refuse(scope: Scope, send: Send) -> None:
    """Browsers go to the login page; everything else gets a 401."""
    path = scope["path"]
    accepts_html = any(k == b"accept" and b"text/html" in v for k, v in scope.get("headers", []))
    if accepts_html and not path.startswith("/api/"):
        query = scope.get("query_string", b"").decode("latin-1")
        location = "/login?next=" + quote(path + ("?" + query if query else ""), safe="/")
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await _deny(
        send, 401, "authentication required", [(b"www-authenticate", b'Bearer realm="eventscope"')]
    )


async def _deny(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"status_code": status, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
