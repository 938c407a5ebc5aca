"""Liveness and readiness: database, Redis, a worker answering, beat's heartbeat."""
from __future__ import annotations

import os
import time

import pytest

import embedded
from models.core import redis as kv
from models.core.broker import is_redis
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
def test_ready_when_everything_answers(client, broker, broker_worker):
    _heartbeat_from_worker()
    response = wait_for(lambda: (r := client.get("/api/health/ready")).status_code == 200 and r, timeout=30)
    checks = response.json["checks"]
    # RabbitMQ is a check of its own; Redis is needed whichever the broker.
    assert set(checks) == {"database", "redis", "worker", "beat"} | ({"broker"} if broker.kind == "amqp" else set())
    assert all(check["ok"] for check in checks.values())
    assert response.json["status"] == "ok"
    if broker.kind == "amqp":
        assert checks["broker"]["detail"].startswith("RabbitMQ ")
    if broker.switched:
        assert broker_worker.name in checks["worker"]["detail"]


def test_not_ready_when_rabbitmq_is_down(client):
    """RabbitMQ as the broker and nothing answering at its address: 503 at once, the broker named, the
    workers not asked (they cannot be reached); Redis and beat's heartbeat are checked as always."""
    from models.core.probes import HEARTBEAT_KEY
    from tests.telephony_support import overridden

    kv.get_redis().set(HEARTBEAT_KEY, str(time.time()))
    with overridden(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{embedded.free_port()}//"):
        response = client.get("/api/health/ready")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["broker"]["ok"] is False and checks["broker"]["detail"]
    assert checks["worker"] == {"ok": False, "detail": "Брокер задач (RabbitMQ) недоступен", "ms": 0.0}
    assert checks["redis"]["ok"] is True and checks["beat"]["ok"] is True


def test_not_ready_without_heartbeat(client):
    response = client.get("/api/health/ready")
    assert response.status_code == 503
    assert response.json["checks"]["beat"]["ok"] is False
    assert "heartbeat" in response.json["checks"]["beat"]["detail"]


def test_stale_heartbeat_is_not_ready(client):
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
    assert checks["beat"]["ok"] is False
    assert checks["worker"]["ok"] is (not is_redis())  # RabbitMQ still reaches the workers
    # Liveness does not depend on Redis.
    assert client.get("/api/health").status_code == 200

    # Started again in the same folder: the append-only file is replayed, so beat's heartbeat
    # written before the outage is still there.
    kv.reset(embedded.redis_url())
    back = wait_for(lambda: (r := client.get("/api/health/ready")).status_code == 200 and r, timeout=30)
    assert all(check["ok"] for check in back.json["checks"].values())


# Generated passwords pasted into a URL without encoding: the drivers split them at the "@" or "/"
# and quote a piece in their error (a host name, a port).
DATABASE_PASSWORD = "Lm4kP9xW@2vB8Zq7nT"  # noqa: S105 - a test's made-up password
REDIS_PASSWORD = "Rt6yHn3Q/8cVx2Kp5w"  # noqa: S105


@pytest.fixture()
def unreachable_credentialed_services(monkeypatch):
    """Settings naming a PostgreSQL and a Redis with passwords, neither reachable (nothing listens
    on port 1); the API's clients rebuilt from them, and put back afterwards."""
    from models.core.db import configure
    from settings import settings

    saved = {name: getattr(settings, name) for name in ("DATABASE_URL", "REDIS_URL")}
    urls = {"DATABASE_URL": f"postgresql://leadline:{DATABASE_PASSWORD}@127.0.0.1:1/leadline",
            "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"}
    for name, url in urls.items():
        object.__setattr__(settings, name, url)
    configure(urls["DATABASE_URL"])
    monkeypatch.setattr(kv, "_client", None)  # the next get_redis() builds one from settings.REDIS_URL
    try:
        yield
    finally:
        for name, value in saved.items():
            object.__setattr__(settings, name, value)
        configure(os.environ["DATABASE_URL"])


def test_readiness_never_shows_a_password(client, unreachable_credentialed_services):
    response = client.get("/api/health/ready")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["database"]["ok"] is False and checks["redis"]["ok"] is False
    assert checks["database"]["detail"].startswith("OperationalError: ")
    assert checks["redis"]["detail"].startswith("ValueError: ")
    for piece in (*DATABASE_PASSWORD.split("@"), *REDIS_PASSWORD.split("/")):
        assert piece not in response.get_data(as_text=True)


@pytest.mark.parametrize("media", ["s3"], indirect=True)
def test_readiness_asks_the_s3_bucket_and_never_shows_its_keys(client, media, tmp_path):
    from embedded import free_port
    from storage import backend
    from storage.s3 import S3Storage

    storage = client.get("/api/health/ready").json["checks"]["storage"]
    assert storage["ok"] is True and storage["detail"] == f"bucket {media.bucket} answers"
    down = S3Storage(media.bucket, endpoint_url=f"http://127.0.0.1:{free_port()}", scratch_root=tmp_path,
                     access_key_id=media.access_key_id, secret_access_key=media.secret_access_key)
    backend.configure(down)
    try:
        response = client.get("/api/health/ready")
    finally:
        backend.configure(media)
    assert response.status_code == 503 and response.json["checks"]["storage"]["ok"] is False
    assert media.secret_access_key not in response.get_data(as_text=True)
