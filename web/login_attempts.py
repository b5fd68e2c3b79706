"""Every login attempt — token link, login form, `Authorization: Bearer` — ends here.

The credential is checked first, always: a valid one gets in, whatever else came from the same
address (behind a proxy everyone shares one, and anyone could otherwise lock everyone out).
Only wrong credentials are counted, per client (web/client_address.py: the peer, or the client
a trusted proxy names), and once a client has `EVENTSCOPE_LOGIN_ATTEMPTS_PER_MINUTE` failures in
the last minute its wrong credentials are answered 429 instead of 401, and keep it blocked while
it goes on. The answer to a right credential never depends on the count, and a wrong one costs
the same work whether the client is blocked or not (the token comparison is constant-time, an
unknown user name is verified against a dummy hash), so the 429 tells nothing the 401 would
not. What bounds guessing is the secret's size (generated tokens: 192 bits) and, for passwords,
argon2 run a few at a time (backend/users.py `PasswordChecks`).
"""

from __future__ import annotations

from typing import Any

from litestar.types import Scope

from eventscope.web.client_address import client_address, rate_key, trusted_networks
from eventscope.web.login_audit import LoginAudit
from eventscope.web.ratelimit import SlidingWindow


class LoginAttempts:
    """Counts wrong credentials per client and audits every attempt (floods summarised)."""

    def __init__(
        self, limiter: SlidingWindow, audit: LoginAudit, trusted_proxies: tuple[str, ...]
    ) -> None:
        self.limiter = limiter
        self.audit = audit
        self.trusted = trusted_networks(trusted_proxies)

    def client(self, scope: Scope) -> str:
        return client_address(scope, self.trusted)

    async def refused(self, scope: Scope, actor: str, details: dict[str, Any]) -> bool:
        """A wrong credential: counted and audited. True when the client is over its limit
        (answer 429), False when it is not (answer 401)."""
        client = self.client(scope)
        key = rate_key(client)
        limited = self.limiter.blocked(key)
        self.limiter.hit(key)
        result = "rate-limited" if limited else "failed"
        await self.audit.failed(client=client, actor=actor, result=result, details=details)
        return limited

    async def succeeded(self, scope: Scope, actor: str, role: str, details: dict[str, Any]) -> None:
        await self.audit.succeeded(
            client=self.client(scope), actor=actor, role=role, details=details
        )
