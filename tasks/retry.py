"""When and how a task tries again: transient errors only, with backoff and jitter.

A transient error is one the same work may not meet a little later: the database or the broker
could not be reached, a lock lost a race, the task ran out of time. Anything else (bad data, a
bug) is recorded as failed instead of retried forever.
"""
from __future__ import annotations

import random

from celery.exceptions import SoftTimeLimitExceeded
from psycopg import errors as pg_errors
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as SAOperationalError

from settings import settings

_TRANSIENT_PG = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable,
                 pg_errors.QueryCanceled, pg_errors.AdminShutdown, pg_errors.CannotConnectNow)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: the database or the broker could not be reached, or a lock lost a race."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, SAOperationalError) or isinstance(exc.orig, _TRANSIENT_PG)
    try:
        from kombu.exceptions import OperationalError as KombuOperationalError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover
        return isinstance(exc, (ConnectionError, TimeoutError))
    return isinstance(exc, (KombuOperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError,
                            TimeoutError))


def backoff(retries: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential with full jitter, so retries of many events do not arrive together."""
    return random.uniform(base, min(cap, base * 2 ** retries))


class TransientFailure(Exception):
    """What a retry carries instead of the original error: its description, no statement parameters."""


def describe(exc: BaseException) -> str:
    """Type and first line of an error, for last_error. For database errors the driver's own message
    (which names the constraint) rather than SQLAlchemy's, which appends the statement's parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return settings.mask(f"{type(exc).__name__}: {first}")[:2000] if first else type(exc).__name__
