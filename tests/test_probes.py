"""Live-state probes (models/core/probes.py) against the real PostgreSQL, Redis and Celery broker."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from models.core import probes
from models.core.broker import is_redis
from models.core.db import get_engine
from models.core.redis import get_redis

# kombu's Redis lists and the enqueue stamp read in them: with the Redis broker only.
redis_broker_only = pytest.mark.skipif(not is_redis(),
                                       reason="reads kombu's Redis lists: the run's broker is RabbitMQ")


@pytest.fixture()
def scratch_queue():
    """A queue of its own, so a worker consuming light/heavy cannot take the test's messages."""
    name = f"probe-test-{uuid.uuid4().hex[:8]}"
    yield name
    get_redis().delete(*probes.queue_keys(name))


def _delete_queue(url: str, name: str) -> None:
    if is_redis(url):
        get_redis().delete(*probes.queue_keys(name))
        return
    from kombu import Connection

    with Connection(url) as connection:
        channel = connection.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


def publish(queue: str, **options) -> None:
    from tasks.celery_app import celery_app

    celery_app.send_task("jobs.ping", args=["00000000-0000-0000-0000-000000000000"], queue=queue, **options)


def test_queue_length_on_either_broker(broker):
    """What the metrics, the alert rules and the inbox sweeper read: messages waiting, on Redis and on
    RabbitMQ. The age of the oldest one is known on Redis only (RabbitMQ cannot show a message
    without delivering it): there it is left out, never reported as zero."""
    name = f"probe-test-{uuid.uuid4().hex[:8]}"
    try:
        assert probes.queue_depths((name,)) == {name: 0}  # not declared yet
        for _ in range(3):
            publish(name)
        assert probes.queue_depths((name,)) == {name: 3}
        ages = probes.oldest_queued_age_seconds((name,))
        if broker.kind == "redis":
            assert 0 <= ages[name] < 60
        else:
            assert ages == {}
    finally:
        _delete_queue(broker.url, name)


@redis_broker_only
def test_queue_depth_counts_every_priority_list_of_the_queue(scratch_queue):
    assert probes.queue_depths((scratch_queue,)) == {scratch_queue: 0}
    assert probes.oldest_queued_age_seconds((scratch_queue,)) == {scratch_queue: None}

    publish(scratch_queue)
    publish(scratch_queue)
    publish(scratch_queue, priority=9)  # kombu keeps it in the "<queue>\x06\x169" list

    assert get_redis().llen(scratch_queue) == 2
    assert probes.queue_depths((scratch_queue,)) == {scratch_queue: 3}


@redis_broker_only
def test_every_published_message_carries_its_enqueue_time(scratch_queue):
    before = time.time()
    publish(scratch_queue)
    after = time.time()
    message = json.loads(get_redis().lindex(scratch_queue, -1))
    assert before - 0.01 <= message["headers"]["enqueued_at"] <= after + 0.01


@redis_broker_only
def test_oldest_age_reads_the_message_consumed_next(scratch_queue):
    redis = get_redis()
    publish(scratch_queue)
    # Make the first message (right end of the list: consumed next) ten minutes old.
    oldest = json.loads(redis.lindex(scratch_queue, -1))
    oldest["headers"]["enqueued_at"] = time.time() - 600
    redis.lset(scratch_queue, -1, json.dumps(oldest))
    publish(scratch_queue)
    publish(scratch_queue, priority=6)

    age = probes.oldest_queued_age_seconds((scratch_queue,))[scratch_queue]
    assert 600 <= age < 900


def test_default_queues_are_light_and_heavy():
    assert set(probes.queue_depths()) == {"light", "heavy"}
    assert set(probes.oldest_queued_age_seconds()) == ({"light", "heavy"} if is_redis() else set())


def _execute(sql: str, **params) -> None:
    with get_engine().begin() as conn:
        conn.execute(text(sql), params)


def test_inbox_lag_is_the_age_of_the_oldest_pending_delivery(committed):
    assert probes.inbox_lag_seconds() is None
    now = datetime.now(timezone.utc)
    for i, (status, age) in enumerate([("processed", 3600), ("pending", 90), ("pending", 10), ("failed", 7200)]):
        _execute(
            "INSERT INTO mango_events (dedupe_key, event_type, status, received_at) VALUES (:k, 'call', :s, :t)",
            k=f"probe-{i}", s=status, t=now - timedelta(seconds=age),
        )
    lag = probes.inbox_lag_seconds()
    assert 90 <= lag < 3600


def test_pending_files_and_unmatched_recordings_count_only_their_state(committed):
    assert probes.pending_files() == 0
    assert probes.unmatched_recordings() == 0
    for i, status in enumerate(["pending", "pending", "ready", "rejected"]):
        _execute("INSERT INTO files (kind, original_name, status) VALUES ('bso', :n, :s)", n=f"f{i}.pdf", s=status)
    for i, status in enumerate(["unmatched", "ambiguous", "matched"]):
        _execute(
            "INSERT INTO recordings (source, sha256, storage_path, size_bytes, match_status)"
            " VALUES ('imap', :h, :p, 10, :s)",
            h=f"{i:064d}", p=f"zayvka/zapis/r{i}.mp3", s=status,
        )
    assert probes.pending_files() == 2
    assert probes.unmatched_recordings() == 2


def test_beat_heartbeat_age_follows_the_heartbeat_task():
    from tasks.maintenance import heartbeat

    assert probes.beat_heartbeat_age() is None
    heartbeat()  # the task's body, as beat's worker runs it
    age = probes.beat_heartbeat_age()
    assert 0 <= age < 60


def test_http_error_ratio_sums_what_the_api_answered(app):
    from flask import Flask

    from api import create_app
    from api.metrics import http_counts

    http_counts.flush()  # requests of earlier tests in this process are not part of this count
    for name in get_redis().scan_iter(match=probes.http_bucket_key("*")):
        get_redis().delete(name)
    failing: Flask = create_app({"RATELIMIT_ENABLED": False})

    def explode():
        raise RuntimeError("boom")

    failing.add_url_rule("/api/probe-test-explode", "probe_test_explode", explode)
    client = failing.test_client()
    for _ in range(3):
        assert client.get("/api/auth/me").status_code == 401
    for _ in range(2):
        assert client.get("/api/probe-test-explode").status_code == 500
    assert client.get("/api/health").status_code == 200  # probes are not counted
    http_counts.flush()

    assert probes.http_error_ratio(300) == (5, 2)
    assert probes.http_error_ratio(0)[0] <= 5


def test_db_connections_reports_server_slots():
    used, maximum = probes.db_connections()
    with get_engine().connect() as conn:
        configured = int(conn.execute(text("SHOW max_connections")).scalar())
    assert maximum == configured
    assert 1 <= used <= maximum


def test_redis_memory_and_hits():
    redis = get_redis()
    before = probes.redis_memory()
    redis.set("leadline:probe-test", "1")
    redis.get("leadline:probe-test")
    after = probes.redis_memory()
    assert after["used_memory"] > 0
    assert after["maxmemory"] >= 0
    assert after["keyspace_hits"] > before["keyspace_hits"]
    assert after["keyspace_misses"] >= before["keyspace_misses"]
