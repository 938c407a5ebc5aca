"""/metrics: every named series after real traffic, access rules, and gunicorn with two workers."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

import embedded
from models.core import probes
from models.core.broker import is_redis
from models.core.db import get_engine
from tests.factories import create_user
from tests.support import SPA, login, stop_process_group, wait_for

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def samples(body: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(series: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in series, f"{name}{labels} missing; have {sorted(k for k in series if k[0] == name)}"
    return series[key]


def scrape(client, **kwargs) -> dict:
    from api.metrics import live_state

    live_state.reset()  # what the next scrape after the cache time would show
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.data[:500]
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


def _execute(sql: str, **params) -> None:
    with get_engine().begin() as conn:
        conn.execute(text(sql), params)


@pytest.mark.worker
def test_metrics_show_every_series_after_api_and_worker_traffic(app, committed, celery_worker_thread):
    from models import City
    from tasks.maintenance import heartbeat

    admin = create_user("admin")
    city = City(name="Метрикск")
    committed.add(city)
    committed.commit()
    client = app.test_client()
    login(client, admin)

    created = client.post("/api/requests/", json={"client_phone": "+7 (999) 765-43-21", "client_name": "Пётр",
                                                  "city_id": city.id}, headers=SPA)
    assert created.status_code == 201, created.json
    accepted = client.post("/api/jobs/ping", headers=SPA)
    assert accepted.status_code == 202
    job_id = accepted.json["job_id"]
    wait_for(lambda: client.get(f"/api/jobs/{job_id}").json["status"] == "succeeded")
    wait_for(lambda: probes.task_stats().get(("jobs.ping", "success")))

    now = datetime.now(timezone.utc)
    _execute("INSERT INTO mango_events (dedupe_key, event_type, status, received_at) VALUES ('m1', 'call', "
             "'pending', :t)", t=now - timedelta(seconds=45))
    _execute("INSERT INTO files (kind, original_name, status) VALUES ('bso', 'a.pdf', 'pending')")
    _execute("INSERT INTO recordings (source, sha256, storage_path, size_bytes) VALUES ('imap', :h, 'r/1.mp3', 1)",
             h="a" * 64)
    heartbeat()

    series = scrape(client)

    # HTTP, from prometheus-flask-exporter
    assert value(series, "flask_http_request_total", method="POST", status="201") >= 1
    assert value(series, "flask_http_request_total", method="POST", status="202") >= 1
    assert value(series, "flask_http_request_duration_seconds_count",
                 method="POST", url_rule="/api/jobs/ping", status="202") >= 1
    # Celery tasks, recorded by the worker in Redis
    assert value(series, "leadline_celery_tasks_total", task="jobs.ping", outcome="success") >= 1
    count = value(series, "leadline_celery_task_duration_seconds_count", task="jobs.ping", outcome="success")
    assert count >= 1
    assert value(series, "leadline_celery_task_duration_seconds_bucket",
                 task="jobs.ping", outcome="success", le="+Inf") == count
    assert 0 < value(series, "leadline_celery_task_duration_seconds_sum", task="jobs.ping", outcome="success") < 30
    # live state
    for queue in ("light", "heavy"):
        assert value(series, "leadline_queue_depth", queue=queue) >= 0
        if is_redis():
            assert value(series, "leadline_queue_oldest_age_seconds", queue=queue) >= 0
        else:  # RabbitMQ does not show a waiting message: its age is not known, so not reported
            assert not [name for name, _ in series if name == "leadline_queue_oldest_age_seconds"]
    assert 45 <= value(series, "leadline_inbox_lag_seconds") < 3600
    assert value(series, "leadline_files_pending") == 1
    assert value(series, "leadline_recordings_unmatched") == 1
    assert 0 <= value(series, "leadline_beat_heartbeat_age_seconds") < 60
    in_use, maximum = value(series, "leadline_db_connections_in_use"), value(series, "leadline_db_connections_max")
    assert 1 <= in_use <= maximum
    assert value(series, "leadline_db_pool_limit") >= 1
    assert 0 <= value(series, "leadline_db_pool_checked_out") <= value(series, "leadline_db_pool_limit")
    assert value(series, "leadline_redis_memory_used_bytes") > 0
    assert value(series, "leadline_redis_memory_max_bytes") >= 0
    assert value(series, "leadline_redis_keyspace_hits_total") > 0
    assert value(series, "leadline_redis_keyspace_misses_total") >= 0
    assert 0 < value(series, "leadline_redis_keyspace_hit_ratio") <= 1
    for probe in ("queues", "inbox", "files", "recordings", "beat", "database", "redis", "tasks"):
        assert value(series, "leadline_probe_success", probe=probe) == 1
    # business figures of the day
    assert value(series, "leadline_requests_today", source="api") == 1
    assert value(series, "leadline_income_today_rubles") == 0


@pytest.mark.worker
def test_a_failing_task_is_counted_as_a_failure(app, celery_worker_thread):
    from tasks.celery_app import celery_app

    celery_app.send_task("jobs.ping", args=[], queue="light")  # missing its argument: fails when run
    wait_for(lambda: probes.task_stats().get(("jobs.ping", "failure")))
    series = scrape(app.test_client())
    assert value(series, "leadline_celery_tasks_total", task="jobs.ping", outcome="failure") == 1
    assert value(series, "leadline_celery_task_duration_seconds_count", task="jobs.ping", outcome="failure") == 1


def test_scrapes_are_cached_briefly(app, committed):
    """Two scrapes in a row read the database once: the second shows the cached figure."""
    from api.metrics import live_state

    client = app.test_client()
    live_state.reset()
    first = samples(client.get("/metrics").get_data(as_text=True))
    _execute("INSERT INTO files (kind, original_name, status) VALUES ('bso', 'b.pdf', 'pending')")
    second = samples(client.get("/metrics").get_data(as_text=True))
    assert value(first, "leadline_files_pending") == value(second, "leadline_files_pending") == 0
    assert value(scrape(client), "leadline_files_pending") == 1


def test_metrics_are_not_served_to_public_or_proxied_clients(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # loopback, direct
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics", headers={"X-Real-IP": "10.0.0.1"}).status_code == 404
    assert client.get("/api/metrics").status_code == 404


def test_metrics_token_replaces_the_network_rule(app, monkeypatch):
    import api.metrics as metrics

    monkeypatch.setattr(metrics, "settings", dataclasses.replace(metrics.settings, METRICS_TOKEN="scrape-token-1"))
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    public = {"REMOTE_ADDR": "203.0.113.9"}
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-1"}, environ_base=public)
    assert ok.status_code == 200
    assert b"leadline_queue_depth" in ok.data


# ---- gunicorn, two workers ------------------------------------------------------------------------

@pytest.fixture()
def gunicorn_api(tmp_path):
    port = embedded.free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"stale")  # left by a previous run: must be removed
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(multiproc), PYTHONPATH=str(REPO), LOG_LEVEL="WARNING")
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         # each worker is replaced after 10 requests: many processes serve, and the dead ones'
         # counts must still be in the sum
         "--max-requests", "10", "--max-requests-jitter", "0", "api:create_app()"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return requests.get(base + "/metrics", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(answers, timeout=60, interval=0.2)
        yield base, multiproc
    finally:
        stop_process_group(server)
        log.close()


def test_two_gunicorn_workers_report_the_sum_of_their_counts(gunicorn_api):
    from api.metrics import http_counts
    from models.core.redis import get_redis

    base, multiproc = gunicorn_api
    assert not (multiproc / "counter_999999.db").exists()
    # Requests earlier tests made through this process's app are flushed now, not into this count.
    http_counts.flush()
    for name in get_redis().scan_iter(match=probes.http_bucket_key("*")):
        get_redis().delete(name)

    def call(_):
        with requests.Session() as session:  # a fresh connection each time: any worker may take it
            return session.get(base + "/api/auth/me", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(call, range(40)))
    assert statuses == [401] * 40

    counter_files = list(multiproc.glob("counter_*.db"))
    assert len(counter_files) >= 2  # several processes wrote counts

    body = requests.get(base + "/metrics", timeout=10)
    assert body.status_code == 200
    series = samples(body.text)
    assert value(series, "flask_http_request_total", method="GET", status="401") == 40
    assert value(series, "flask_http_request_duration_seconds_count",
                 method="GET", url_rule="/api/auth/me", status="401") == 40
    assert "leadline_queue_depth" in {name for name, _ in series}
    # the alert rules' view: every process flushed its counts to Redis
    wait_for(lambda: probes.http_error_ratio(300) == (40, 0), timeout=30)
