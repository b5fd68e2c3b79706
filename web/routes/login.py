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

from eventscope.web.auth import SESSION_COOKIE, SESSION_TTL, Principal, safe_next
from eventscope.web.context import WebContext
from eventscope.web.request import AnyRequest

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


def _secure(web: WebContext, request: AnyRequest) -> bool:
    return web.settings.secure_cookies or request.url.scheme == "https"


async def _signed_in(
    web: WebContext,
    request: AnyRequest,
    principal: Principal,
    target: str | None,
    how: str,
) -> Redirect:
    await web.store.audit.record(
        actor=principal.name,
        role=principal.role,
        action="login",
        result="ok",
        client=client_of(request),
        details={"via": how},
    )
    session_id = web.auth.open_session(principal)
    return Redirect(
        safe_next(target),
        status_code=303,
        cookies=[_cookie(session_id, _secure(web, request))],
    )


async def _failed(
    web: WebContext, request: AnyRequest, who: str, target: str | None, how: str
) -> Template:
    client = client_of(request)
    web.login_failures.hit(client)
    await web.store.audit.record(
        actor=who,
        action="login",
        result="failed",
        client=client,
        details={"via": how},
    )
    return _page(web, INVALID, target, 401)


def _page(web: WebContext, error: str | None, target: str | None, status: int = 200) -> Template:
    context = {"error": error, "next": target, "passwords": bool(web.auth.users)}
    return Template("login.html", context=context, status_code=status)


async def _limited(web: WebContext, request: AnyRequest, who: str) -> Template | None:
    client = client_of(request)
    if not web.login_failures.blocked(client):
        return None
    await web.store.audit.record(actor=who, action="login", result="rate-limited", client=client)
    return _page(web, "Too many failed attempts. Wait a minute and try again.", None, 429)


@get("/login", include_in_schema=False)
async def login_page(
    request: AnyRequest,
    web: NamedDependency[WebContext],
    token: FromQuery[str | None] = None,
    next_path: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Template | Redirect:
    """GET with `token` is the printed login link: the only GET that changes state."""
    if web.auth.disabled:
        return Redirect(safe_next(next_path), status_code=303)
    if token is None:
        return _page(web, None, next_path)
    if (limited := await _limited(web, request, "token link")) is not None:
        return limited
    principal = web.auth.check_token(token)
    if principal is None:
        return await _failed(web, request, "token link", next_path, "link")
    return await _signed_in(web, request, principal, next_path, "link")


@post("/login", include_in_schema=False, status_code=303)
async def login_submit(
    request: AnyRequest,
    web: NamedDependency[WebContext],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template | Redirect:
    """A token, or a name and password from the users file."""
    name = (data.get("username") or "").strip()[:200]
    secret = data.get("password") or data.get("token") or ""
    who = name or "token form"
    if (limited := await _limited(web, request, who)) is not None:
        return limited
    if name and web.auth.users:
        principal = web.auth.check_password(name, secret)
    else:
        principal = web.auth.check_token(secret)
    if principal is None:
        return await _failed(web, request, who, data.get("next"), "form")
    return await _signed_in(web, request, principal, data.get("next"), "form")


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: AnyRequest, web: NamedDependency[WebContext]) -> Response[str]:
    """Ends the session server-side (the cookie is worthless afterwards)."""
    session = web.auth.close_session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        await web.store.audit.record(
            actor=session.principal.name,
            role=session.principal.role,
            action="logout",
            result="ok",
            client=client_of(request),
        )
    expired = [_cookie("", _secure(web, request), max_age=0)]
    if request.headers.get("hx-request"):  # htmx follows a 303 itself: tell it to navigate
        return Response("", status_code=200, headers={"HX-Redirect": "/login"}, cookies=expired)
    return Redirect("/login", status_code=303, cookies=expired)
