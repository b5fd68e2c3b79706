"""Token authentication for every route, websocket included.

A token (configured or generated at start) is exchanged once for a server-side session cookie;
the API also takes `Authorization: Bearer <token>`. Only the login page, static assets and
/healthz are reachable without it. Roles and CSRF build on this in the security work.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass, field

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "eventscope_session"
SESSION_TTL = 12 * 3600
PUBLIC_PATHS = re.compile(r"^/(login|healthz|static/.*|favicon\.ico)$")


@dataclass
class Principal:
    name: str
    role: str  # "operator" for now; viewers arrive with the security work


@dataclass
class Authenticator:
    """Holds the token and the server-side sessions (lost on restart: log in again)."""

    token: str | None
    disabled: bool = False
    generated: bool = False
    sessions: dict[str, tuple[Principal, float]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, token: str | None, no_auth: bool) -> Authenticator:
        if no_auth:
            return cls(token=None, disabled=True)
        if token:
            return cls(token=token)
        return cls(token=secrets.token_urlsafe(24), generated=True)

    def check_token(self, candidate: str | None) -> Principal | None:
        if self.token is None or not candidate:
            return None
        if hmac.compare_digest(candidate.encode(), self.token.encode()):
            return Principal(name="token", role="operator")
        return None

    def open_session(self, principal: Principal) -> str:
        session_id = secrets.token_urlsafe(32)
        self.sessions[session_id] = (principal, time.time() + SESSION_TTL)
        return session_id

    def close_session(self, session_id: str | None) -> None:
        if session_id:
            self.sessions.pop(session_id, None)

    def from_session(self, session_id: str | None) -> Principal | None:
        if not session_id:
            return None
        entry = self.sessions.get(session_id)
        if entry is None:
            return None
        principal, expires = entry
        if expires < time.time():
            self.sessions.pop(session_id, None)
            return None
        return principal

    def identify(self, connection: ASGIConnection) -> Principal | None:  # type: ignore[type-arg]
        if self.disabled:
            return Principal(name="anonymous", role="operator")
        header = connection.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.check_token(header[7:].strip())
        return self.from_session(connection.cookies.get(SESSION_COOKIE))


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class AuthMiddleware(ASGIMiddleware):
    """Refuses every unauthenticated request outside `PUBLIC_PATHS`."""

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if PUBLIC_PATHS.match(scope["path"]):
            await next_app(scope, receive, send)
            return
        connection: ASGIConnection = ASGIConnection(scope, receive=receive, send=send)  # type: ignore[type-arg]
        auth: Authenticator = scope["litestar_app"].state.auth
        principal = auth.identify(connection)
        if principal is not None:
            scope["state"]["principal"] = principal
            await next_app(scope, receive, send)
            return
        if scope["type"] == ScopeType.WEBSOCKET:
            await send(
                {"type": "websocket.close", "code": 4401, "reason": "authentication required"}
            )
            return
        await _refuse(scope, send)


async def _refuse(scope: Scope, send: Send) -> None:
    path = scope["path"]
    accepts_html = any(k == b"accept" and b"text/html" in v for k, v in scope.get("headers", []))
    if accepts_html and not path.startswith("/api/"):
        location = "/login?next=" + _quote(
            path
            + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        )
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = b'{"status_code":401,"detail":"authentication required"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="eventscope"'),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")
