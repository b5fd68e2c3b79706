"""Login and logout: the one-time token link becomes a session cookie, then a clean URL."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery, QueryParameter
from litestar.response import Redirect, Template

from web.auth import SESSION_COOKIE, SESSION_TTL, Principal, safe_next
from web.services import AnyRequest, Services


def _session_cookie(value: str, secure: bool, max_age: int = SESSION_TTL) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        httponly=True,
        samesite="lax",
        secure=secure,
        max_age=max_age,
        path="/",
    )


def _signed_in(
    services: Services, request: AnyRequest, principal: Principal, target: str | None
) -> Redirect:
    session_id = services.auth.open_session(principal)
    secure = request.url.scheme == "https"
    return Redirect(
        safe_next(target), status_code=303, cookies=[_session_cookie(session_id, secure)]
    )


@get("/login", include_in_schema=False)
async def login_page(
    request: AnyRequest,
    services: NamedDependency[Services],
    token: FromQuery[str | None] = None,
    next_path: Annotated[str | None, QueryParameter(name="next")] = None,
) -> Response[str] | Template | Redirect:
    """GET with `token` is the printed login link: the only GET that changes state."""
    if services.auth.disabled:
        return Redirect(safe_next(next_path), status_code=303)
    if token is not None:
        principal = services.auth.check_token(token)
        if principal is not None:
            return _signed_in(services, request, principal, next_path)
        return Template(
            "login.html",
            context={"error": "That token is not valid.", "next": next_path},
            status_code=401,
        )
    return Template("login.html", context={"error": None, "next": next_path})


@post("/login", include_in_schema=False, status_code=303)
async def login_submit(
    request: AnyRequest,
    services: NamedDependency[Services],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Template | Redirect:
    principal = services.auth.check_token(data.get("token"))
    if principal is None:
        return Template(
            "login.html",
            context={"error": "That token is not valid.", "next": data.get("next")},
            status_code=401,
        )
    return _signed_in(services, request, principal, data.get("next"))


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: AnyRequest, services: NamedDependency[Services]) -> Redirect:
    services.auth.close_session(request.cookies.get(SESSION_COOKIE))
    return Redirect("/login", status_code=303, cookies=[_session_cookie("", False, max_age=0)])
