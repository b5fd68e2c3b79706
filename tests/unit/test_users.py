"""The users file: argon2 hashes, roles, clear errors for malformed lines."""

from __future__ import annotations

import pytest

from eventscope.backend.users import hash_password, parse_users, verify


def test_right_password_gives_the_user_and_wrong_or_unknown_gives_none() -> None:
    users = parse_users(
        f"# team\nann:operator:{hash_password('s3cret')}\n\nbob:viewer:{hash_password('pw')}\n"
    )
    assert verify(users, "ann", "s3cret").role == "operator"  # type: ignore[union-attr]
    assert verify(users, "bob", "pw").role == "viewer"  # type: ignore[union-attr]
    assert verify(users, "ann", "wrong") is None
    assert verify(users, "nobody", "s3cret") is None


def test_hash_is_argon2_and_never_the_password() -> None:
    hashed = hash_password("s3cret")
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed


@pytest.mark.parametrize("line", ["ann:admin:$argon2id$x", "ann:viewer:plaintext", "justaname"])
def test_malformed_lines_are_refused_with_their_line_number(line: str) -> None:
    with pytest.raises(ValueError, match="users:2"):
        parse_users(f"# ok\n{line}\n", "users")
