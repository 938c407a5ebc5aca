"""Prometheus metrics at `/metrics` (not under /api), correct under several gunicorn workers.

Three sources, one scrape:
- HTTP requests, latency and exceptions of this API, by prometheus-flask-exporter, plus the DB pool
  gauges; with PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it) every worker process writes
  them to files there and the scrape sums all processes.
- Live state read at scrape time by `LiveStateCollector` (queues, inbox lag, pending files,
  unmatched recordings, beat, PostgreSQL connections, Redis memory, business figures of the day),
  cached a few seconds per process so frequent scrapes cost little.
- Celery task counts and durations, which workers on any host record in Redis (tasks/signals.py).

Access: with METRICS_TOKEN set, a request needs `Authorization: Bearer <token>`. Without it, only
direct (not proxied) clients from METRICS_ALLOWED_NETWORKS are answered; everyone else gets 404.

Request counts for the 5xx-ratio alert (models/probes.http_error_ratio) are kept in memory per
process and flushed to Redis by a background thread every few seconds, in one pipelined call.
"""
from __future__ import annotations

import atexit
import hmac
import ipaddress
import logging
import os
import threading
import time
from typing import Callable, Iterable

from flask import Flask, Response, abort, request
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_flask_exporter import PrometheusMetrics

from models.core import probes
from settings import settings

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
LIVE_CACHE_SECONDS = 5.0
BUSINESS_CACHE_SECONDS = 30.0
HTTP_FLUSH_SECONDS = 2.0
HTTP_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# ---- DB pool of this process (API): updated by pool events, summed over live processes ----------

DB_POOL_CHECKED_OUT = Gauge(
    "leadline_db_pool_checked_out", "Database connections checked out of the API processes' pools",
    registry=None, multiprocess_mode="livesum",
)
DB_POOL_LIMIT = Gauge(
    "leadline_db_pool_limit", "Connections the API processes' pools may open (pool_size + max_overflow)",
    registry=None, multiprocess_mode="livesum",
)
_pool_events_installed = False


def _install_pool_events() -> None:
    global _pool_events_installed
    if _pool_events_installed:
        return
    _pool_events_installed = True
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    event.listen(Pool, "checkout", lambda *_args: DB_POOL_CHECKED_OUT.inc())
    event.listen(Pool, "checkin", lambda *_args: DB_POOL_CHECKED_OUT.dec())

    from models.core.db import get_engine

    pool = get_engine().pool
    size = getattr(pool, "size", lambda: 0)()
    overflow = getattr(pool, "_max_overflow", 0)
    DB_POOL_LIMIT.set(size + max(overflow, 0))


# ---- HTTP request counts shared with the alert rules ----------------------------------------------

class HttpCounts:
    """Per-process request and 5xx counts per minute, flushed to Redis in the background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # an exit-time flush waits for one in flight
        self._pending: dict[int, list[int]] = {}
        self._pid: int | None = None
        self._wake = threading.Event()

    def add(self, status: int) -> None:
        minute = int(time.time()) // probes.HTTP_BUCKET_SECONDS
        with self._lock:
            counts = self._pending.get(minute)
            if counts is None:
                counts = self._pending[minute] = [0, 0]
            counts[0] += 1
            if status >= 500:
                counts[1] += 1
            if self._pid != os.getpid():  # first request of this (possibly forked) process
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="http-counts-flush", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait(HTTP_FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        from models.core.redis import get_redis

        try:
            with get_redis().pipeline(transaction=False) as pipe:
                for minute, (total, errors) in pending.items():
                    name = probes.http_bucket_key(minute)
                    pipe.hincrby(name, "total", total)
                    if errors:
                        pipe.hincrby(name, "5xx", errors)
                    pipe.expire(name, probes.HTTP_BUCKET_TTL_SECONDS)
                pipe.execute()
        except Exception as exc:  # noqa: BLE001 - keep the counts for the next try
            oldest_kept = int(time.time()) // probes.HTTP_BUCKET_SECONDS - 60
            with self._lock:
                for minute, (total, errors) in pending.items():
                    if minute >= oldest_kept:
                        counts = self._pending.setdefault(minute, [0, 0])
                        counts[0] += total
                        counts[1] += errors
            log.warning("request counts not flushed: %s", type(exc).__name__)


http_counts = HttpCounts()
atexit.register(http_counts.flush)


# ---- live state, read at scrape time ----------------------------------------------------------

class _Cached:
    def __init__(self, seconds: float, build: Callable[[], list]) -> None:
        self.seconds, self.build = seconds, build
        self._lock = threading.Lock()
        self._value: list = []
        self._expires = 0.0

    def reset(self) -> None:
        with self._lock:
            self._expires = 0.0

    def get(self) -> list:
        with self._lock:
            if time.monotonic() >= self._expires:
                self._value = self.build()
                self._expires = time.monotonic() + self.seconds
            return self._value


def _gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    if value is not None:
        family.add_metric(list((labels or {}).values()), value)
    return family


def _live_families() -> list:
    families: list = []
    probe_ok = GaugeMetricFamily("leadline_probe_success", "1 when the probe could read its source", labels=["probe"])

    def run(name: str, build: Callable[[], Iterable]) -> None:
        try:
            families.extend(build())
            probe_ok.add_metric([name], 1)
        except Exception as exc:  # noqa: BLE001 - one unreachable source must not empty the scrape
            probe_ok.add_metric([name], 0)
            log.warning("metrics probe %s failed: %s", name, type(exc).__name__)

    def queues() -> list:
        depth = GaugeMetricFamily("leadline_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
        for queue, size in probes.queue_depths().items():
            depth.add_metric([queue], size)
        age = GaugeMetricFamily(
            "leadline_queue_oldest_age_seconds", "Age of the oldest waiting message (0 when empty)", labels=["queue"]
        )
        for queue, seconds in probes.oldest_queued_age_seconds().items():
            age.add_metric([queue], seconds or 0.0)
        return [depth, age]

    def inbox() -> list:
        lag = probes.inbox_lag_seconds()
        return [_gauge("leadline_inbox_lag_seconds", "Age of the oldest unprocessed Mango delivery (0 when none)",
                       lag or 0.0)]

    def files() -> list:
        return [_gauge("leadline_files_pending", "Uploads waiting for validation", probes.pending_files())]

    def recordings() -> list:
        return [_gauge("leadline_recordings_unmatched", "Call recordings not linked to a call or request",
                       probes.unmatched_recordings())]

    def beat() -> list:
        age = probes.beat_heartbeat_age()
        return [_gauge("leadline_beat_heartbeat_age_seconds", "Seconds since beat's last heartbeat (+Inf: never)",
                       float("inf") if age is None else age)]

    def database() -> list:
        used, maximum = probes.db_connections()
        return [
            _gauge("leadline_db_connections_in_use", "Client connections open on the PostgreSQL server", used),
            _gauge("leadline_db_connections_max", "PostgreSQL max_connections", maximum),
        ]

    def redis_memory() -> list:
        info = probes.redis_memory()
        hits, misses = info["keyspace_hits"], info["keyspace_misses"]
        hit_counter = CounterMetricFamily("leadline_redis_keyspace_hits", "Redis key lookups that found the key")
        hit_counter.add_metric([], hits)
        miss_counter = CounterMetricFamily("leadline_redis_keyspace_misses", "Redis key lookups that missed")
        miss_counter.add_metric([], misses)
        return [
            _gauge("leadline_redis_memory_used_bytes", "Memory used by Redis", info["used_memory"]),
            _gauge("leadline_redis_memory_max_bytes", "Redis maxmemory (0: no limit)", info["maxmemory"]),
            hit_counter,
            miss_counter,
            _gauge("leadline_redis_keyspace_hit_ratio", "Hits / lookups since Redis started",
                   hits / (hits + misses) if hits + misses else None),
        ]

    def tasks() -> list:
        return _task_families(probes.task_stats())

    def callbacks() -> list:
        return _callback_families()

    for name, build in (("queues", queues), ("inbox", inbox), ("files", files), ("recordings", recordings),
                        ("beat", beat), ("database", database), ("redis", redis_memory), ("tasks", tasks),
                        ("callbacks", callbacks)):
        run(name, build)
    families.append(probe_ok)
    return families


def _task_families(stats: dict) -> list:
    count = CounterMetricFamily("leadline_celery_tasks", "Celery tasks finished, by task and outcome",
                                labels=["task", "outcome"])
    duration = HistogramMetricFamily("leadline_celery_task_duration_seconds", "Celery task run time",
                                     labels=["task", "outcome"])
    for (name, outcome), entry in sorted(stats.items()):
        count.add_metric([name, outcome], entry["count"])
        cumulative, buckets = 0, []
        for bound in probes.TASK_DURATION_BUCKETS:
            cumulative += entry["buckets"].get(bound, 0)
            buckets.append((repr(float(bound)), cumulative))
        observed = sum(entry["buckets"].values())  # a task killed from outside has no duration
        if observed:
            buckets.append(("+Inf", observed))
            duration.add_metric([name, outcome], buckets, entry["sum"])
    return [count, duration]


def _callback_families() -> list:
    """The callback queue: open and overdue items, and the time from the first missed call to the
    callback (or the answered call) of every item done, as a histogram read from the table."""
    from models.callbacks import rules as callback_rules
    from models.core.db import get_engine

    with get_engine().connect() as conn:
        figures = callback_rules.figures(conn)
    histogram = HistogramMetricFamily("leadline_callback_time_to_callback_seconds",
                                      "From the first missed call to the callback, items done")
    buckets = [(repr(float(bound)), count) for bound, count in figures["buckets"]]
    histogram.add_metric([], [*buckets, ("+Inf", figures["count"])], figures["sum"])
    return [
        _gauge("leadline_callbacks_open", "Missed callers waiting for a callback", figures["open"]),
        _gauge("leadline_callbacks_overdue", "Open callbacks past their due time (CALLBACK_SLA_MIN)",
               figures["overdue"]),
        histogram,
    ]


def _business_families() -> list:
    """Today's figures (business time zone) from index-backed range queries: requests created by
    source, calls by direction, income booked. Gauges that restart at local midnight."""
    from sqlalchemy import text

    from models.core.db import get_engine
    from models.core.enums import TRANSACTION_TYPE_INCOME

    requests = GaugeMetricFamily("leadline_requests_today", "Requests created today, by source", labels=["source"])
    calls = GaugeMetricFamily("leadline_calls_today", "Calls started today, by direction", labels=["direction"])
    tz = settings.BUSINESS_TZ
    with get_engine().connect() as conn:
        midnight = conn.execute(
            text("SELECT (date_trunc('day', now() AT TIME ZONE :tz)) AT TIME ZONE :tz"), {"tz": tz}
        ).scalar()
        for source, n in conn.execute(
            text(
                "SELECT e.source, count(*) FROM requests r JOIN request_events e"
                " ON e.request_id = r.id AND e.action = 'created' WHERE r.created_at >= :t GROUP BY e.source"
            ),
            {"t": midnight},
        ):
            requests.add_metric([source], n)
        for direction, n in conn.execute(
            text("SELECT direction, count(*) FROM calls WHERE started_at >= :t GROUP BY direction"), {"t": midnight}
        ):
            calls.add_metric([direction], n)
        income = conn.execute(
            text(
                "SELECT coalesce(sum(t.amount), 0) FROM transactions t JOIN transaction_types tt"
                " ON tt.id = t.transaction_type_id WHERE tt.name = :income"
                " AND t.specified_date = (now() AT TIME ZONE :tz)::date"
            ),
            {"income": TRANSACTION_TYPE_INCOME, "tz": tz},
        ).scalar()
    return [requests, calls, _gauge("leadline_income_today_rubles", "Income booked today in the cash book",
                                    float(income))]


class LiveStateCollector(Collector):
    def __init__(self) -> None:
        self._live = _Cached(LIVE_CACHE_SECONDS, _live_families)
        self._business = _Cached(BUSINESS_CACHE_SECONDS, self._safe_business)

    @staticmethod
    def _safe_business() -> list:
        try:
            return _business_families()
        except Exception as exc:  # noqa: BLE001
            log.warning("business metrics failed: %s", type(exc).__name__)
            return []

    def reset(self) -> None:
        """Forget the cached values: the next scrape reads every source."""
        self._live.reset()
        self._business.reset()

    def collect(self):
        yield from self._live.get()
        yield from self._business.get()

    def describe(self):
        return []  # computed at scrape time; nothing to check at registration


live_state = LiveStateCollector()


# ---- access -------------------------------------------------------------------------------------

PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


def metrics_access_allowed() -> bool:
    if settings.METRICS_TOKEN:
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        return hmac.compare_digest(given.encode(), settings.METRICS_TOKEN.encode())
    if any(request.environ.get(name) for name in PROXY_HEADERS):
        return False  # came through a proxy: a public request, whatever address the proxy has
    try:
        address = ipaddress.ip_address(request.environ.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    return any(address in network for network in allowed_networks())


_networks: list | None = None


def allowed_networks() -> list:
    global _networks
    if _networks is None:
        _networks = [ipaddress.ip_network(entry, strict=False) for entry in settings.metrics_allowed_networks]
    return _networks


# ---- wiring -------------------------------------------------------------------------------------

def init_metrics(app: Flask) -> None:
    registry = CollectorRegistry(auto_describe=True)
    PrometheusMetrics(
        app,
        path=None,
        registry=registry,
        group_by="url_rule",
        defaults_prefix="flask",
        buckets=HTTP_LATENCY_BUCKETS,
        excluded_paths=[f"^{METRICS_PATH}$"],
    )
    if not multiprocess_dir():
        registry.register(DB_POOL_CHECKED_OUT)
        registry.register(DB_POOL_LIMIT)
    _install_pool_events()

    def scrape() -> Response:
        if not metrics_access_allowed():
            abort(404)
        if multiprocess_dir():
            target = CollectorRegistry()
            MultiProcessCollector(target)
        else:
            target = registry
        body = generate_latest(target)
        body += generate_latest(_live_registry)
        return Response(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)

    scrape._leadline_public = True  # noqa: SLF001 - outside /api; its own access rule above
    app.add_url_rule(METRICS_PATH, endpoint="metrics", view_func=scrape, methods=["GET"])


_live_registry = CollectorRegistry(auto_describe=False)
_live_registry.register(live_state)
