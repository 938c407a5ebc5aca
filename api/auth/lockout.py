"""Failed sign-ins counted per login + client IP in Redis: five in an hour lock it for 30 minutes."""
from __future__ import annotations

import hashlib

from models.core.redis import get_redis, key
from settings import settings


def _subject(login: str, ip: str) -> str:
    # The login is personal data: keys carry a digest, never the login itself.
    return hashlib.sha256(f"{login.strip().lower()}|{ip}".encode()).hexdigest()[:32]


def locked_for(login: str, ip: str) -> int:
    """Seconds the login+IP stays locked, 0 when it is not."""
    ttl = get_redis().ttl(key("login", "lock", _subject(login, ip)))
    return max(int(ttl), 0) if ttl and ttl > 0 else 0


def record_failure(login: str, ip: str) -> int:
    """Count a failure; lock when the limit is reached. Returns the seconds locked (0 if not)."""
    subject = _subject(login, ip)
    redis = get_redis()
    failures_key = key("login", "failures", subject)
    pipe = redis.pipeline()
    # The window starts at the first failure (SET NX EX works on Redis 6 as well as 7).
    pipe.set(failures_key, 0, ex=settings.LOGIN_FAILURE_WINDOW_MINUTES * 60, nx=True)
    pipe.incr(failures_key)
    failures = pipe.execute()[1]
    if failures >= settings.LOGIN_MAX_FAILURES:
        lock_seconds = settings.LOGIN_LOCKOUT_MINUTES * 60
        pipe = redis.pipeline()
        pipe.set(key("login", "lock", subject), "1", ex=lock_seconds)
        pipe.delete(failures_key)
        pipe.execute()
        return lock_seconds
    return 0


def clear_failures(login: str, ip: str) -> None:
    get_redis().delete(key("login", "failures", _subject(login, ip)))
