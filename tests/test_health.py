"""Liveness and readiness: database, Redis, a worker answering, beat's heartbeat."""
from __future__ import annotations

import os

import pytest

import embedded
from models.core import redis as kv
from tests.support import wait_for


def test_liveness(client):
    assert client.get("/api/health").json == {"status": "ok"}


@pytest.fixture()
def own_redis(tmp_path, monkeypatch):
    """A Redis of this test's own (the embedded one, in a temporary folder), used by the API."""
    monkeypatch.setattr(embedded, "REDIS_DIR", tmp_path / "redis")
    kv.reset(embedded.redis_url())
    yield
    embedded.stop_redis()
    kv.reset(os.environ["REDIS_URL"])


def _heartbeat_from_worker():
    from models.core.probes import beat_heartbeat_age as heartbeat_age
    from tasks.maintenance import heartbeat

    heartbeat.delay()
    wait_for(lambda: heartbeat_age() is not None, timeout=30)


@pytest.mark.worker
def test_ready_when_everything_answers(client, celery_worker_thread):
    _heartbeat_from_worker()
    response = client.get("/api/health/ready")
    assert response.status_code == 200, response.json
    checks = response.json["checks"]
    assert set(checks) == {"database", "redis", "worker", "beat"}
    assert all(check["ok"] for check in checks.values())
    assert response.json["status"] == "ok"


def test_not_ready_without_heartbeat(client):
    response = client.get("/api/health/ready")
    assert response.status_code == 503
    assert response.json["checks"]["beat"]["ok"] is False
    assert "heartbeat" in response.json["checks"]["beat"]["detail"]


def test_stale_heartbeat_is_not_ready(client):
    import time

    from models.core.probes import HEARTBEAT_KEY
    from settings import settings

    kv.get_redis().set(HEARTBEAT_KEY, str(time.time() - settings.BEAT_HEARTBEAT_MAX_AGE - 5))
    response = client.get("/api/health/ready")
    assert response.status_code == 503
    assert "ago" in response.json["checks"]["beat"]["detail"]


@pytest.mark.worker
def test_readiness_follows_redis_down_and_back(client, own_redis, celery_worker_thread):
    _heartbeat_from_worker()
    assert client.get("/api/health/ready").status_code == 200

    embedded.stop_redis()
    down = client.get("/api/health/ready")
    assert down.status_code == 503
    checks = down.json["checks"]
    assert checks["database"]["ok"] is True
    assert checks["redis"]["ok"] is False
    assert checks["worker"]["ok"] is False and checks["beat"]["ok"] is False
    # Liveness does not depend on Redis.
    assert client.get("/api/health").status_code == 200

    # Started again in the same folder: the append-only file is replayed, so beat's heartbeat
    # written before the outage is still there.
    kv.reset(embedded.redis_url())
    back = wait_for(lambda: (r := client.get("/api/health/ready")).status_code == 200 and r, timeout=30)
    assert all(check["ok"] for check in back.json["checks"].values())
