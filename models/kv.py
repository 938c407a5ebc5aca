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
