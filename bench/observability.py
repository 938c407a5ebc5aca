"""Cost of the observability layers per API request, and of one /metrics scrape.

    python -m bench.observability --database-url postgresql://postgres@127.0.0.1:5432/leadline_bench_obs \
        --redis-url redis://127.0.0.1:6379/13

In one process, through the WSGI stack (Flask's test client, no network): the mean time of a call
with everything on (request id, access log, security log for a 401, prometheus-flask-exporter,
request counts for the alert rules) and with those layers taken off the same app, for a refused call
(401: access and security log lines) and a quiet one (/api/health: no INFO line). Log output goes to
/dev/null through the production JSON handler. Then the time of a /metrics scrape with the live-state
cache cold (every probe reads PostgreSQL and Redis) and warm. The database is migrated to head.
Only 127.0.0.1 is contacted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/leadline_bench_obs")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    os.environ.update(APP_ENV="test", DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, LOG_JSON="true")
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-that-is-long-enough-for-hs256")
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

    import logging

    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(args.database_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{url.database}"')
    from models.core import migrate

    migrate.upgrade(args.database_url)

    from api import create_app
    from api.metrics import live_state
    from logconfig import build_handler

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(build_handler(open(os.devnull, "w"), json_format=True))
    root.setLevel(logging.INFO)

    app = create_app({"RATELIMIT_ENABLED": False})
    client = app.test_client()

    def per_call(path: str) -> float:
        for _ in range(200):
            client.get(path)
        started = time.perf_counter()
        for _ in range(args.calls):
            client.get(path)
        return (time.perf_counter() - started) / args.calls * 1e6

    with_layers = {path: per_call(path) for path in ("/api/directories/cities", "/api/health")}

    app.wsgi_app = app.wsgi_app.wsgi_app  # the RequestContext layer off
    for hooks in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        hooks[None] = [f for f in hooks.get(None, []) if "prometheus" not in f.__module__
                       and f.__name__ != "security_events"]
    without = {path: per_call(path) for path in with_layers}
    for path in with_layers:
        print(f"{path:<26} {with_layers[path]:7.0f} us per call with observability, {without[path]:7.0f} us "
              f"without: +{with_layers[path] - without[path]:.0f} us")

    app = create_app({"RATELIMIT_ENABLED": False})
    client = app.test_client()
    cold, warm = [], []
    for _ in range(20):
        live_state.reset()
        started = time.perf_counter()
        client.get("/metrics")
        cold.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.get("/metrics")
        warm.append((time.perf_counter() - started) * 1000)
    print(f"/metrics scrape: {statistics.median(cold):.1f} ms with every probe read, "
          f"{statistics.median(warm):.1f} ms from the cache (median of 20)")


if __name__ == "__main__":
    main()
