"""Login and logout. The token link becomes a session cookie, then a clean URL. The credential
is checked first: a valid one always gets in; wrong ones are counted per client and answered
429 past the limit (web/login_attempts.py). Every attempt is audited, floods summarised."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery, QueryParameter
from litestar.response import Redirect, Template

from eventscope.web.auth import SESSION_COOKIE, SESSION_TTL, Principal, safe_next
from eventscope.web.context import WebContext
from eventscope.web.request import AnyRequest

INVALID = "Those credentials are not valid."
TOO_MANY = "Too many failed attempts. Wait a minute and try again."
MAX_NAME = 200


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


def _secure(web: WebContext, request: AnyRequest) -> bool:
    return web.settings.secure_cookies or request.url.scheme == "https"


async def _signed_in(
    web: WebContext,
    request: AnyRequest,
    principal: Principal,
    target: str | None,
    how: str,
) -> Redirect:
    await web.attempts.succeeded(request.scope, principal.name, principal.role, {"via": how})
    session_id = web.auth.open_session(principal)
    return Redirect(
        safe_next(target),
        status_code=303,
        cookies=[_cookie(session_id, _secure(web, request))],
    )


async def _refused(
    web: WebContext, request: AnyRequest, who: str, target: str | None, how: str
) -> Template:
    """A wrong credential: 401, or 429 once this client has failed too often."""
    if await web.attempts.refused(request.scope, who, {"via": how}):
        return _page(web, TOO_MANY, target, 429)
    return _page(web, INVALID, target, 401)


def _page(web: WebContext, error: str | None, target: str | None, status: int = 200) -> Template:
    context = {"error": error, "next": target, "passwords": bool(web.auth.users)}
    return Template("login.html", context=context, status_code=status)


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
    principal = web.auth.check_token(token)
    if principal is None:
        return await _refused(web, request, "token link", next_path, "link")
    return await _signed_in(web, request, principal, next_path, "link")


@post("/login", include_in_schema=False, status_code=303)
async def login_submit(
    request: AnyRequest,
    web: NamedDependency[WebContext],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template | Redirect:
    """A token, or a name and password from the users file."""
    name = (data.get("username") or "").strip()[:MAX_NAME]
    secret = data.get("password") or data.get("token") or ""
    if name and web.auth.users:
        principal = await web.auth.check_password(name, secret)
    else:
        principal = web.auth.check_token(secret)
    if principal is None:
        return await _refused(web, request, name or "token form", data.get("next"), "form")
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
            client=web.attempts.client(request.scope),
        )
    expired = [_cookie("", _secure(web, request), max_age=0)]
    if request.headers.get("hx-request"):  # htmx follows a 303 itself: tell it to navigate
        return Response("", status_code=200, headers={"HX-Redirect": "/login"}, cookies=expired)
    return Redirect("/login", status_code=303, cookies=expired)
