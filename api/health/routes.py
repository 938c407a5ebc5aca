"""Liveness and readiness."""
from __future__ import annotations

import time
from typing import Any, Callable

from flask import jsonify
from flask.views import MethodView
from sqlalchemy import text

from api.extensions import Blueprint
from models.core.db import Session
from models.core.redis import get_redis
from settings import settings

blp = Blueprint("health", __name__, url_prefix="/api/health", description="Liveness and readiness")


def _timed(check: Callable[[], str]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        # A driver's message may quote the address it failed on, password included.
        detail = settings.mask(f"{type(exc).__name__}: {str(exc)[:200]}")
        ok = False
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _skipped(reason: str) -> dict[str, Any]:
    return {"ok": False, "detail": reason, "ms": 0.0}


def check_database() -> str:
    Session.execute(text("SELECT 1"))
    Session.rollback()
    return "ok"


def check_redis() -> str:
    get_redis().ping()
    return "ok"


def check_broker() -> str:
    """RabbitMQ, when it is the broker (with Redis as the broker the Redis check says it all)."""
    from models.core.broker import ping_amqp

    return ping_amqp()


def check_worker() -> str:
    from tasks.celery_app import celery_app

    replies = celery_app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no worker answered within 1 s")
    return f"{len(replies)} answering: " + ", ".join(sorted(name for reply in replies for name in reply))


def check_beat() -> str:
    from models.core.probes import beat_heartbeat_age as heartbeat_age

    age = heartbeat_age()
    if age is None:
        raise RuntimeError("no heartbeat from beat yet")
    if age > settings.BEAT_HEARTBEAT_MAX_AGE:
        raise RuntimeError(f"last heartbeat {age:.0f} s ago")
    return f"last heartbeat {age:.0f} s ago"


def check_storage() -> str:
    """The S3 bucket answers (local disk has nothing to ask: a missing folder is created on first use)."""
    from storage.backend import get_storage

    return get_storage().check()  # type: ignore[return-value]


@blp.route("")
class Liveness(MethodView):
    def get(self):
        """The API process is up."""
        return {"status": "ok"}


@blp.route("/ready")
class Readiness(MethodView):
    def get(self):
        """Ready to work: database, Redis, the broker when it is RabbitMQ, a worker answering, beat
        alive, and the S3 bucket with STORAGE_BACKEND=s3. 503 otherwise."""
        from models.core.broker import is_redis
        from storage.backend import LocalStorage, get_storage

        checks = {"database": _timed(check_database), "redis": _timed(check_redis)}
        if not is_redis():
            checks["broker"] = _timed(check_broker)
        if not isinstance(get_storage(), LocalStorage):
            checks["storage"] = _timed(check_storage)
        broker = checks.get("broker", checks["redis"])
        # Without the broker no worker can be asked, without Redis no heartbeat read: skip the long
        # broker timeouts and say why.
        checks["worker"] = _timed(check_worker) if broker["ok"] else _skipped(
            "Redis недоступен" if broker is checks["redis"] else "Брокер задач (RabbitMQ) недоступен")
        checks["beat"] = _timed(check_beat) if checks["redis"]["ok"] else _skipped("Redis недоступен")
        ready = all(c["ok"] for c in checks.values())
        response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
        response.status_code = 200 if ready else 503
        return response
