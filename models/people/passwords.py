"""Passwords: the policy every new password meets, and Argon2id hashing.

Hashes are never returned by the API nor logged. The policy applies when a password is set (an
account created, a password changed or reset); a password set before it keeps working until changed.
"""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# The policy lives in a neutral top-level module so that settings.py applies it too (no cycle).
from password_policy import (  # noqa: F401 - re-exported: the domain's one place for passwords
    MAX_LENGTH,
    MIN_LENGTH,
    MIN_OPERATOR_LENGTH,
    common_passwords,
    password_problem,
)

_hasher = PasswordHasher()
# Compared against when the login is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash("leadline-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
