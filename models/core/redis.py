"""The Redis connection shared by the API and the workers (sessions, lockouts, locks, heartbeats)."""
from __future__ import annotations

import redis

from settings import settings

_client: redis.Redis | None = None

KEY_PREFIX = "leadline:"


def redis_url() -> str:
    import embedded

    return embedded.resolve_redis_url(settings.REDIS_URL)


def get_redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            redis_url(), socket_connect_timeout=1.0, socket_timeout=2.0, decode_responses=True,
            health_check_interval=30,
        )
    return _client


def reset(url: str | None = None) -> redis.Redis:
    """Point the shared client elsewhere (tests) or drop it after a fork."""
    global _client
    if _client is not None:
        _client.close()
    _client = None
    if url:
        _client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0, decode_responses=True)
    return get_redis()


def key(*parts: object) -> str:
    return KEY_PREFIX + ":".join(str(p) for p in parts)


class SingleFlight:
    """Work that must not overlap, across processes and hosts: a Redis lock with a TTL (redis-py's,
    released atomically and only by its holder). Give the TTL longer than the work's hard time limit.

    `token` names the holder. A task redelivered after its worker died passes the same token (its job
    id) and takes back the lock its dead attempt still holds, instead of waiting out the TTL."""

    def __init__(self, name: str, ttl: float, token: str | None = None):
        import secrets

        self.name, self.ttl = name, ttl
        self.token = token or secrets.token_hex(8)
        self._lock = get_redis().lock(name, timeout=ttl, thread_local=False)
        self.acquired = False

    def acquire(self) -> bool:
        if self._lock.acquire(blocking=False, token=self.token):
            self.acquired = True
        else:  # held: by an earlier attempt of this very work?
            self._lock.local.token = self.token
            try:
                self.acquired = bool(self._lock.reacquire())
            except redis.exceptions.LockError:
                self._lock.local.token = None
                self.acquired = False
        return self.acquired

    def release(self) -> None:
        if self.acquired:
            self.acquired = False
            try:
                self._lock.release()
            except redis.exceptions.LockError:  # expired meanwhile, or taken over
                pass

    def holder(self) -> str | None:
        return get_redis().get(self.name)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
