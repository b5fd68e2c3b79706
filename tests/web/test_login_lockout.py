"""Nobody can lock anyone out: the credential is checked first and a valid one always gets in;
only wrong ones are counted, per client — the peer, or the client a trusted proxy names in
X-Forwarded-For — and answered 429 past the limit. argon2 runs off the event loop, a few at a
time. The proxy and concurrency tests run on a real uvicorn (real peer address, real overlap).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.testing import AsyncTestClient

from eventscope.web.app import create_app
from tests.conftest import Names, free_port, make_settings
from tests.web.conftest import ORIGIN, TOKEN
from tests.web.serving import serving
from tests.web.test_security import VIEWER, bearer, stored_audit, write_users

Client = AsyncTestClient[Litestar]
LIMIT = 3


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        "login_attempts_per_minute": LIMIT,
        "viewer_tokens": (VIEWER,),
        "users_file": write_users(tmp_path),
    }


async def form(client: Client | httpx.AsyncClient, **data: str) -> httpx.Response:
    return await client.post(
        "/login", data=data, headers={"origin": ORIGIN}, follow_redirects=False
    )


async def test_a_valid_token_gets_in_after_the_limit_of_failures_from_its_address(
    anon: Client,
) -> None:
    codes = [(await form(anon, token=f"guess-{n}")).status_code for n in range(LIMIT + 2)]
    assert codes == [401] * LIMIT + [429] * 2
    signed_in = await form(anon, token=TOKEN)
    assert signed_in.status_code == 303
    assert (await anon.get("/api/events")).status_code == 200
    anon.cookies.clear()
    link = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert link.status_code == 303
    anon.cookies.clear()
    assert (await anon.get("/api/events", headers=bearer(TOKEN))).status_code == 200
    assert (await anon.get("/api/events", headers=bearer(VIEWER))).status_code == 200
    # ... while wrong ones from the same address are still refused, by every way in
    assert (await anon.get("/api/events", headers=bearer("guess-x"))).status_code == 429
    assert (await form(anon, token="guess-y")).status_code == 429
    assert (await anon.get("/login", params={"token": "guess-z"})).status_code == 429


async def test_a_valid_password_gets_in_after_the_limit_of_failures(anon: Client) -> None:
    codes = [
        (await form(anon, username="bob", password=f"wrong-{n}")).status_code
        for n in range(LIMIT + 1)
    ]
    assert codes == [401] * LIMIT + [429]
    assert (await form(anon, username="bob", password="bob-pass-22")).status_code == 303


async def test_a_blocked_client_stays_blocked_while_it_keeps_guessing(
    anon: Client, app: Litestar
) -> None:
    clock = FakeClock()
    app.state.web.login_failures.clock = clock
    for n in range(LIMIT):
        assert (await form(anon, token=f"guess-{n}")).status_code == 401
    for _ in range(6):  # two more minutes of guessing at the limit's rate: all refused
        clock.now += 60 / LIMIT
        assert (await form(anon, token="guess-more")).status_code == 429
    clock.now += 61  # a minute without guessing: free again
    assert (await form(anon, token="guess-later")).status_code == 401


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- behind a proxy: a real server, a real peer address (127.0.0.1) --------------------------


@pytest.fixture
async def proxied(
    web_db: str, names: Names, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[httpx.AsyncClient, Litestar]]:
    """A real server whose peer (this test, 127.0.0.1) is or is not a trusted proxy."""
    port = free_port()
    settings = make_settings(
        web_db,
        names,
        token=TOKEN,
        port=port,
        allowed_hosts=("127.0.0.1",),
        allowed_origins=(ORIGIN,),
        login_attempts_per_minute=LIMIT,
        trusted_proxies=getattr(request, "param", ("127.0.0.0/8",)),
    )
    app = create_app(settings, run_recorder=False, migrate=False)
    with serving(app, port) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            yield http, app


def via(client: str) -> dict[str, str]:
    return {"x-forwarded-for": client}


async def wrong_bearer(http: httpx.AsyncClient, forwarded: str) -> int:
    response = await http.get("/api/events", headers={**bearer("guess"), **via(forwarded)})
    return response.status_code


async def test_clients_behind_a_trusted_proxy_are_counted_one_by_one(
    proxied: tuple[httpx.AsyncClient, Litestar], web_db: str
) -> None:
    http, _ = proxied
    codes = [await wrong_bearer(http, "203.0.113.5") for _ in range(LIMIT + 1)]
    assert codes == [401] * LIMIT + [429]
    assert await wrong_bearer(http, "203.0.113.6") == 401  # another client behind the proxy
    ok = await http.get("/api/events", headers={**bearer(TOKEN), **via("203.0.113.5")})
    assert ok.status_code == 200
    clients = {entry["client"] for entry in await stored_audit(web_db)}
    assert clients == {"203.0.113.5", "203.0.113.6"}


async def test_a_client_cannot_escape_its_count_by_writing_its_own_forwarded_for(
    proxied: tuple[httpx.AsyncClient, Litestar],
) -> None:
    http, _ = proxied
    codes = [  # the proxy appends the real address last; what comes before is the client's
        await wrong_bearer(http, f"198.51.100.{n}, 203.0.113.5") for n in range(LIMIT + 2)
    ]
    assert codes == [401] * LIMIT + [429] * 2


@pytest.mark.parametrize("proxied", [()], indirect=True)
async def test_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy_is_ignored(
    proxied: tuple[httpx.AsyncClient, Litestar], web_db: str
) -> None:
    http, _ = proxied
    codes = [await wrong_bearer(http, f"203.0.113.{n}") for n in range(LIMIT + 1)]
    assert codes == [401] * LIMIT + [429]  # every claimed address counted as the peer's
    assert {entry["client"] for entry in await stored_audit(web_db)} == {"127.0.0.1"}


# --- argon2 off the event loop, a few at a time ----------------------------------------------


def users_file(directory: Path, hasher: PasswordHasher) -> str:
    path = directory / "slow-users.txt"
    path.write_text(f"carol:operator:{hasher.hash('carol-pass-1')}\n", encoding="utf-8")
    return str(path)


async def test_password_checks_run_off_the_event_loop(
    web_db: str, names: Names, tmp_path: Path
) -> None:
    """A verification of seconds, and /healthz answers meanwhile (on the loop it could not)."""
    port = free_port()
    settings = make_settings(
        web_db,
        names,
        token=TOKEN,
        port=port,
        allowed_hosts=("127.0.0.1",),
        allowed_origins=(ORIGIN,),
        users_file=users_file(tmp_path, PasswordHasher(time_cost=40)),  # ~3 s to verify
    )
    app = create_app(settings, run_recorder=False, migrate=False)
    with serving(app, port) as base:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            login = asyncio.create_task(form(http, username="carol", password="carol-pass-1"))
            await asyncio.sleep(0.5)  # the login request is in, its verification under way
            start = time.monotonic()
            assert (await http.get("/healthz")).status_code == 200
            answered = time.monotonic() - start
            assert not login.done()
            assert (await login).status_code == 303
    assert answered < 1.5  # generous; on the loop it waited for the whole verification


async def test_at_most_two_password_checks_run_at_once(
    web_db: str, names: Names, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(
        web_db,
        names,
        token=TOKEN,
        port=port,
        allowed_hosts=("127.0.0.1",),
        allowed_origins=(ORIGIN,),
        login_attempts_per_minute=100,
        users_file=users_file(tmp_path, PasswordHasher(time_cost=6)),
    )
    app = create_app(settings, run_recorder=False, migrate=False)
    with serving(app, port) as base:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            attempts = [form(http, username="carol", password=f"wrong-{n}") for n in range(6)]
            attempts.append(form(http, username="carol", password="carol-pass-1"))
            answers = await asyncio.gather(*attempts)
    assert sorted(a.status_code for a in answers) == [303] + [401] * 6
    checks = app.state.web.auth.password_checks
    assert checks.peak == 2
    assert checks.running == 0


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
