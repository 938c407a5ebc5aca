"""Live operational state, read on demand: the metrics collector and the alert rules both call these.

Each probe is one cheap read (an index-backed query, a few Redis commands) and raises when its
service is unreachable; callers decide what a failure means. Database probes use their own short
connection, never the caller's session, and see committed data only.
"""
from __future__ import annotations

import json
import time

import redis

from models.core import broker
from models.core.redis import get_redis, key

QUEUES = ("light", "heavy")

# kombu's Redis transport keeps one list per queue and priority step: the queue name for priority 0
# and "<queue>\x06\x16<step>" for the others. It publishes with LPUSH and consumes with (B)RPOP, so
# the right end (index -1) of each list holds its oldest message.
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_PRIORITY_SEP = "\x06\x16"

# Message header stamped on every task at publish time (tasks/signals.py).
ENQUEUED_AT_HEADER = "enqueued_at"

HEARTBEAT_KEY = key("beat", "heartbeat")  # written by the maintenance.heartbeat task

# API request counts, one hash per minute: fields "total" and "5xx" (api/metrics.py writes them).
HTTP_BUCKET_SECONDS = 60
HTTP_BUCKET_TTL_SECONDS = 3900  # room for any window up to an hour


# Finished Celery tasks (tasks/signals.py writes them): hashes keyed "<task>|<outcome>", and for
# the duration histogram "<task>|<outcome>|<upper bound>" counting each task in its one bucket.
TASK_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def http_bucket_key(minute: int) -> str:
    return key("metrics", "http", minute)


def task_stats_keys() -> tuple[str, str, str]:
    return key("metrics", "tasks", "count"), key("metrics", "tasks", "seconds"), key("metrics", "tasks", "buckets")


def queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEP}{step}" for step in KOMBU_PRIORITY_STEPS]


_broker: tuple[str, redis.Redis] | None = None


def broker_redis() -> redis.Redis:
    """The broker's Redis: the shared client when the broker is the application Redis."""
    global _broker
    from models.core.redis import redis_url

    url = broker.broker_url()
    if url == redis_url():
        return get_redis()
    if _broker is None or _broker[0] != url:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0, decode_responses=True)
        _broker = (url, client)
    return _broker[1]


def queue_depths(queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
    """Messages waiting in each Celery queue (all priority sub-lists), not counting those a worker holds."""
    if not broker.is_redis():
        return broker.amqp_queue_lengths(queues)
    with broker_redis().pipeline(transaction=False) as pipe:
        for queue in queues:
            for name in queue_keys(queue):
                pipe.llen(name)
        lengths = pipe.execute()
    steps = len(KOMBU_PRIORITY_STEPS)
    return {queue: sum(lengths[i * steps:(i + 1) * steps]) for i, queue in enumerate(queues)}


def _enqueued_at(raw: str | bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(ENQUEUED_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def oldest_queued_age_seconds(queues: tuple[str, ...] = QUEUES) -> dict[str, float | None]:
    """Age of the oldest waiting message per queue; None when the queue is empty (or its oldest
    message predates the enqueue stamp). Empty on RabbitMQ, which cannot show a message without
    delivering it: the age is not known there (the metric and the alert rule are left out)."""
    if not broker.is_redis():
        return {}
    with broker_redis().pipeline(transaction=False) as pipe:
        for queue in queues:
            for name in queue_keys(queue):
                pipe.lindex(name, -1)
        tails = pipe.execute()
    now = time.time()
    steps = len(KOMBU_PRIORITY_STEPS)
    ages: dict[str, float | None] = {}
    for i, queue in enumerate(queues):
        stamps = [s for s in (_enqueued_at(raw) for raw in tails[i * steps:(i + 1) * steps]) if s is not None]
        ages[queue] = max(now - min(stamps), 0.0) if stamps else None
    return ages


def _scalar(sql: str):
    from sqlalchemy import text  # here: beat and Flower import this module (task stamps), no database

    from models.core.db import get_engine

    with get_engine().connect() as conn:
        return conn.execute(text(sql)).scalar()


def inbox_lag_seconds() -> float | None:
    """How long the oldest still-pending Mango delivery has waited; None when nothing is pending."""
    value = _scalar(
        "SELECT EXTRACT(EPOCH FROM clock_timestamp() - min(received_at)) FROM mango_events WHERE status = 'pending'"
    )
    return None if value is None else max(float(value), 0.0)


def pending_files() -> int:
    """Uploads still waiting for validation."""
    return int(_scalar("SELECT count(*) FROM files WHERE status = 'pending'"))


def unmatched_recordings() -> int:
    """Call recordings not (yet) linked to a call or request: unmatched or ambiguous."""
    return int(_scalar("SELECT count(*) FROM recordings WHERE match_status <> 'matched'"))


def beat_heartbeat_age() -> float | None:
    """Seconds since beat's last heartbeat task ran; None when there never was one."""
    raw = get_redis().get(HEARTBEAT_KEY)
    return None if raw is None else max(time.time() - float(raw), 0.0)


def http_error_ratio(window_seconds: int = 300) -> tuple[int, int]:
    """(requests, 5xx responses) answered by every API process on every host in the last window.

    Counted per whole minute: the window covers the minute buckets that overlap it, so it may
    reach up to a minute further back. API processes flush their counts every few seconds.
    """
    now = int(time.time())
    now_minute = now // HTTP_BUCKET_SECONDS
    first = (now - window_seconds) // HTTP_BUCKET_SECONDS
    with get_redis().pipeline(transaction=False) as pipe:
        for minute in range(first, now_minute + 1):
            pipe.hmget(http_bucket_key(minute), "total", "5xx")
        buckets = pipe.execute()
    total = sum(int(t or 0) for t, _ in buckets)
    errors = sum(int(e or 0) for _, e in buckets)
    return total, errors


def db_connections() -> tuple[int, int]:
    """(client connections open on the server, max_connections). Idle connections hold a slot too."""
    from sqlalchemy import text

    from models.core.db import get_engine

    with get_engine().connect() as conn:
        used = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
        used_count = int(used.scalar())
        maximum = int(conn.execute(text("SHOW max_connections")).scalar())
    return used_count, maximum


def redis_memory() -> dict:
    """used_memory and maxmemory (bytes; maxmemory 0 = no limit), keyspace_hits and keyspace_misses."""
    client = get_redis()
    memory = client.info("memory")
    stats = client.info("stats")
    return {
        "used_memory": int(memory.get("used_memory", 0)),
        "maxmemory": int(memory.get("maxmemory", 0)),
        "keyspace_hits": int(stats.get("keyspace_hits", 0)),
        "keyspace_misses": int(stats.get("keyspace_misses", 0)),
    }


def task_stats() -> dict[tuple[str, str], dict]:
    """Finished tasks by (task, outcome): {"count", "sum" (seconds), "buckets": {upper bound: count}}
    with per-bucket counts (not cumulative); the bound is a float or "+Inf"."""
    counts_key, sums_key, buckets_key = task_stats_keys()
    with get_redis().pipeline(transaction=False) as pipe:
        pipe.hgetall(counts_key)
        pipe.hgetall(sums_key)
        pipe.hgetall(buckets_key)
        counts, sums, buckets = pipe.execute()
    stats: dict[tuple[str, str], dict] = {}
    for field, count in counts.items():
        name, _, outcome = field.rpartition("|")
        stats[(name, outcome)] = {"count": int(count), "sum": float(sums.get(field, 0)), "buckets": {}}
    for field, count in buckets.items():
        head, _, bound = field.rpartition("|")
        name, _, outcome = head.rpartition("|")
        entry = stats.get((name, outcome))
        if entry is not None:
            entry["buckets"][bound if bound == "+Inf" else float(bound)] = int(count)
    return stats
