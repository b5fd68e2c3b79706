"""Login and logout. The token link becomes a session cookie, then a clean URL; every attempt,
good or bad, is audited, and failures are rate-limited per client address."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery, QueryParameter
from litestar.response import Redirect, Template

from eventscope.backend.audit import record
from eventscope.web.auth import SESSION_COOKIE, SESSION_TTL, Principal, safe_next
from eventscope.web.services import AnyRequest, Services

INVALID = "Those credentials are not valid."


def _cookie(value: str, secure: bool, max_age: int = SESSION_TTL) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        httponly=True,
        samesite="lax",
        secure=secure,
        max_age=max_age,
        path="/",
    )


def client_of(request: Request) -> str:  # type: ignore[type-arg]
    return request.client.host if request.client else "?"


def _secure(services: Services, request: AnyRequest) -> bool:
    return services.settings.secure_cookies or request.url.scheme == "https"


async def _signed_in(
    services: Services, request: AnyRequest, principal: Principal, target: str | None, how: str
) -> Redirect:
    await record(
        services.engine,
        actor=principal.name,
        role=principal.role,
        action="login",
        result="ok",
        client=client_of(request),
        details={"via": how},
    )
    session_id = services.auth.open_session(principal)
    return Redirect(
        safe_next(target),
        status_code=303,
        cookies=[_cookie(session_id, _secure(services, request))],
    )


async def _failed(
    services: Services, request: AnyRequest, who: str, target: str | None, how: str
) -> Template:
    client = client_of(request)
    services.login_failures.hit(client)
    await record(
        services.engine,
        actor=who,
        action="login",
        result="failed",
        client=client,
        details={"via": how},
    )
    return _page(services, INVALID, target, 401)


def _page(services: Services, error: str | None, target: str | None, status: int = 200) -> Template:
    context = {"error": error, "next": target, "passwords": bool(services.auth.users)}
    return Template("login.html", context=context, status_code=status)


async def _limited(services: Services, request: AnyRequest, who: str) -> Template | None:
    client = client_of(request)
    if not services.login_failures.blocked(client):
        return None
    await record(services.engine, actor=who, action="login", result="rate-limited", client=client)
    return _page(services, "Too many failed attempts. Wait a minute and try again.", None, 429)


@get("/login", include_in_schema=False)
async def login_page(
    request: AnyRequest,
    services: NamedDependency[Services],
    token: FromQuery[str | None] = None,
    next_path: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Template | Redirect:
    """GET with `token` is the printed login link: the only GET that changes state."""
    if services.auth.disabled:
        return Redirect(safe_next(next_path), status_code=303)
    if token is None:
        return _page(services, None, next_path)
    if (limited := await _limited(services, request, "token link")) is not None:
        return limited
    principal = services.auth.check_token(token)
    if principal is None:
        return await _failed(services, request, "token link", next_path, "link")
    return await _signed_in(services, request, principal, next_path, "link")


@post("/login", include_in_schema=False, status_code=303)
async def login_submit(
    request: AnyRequest,
    services: NamedDependency[Services],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template | Redirect:
    """A token, or a name and password from the users file."""
    name = (data.get("username") or "").strip()[:200]
    secret = data.get("password") or data.get("token") or ""
    who = name or "token form"
    if (limited := await _limited(services, request, who)) is not None:
        return limited
    if name and services.auth.users:
        principal = services.auth.check_password(name, secret)
    else:
        principal = services.auth.check_token(secret)
    if principal is None:
        return await _failed(services, request, who, data.get("next"), "form")
    return await _signed_in(services, request, principal, data.get("next"), "form")


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: AnyRequest, services: NamedDependency[Services]) -> Response[str]:
    """Ends the session server-side (the cookie is worthless afterwards)."""
    session = services.auth.close_session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        await record(
            services.engine,
            actor=session.principal.name,
            role=session.principal.role,
            action="logout",
            result="ok",
            client=client_of(request),
        )
    expired = [_cookie("", _secure(services, request), max_age=0)]
    if request.headers.get("hx-request"):  # htmx follows a 303 itself: tell it to navigate
        return Response("", status_code=200, headers={"HX-Redirect": "/login"}, cookies=expired)
    return Redirect("/login", status_code=303, cookies=expired)
