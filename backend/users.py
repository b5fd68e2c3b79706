"""Users with passwords, the alternative to tokens: one `name:role:argon2-hash` per line.

Create a line with `eventscope hash-password NAME --role viewer`. Lines starting with `#` and
blank lines are ignored. Verification costs the same for unknown names, so timing does not tell
which names exist. It costs tens of milliseconds of CPU on purpose: `PasswordChecks` runs it in
worker threads, a bounded number at once, never on the event loop that serves every request
and runs the recorder.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("viewer", "operator")
_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a real password")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def parse_users(text: str, source: str = "users file") -> dict[str, User]:
    """Parse the users file; a malformed line is an error naming its line number."""
    users: dict[str, User] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0] or parts[1] not in ROLES or not parts[2].startswith("$"):
            raise ValueError(f"{source}:{number}: expected name:viewer|operator:<argon2 hash>")
        users[parts[0]] = User(parts[0], parts[1], parts[2])
    return users


def load_users(path: str | None) -> dict[str, User]:
    if not path:
        return {}
    return parse_users(Path(path).read_text(encoding="utf-8"), path)


def verify(users: dict[str, User], name: str, password: str) -> User | None:
    """The user when the password matches, else None (same work either way)."""
    user = users.get(name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return user


class PasswordChecks:
    """`verify` in at most `limit` worker threads at once; more wait their turn. Bounded, a
    flood of password guesses takes `limit` cores at most, and the event loop none."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self.running = 0
        self.peak = 0  # the most that ever ran at once
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="eventscope-argon2")

    def _verify(self, users: dict[str, User], name: str, password: str) -> User | None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            return verify(users, name, password)
        finally:
            with self._lock:
                self.running -= 1

    async def verify(self, users: dict[str, User], name: str, password: str) -> User | None:
        loop = asyncio.get_running_loop()
        work = functools.partial(self._verify, users, name, password)
        return await loop.run_in_executor(self._pool, work)
