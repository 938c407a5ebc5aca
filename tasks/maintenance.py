"""Database and platform maintenance."""
from __future__ import annotations

import time

from models.kv import get_redis, key
from tasks.celery_app import celery_app

HEARTBEAT_KEY = key("beat", "heartbeat")


@celery_app.task(name="maintenance.heartbeat", soft_time_limit=10, time_limit=20)
def heartbeat() -> None:
    """Enqueued by beat on a fixed interval; readiness reads how fresh it is."""
    get_redis().set(HEARTBEAT_KEY, f"{time.time():.3f}", ex=24 * 3600)


def heartbeat_age() -> float | None:
    raw = get_redis().get(HEARTBEAT_KEY)
    return None if raw is None else max(time.time() - float(raw), 0.0)
