"""Anonymous floods do not fill the append-only audit log: per client and minute, the first
failure is written at once and the rest as one summary entry when the window has closed (or
before that client's next login). Names typed into failed logins — often pasted passwords —
are shown to operators only. The audit clock is a fake one where a window must close."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.web.conftest import ORIGIN, TOKEN
from tests.web.test_login_lockout import FakeClock
from tests.web.test_security import HTML, VIEWER, audit_items, bearer, stored_audit, write_users

Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        "login_attempts_per_minute": 3,
        "viewer_tokens": (VIEWER,),
        "users_file": write_users(tmp_path),
    }


@pytest.fixture
def clock(app: Litestar) -> FakeClock:
    fake = FakeClock()
    app.state.web.attempts.audit.clock = fake
    return fake


async def test_a_flood_of_failed_logins_is_one_entry_then_one_summary(
    anon: Client, clock: FakeClock, web_db: str
) -> None:
    for n in range(200):
        await anon.get("/api/events", headers=bearer(f"guess-{n}"))
    entries = await stored_audit(web_db)
    assert [(e["actor"], e["result"]) for e in entries] == [("bearer token", "failed")]

    clock.now += 61  # the window closes; reading the log writes what it counted
    summary, first = await audit_items(anon)
    assert first["actor"] == "bearer token"
    assert summary["actor"] == "anonymous"
    assert summary["action"] == "login"
    assert summary["client"] == "testclient"
    assert summary["reason"] == "199 more failed attempts from testclient"
    details = json.loads(summary["details"])
    assert (details["more"], details["failed"], details["rate-limited"]) == (199, 2, 197)
    assert len(await stored_audit(web_db)) == 2


async def test_a_new_window_starts_with_an_entry_of_its_own(
    anon: Client, clock: FakeClock, web_db: str
) -> None:
    for _ in range(5):
        await anon.get("/login", params={"token": "wrong"})
    clock.now += 61
    for _ in range(5):
        await anon.get("/login", params={"token": "wrong-again"})
    entries = await stored_audit(web_db)  # nobody read the log: the next attempt wrote it
    assert [(e["actor"], e["reason"]) for e in entries] == [
        ("token link", None),
        ("anonymous", "4 more failed attempts from testclient"),
        ("token link", None),
    ]


async def test_the_summary_is_written_before_that_clients_next_login(
    anon: Client, web_db: str
) -> None:
    for n in range(5):
        await anon.post("/login", data={"token": f"no-{n}"}, headers={"origin": ORIGIN})
    response = await anon.post(
        "/login", data={"token": TOKEN}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    assert response.status_code == 303
    entries = await stored_audit(web_db)
    assert [(e["result"], e["reason"]) for e in entries] == [
        ("ok", None),
        ("failed", "4 more failed attempts from testclient"),
        ("failed", None),
    ]


async def test_failed_login_names_are_shown_to_operators_only(anon: Client) -> None:
    pasted = "correct-horse-pasted-in-the-name-field"
    response = await anon.post(
        "/login",
        data={"username": pasted, "password": "x"},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert response.status_code == 401
    operator = await audit_items(anon)
    assert operator[0]["actor"] == pasted

    login = await anon.get("/login", params={"token": VIEWER}, follow_redirects=False)
    assert login.status_code == 303
    items = (await anon.get("/api/audit")).json()["items"]
    failed = [e for e in items if e["result"] == "failed"]
    assert failed and all(e["actor"] is None for e in failed)
    assert [e["actor"] for e in items if e["result"] == "ok"] == ["viewer token 1"]
    page = await anon.get("/audit", headers=HTML)
    assert page.status_code == 200
    assert pasted not in page.text
    assert pasted not in (await anon.get("/api/audit")).text
    assert "hidden" in page.text

    operator_page = await anon.get("/audit", headers={**HTML, **bearer(TOKEN)})
    assert pasted in operator_page.text
