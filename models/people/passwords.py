"""Passwords: the policy every new password meets, and Argon2id hashing.

Hashes are never returned by the API nor logged. Users imported from the old backend keep its bcrypt
hashes (`$2a$`/`$2b$`/`$2y$`, made by passlib): they are verified as bcrypt and need a rehash, so the
first successful sign-in replaces them with Argon2id (api/auth/routes.py). The policy applies when a password is set (an
account created, a password changed or reset); a password set before it keeps working until changed.
"""
from __future__ import annotations

import bcrypt
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
# Compared against when the login is unknown, so both paths take the same time. A constant made with
# the hasher's parameters (hashing one at import cost every process ~0.4 s of CPU at start, every
# `flask` command included); should the parameters change, one is made on first use instead.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$pZoi2kBLugZA4hdnTHcx3w$"  # pragma: allowlist secret
    "QuZvThBvlhu9sIYBTarDhn+y4qNu4zqpMcDMFNWZW00"  # pragma: allowlist secret
)
_dummy_checked = False


def _dummy_hash() -> str:
    global _DUMMY_HASH, _dummy_checked
    if not _dummy_checked:
        if _hasher.check_needs_rehash(_DUMMY_HASH):
            _DUMMY_HASH = _hasher.hash("leadline-dummy-password")
        _dummy_checked = True
    return _DUMMY_HASH


def hash_password(password: str) -> str:
    return _hasher.hash(password)


BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def is_bcrypt(password_hash: str | None) -> bool:
    return bool(password_hash) and password_hash.startswith(BCRYPT_PREFIXES)


def _verify_bcrypt(password_hash: str, password: str) -> bool:
    # bcrypt reads 72 bytes; passlib (the old backend) cut longer passwords there too, silently.
    secret = password.encode("utf-8")[:72]
    try:
        return bcrypt.checkpw(secret, password_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False


def verify_password(password_hash: str | None, password: str) -> bool:
    if is_bcrypt(password_hash):
        return _verify_bcrypt(password_hash, password)
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """An imported bcrypt hash always; an Argon2 hash made with older parameters."""
    if is_bcrypt(password_hash):
        return True
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True
