"""Shared fixtures: real PostgreSQL, real Redis, a real Celery worker.

PostgreSQL and Redis come from DATABASE_URL / REDIS_URL when set (CI points them at the machine's
services), otherwise from the embedded services under ./var. The URLs are settled here, before any
project module reads its settings. Embedded services the run starts are stopped when it ends
(passed, failed or interrupted); those it found running (a `make run` beside it) are left alone.
"""
from __future__ import annotations

import atexit
import os
import time
from typing import Callable, Iterator

import pytest

os.environ["APP_ENV"] = "test"
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-hs256-signing")
os.environ.setdefault("CORS_ORIGINS", "http://spa.test")

import embedded  # noqa: E402

TEST_DATABASE = "leadline_test"
STARTED_BY_TESTS: list[str] = []  # the embedded services this run started, to stop at its end


def _embedded(name: str, running: Callable[[], bool], start: Callable[[], str]) -> str:
    if not running():
        STARTED_BY_TESTS.append(name)  # before starting: a start that fails halfway is stopped too
    return start()


def stop_embedded_started_by_tests(run_pid: int = os.getpid()) -> None:
    """At the end of the run, whatever its outcome (atexit: after the session's teardown, also after
    a failed collection or a Ctrl-C): stop the embedded services the run started. Not in a process
    forked from the run, which would exit through here too."""
    if not STARTED_BY_TESTS or os.getpid() != run_pid:
        return
    print(f"\nleadline: stopping embedded {', '.join(STARTED_BY_TESTS)} started by the tests", flush=True)
    if "redis" in STARTED_BY_TESTS:
        embedded.stop_redis()
    if "postgres" in STARTED_BY_TESTS:
        embedded.stop_postgres()


atexit.register(stop_embedded_started_by_tests)


def _test_database_url() -> str:
    configured = os.environ.get("DATABASE_URL")
    if not configured:
        return _embedded("postgres", embedded.postgres_running, lambda: embedded.postgres_url(TEST_DATABASE))
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(configured)
    if not url.database or url.database in ("postgres", "template1"):
        url = url.set(database=TEST_DATABASE)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{url.database}"')
    return url.render_as_string(hide_password=False)


os.environ["DATABASE_URL"] = _test_database_url()
os.environ["REDIS_URL"] = os.environ.get("REDIS_URL") or _embedded(
    "redis", embedded.redis_running, lambda: embedded.redis_url(db=1))

import psycopg.errors  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from models import Base, Session  # noqa: E402
from models import migrate as migrations  # noqa: E402
from models.db import configure, get_engine  # noqa: E402
from models.kv import get_redis  # noqa: E402
from models.passwords import hash_password  # noqa: E402

# Lookups seeded by the migration survive the per-test cleanup of committed data.
SEEDED_TABLES = {"roles", "request_types", "transaction_types", "report_rollups"}
TEST_PASSWORD = "correct-horse-42"
_PASSWORD_HASH = hash_password(TEST_PASSWORD)


def clear_app_keys() -> None:
    """Remove the application's Redis keys (sessions, lockouts, limits, heartbeats) between tests.

    Broker keys (queues, bindings) are left alone: the worker thread depends on them.
    """
    redis = get_redis()
    for pattern in ("leadline:*",):
        keys = list(redis.scan_iter(match=pattern, count=500))
        if keys:
            redis.delete(*keys)


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[None]:
    """A fresh schema for the run, built by the migrations themselves."""
    url = os.environ["DATABASE_URL"]
    migrations.downgrade(url, "base")
    with configure(url).begin() as conn:  # tables left by anything else (e.g. a crashed run)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    migrations.upgrade(url)
    configure(url)
    yield
    Session.remove()
    get_engine().dispose()


@pytest.fixture(scope="session")
def app():
    from api import create_app

    flask_app = create_app({"TESTING": True, "RATELIMIT_ENABLED": False})
    return flask_app


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture(autouse=True)
def _clean_redis_keys() -> Iterator[None]:
    clear_app_keys()
    yield


@pytest.fixture()
def db(database) -> Iterator:
    """Each test inside a transaction that is rolled back; commits inside become savepoints."""
    connection = get_engine().connect()
    outer = connection.begin()
    Session.remove()
    Session.configure(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield Session
    finally:
        Session.remove()
        outer.rollback()
        connection.close()
        Session.configure(bind=get_engine(), join_transaction_mode="conditional_savepoint")


def truncate_committed_data(attempts: int = 5) -> None:
    """Empty every table but the lookups the migration seeds.

    TRUNCATE locks its tables one by one. A task of the session's worker that an earlier test
    queued for later (the recordings retry, debounced by a few seconds, writes recordings and then
    files) may write to two of them at that moment; PostgreSQL then ends one side as a deadlock.
    When it ends the TRUNCATE, the writer goes on and commits, and the TRUNCATE is simply run again.
    """
    Session.remove()
    tables = [t.name for t in Base.metadata.sorted_tables if t.name not in SEEDED_TABLES]
    for attempt in range(1, attempts + 1):
        try:
            with get_engine().begin() as conn:
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            return
        except OperationalError as exc:
            if attempt == attempts or not isinstance(exc.orig, psycopg.errors.DeadlockDetected):
                raise


@pytest.fixture()
def committed(database) -> Iterator:
    """For tests whose data another process or thread must see (the worker): real commits,
    then every non-seed table is emptied afterwards."""
    Session.remove()
    yield Session
    truncate_committed_data()


@pytest.fixture(scope="session")
def celery_worker_thread(database):
    """A real Celery worker consuming both queues from the real Redis, in a thread."""
    from celery.contrib.testing.worker import start_worker

    from tasks.celery_app import celery_app

    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        queues=["light", "heavy"],
        loglevel="WARNING",
        shutdown_timeout=30,
        without_heartbeat=False,
    ) as worker:
        yield worker


@pytest.fixture()
def media(tmp_path):
    """Media and quarantine roots of this test only."""
    from storage import backend

    store = backend.LocalStorage(tmp_path / "media", tmp_path / "quarantine")
    previous = backend.configure(store)
    yield store
    backend.configure(previous)


def stop_process_group(process, timeout: float = 30.0) -> None:
    """Stop a server the test started in its own process group: SIGTERM, then SIGKILL if it lingers."""
    import signal
    import subprocess

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def still_running(processes, timeout: float = 10.0) -> list:
    """Those of `processes` (psutil.Process) still running after up to `timeout` seconds. A zombie
    has ended: whoever adopted it (init) collects its exit status in its own time."""
    import psutil

    def running(process) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    while True:
        alive = [process for process in processes if running(process)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05):
    """Poll until predicate() is truthy; returns its value or fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


# ---- data factories -----------------------------------------------------------------------------

@pytest.fixture()
def make_city(db):
    from models import City

    counter = iter(range(1, 10_000))

    def make(name: str | None = None) -> City:
        city = City(name=name or f"Город {next(counter)}")
        Session.add(city)
        Session.commit()  # inside the test's outer transaction: released savepoint, still rolled back
        return city

    return make


def create_user(role: str, *, login: str | None = None, status: str = "active", city_id: int | None = None,
                full_name: str | None = None):
    from sqlalchemy import select

    from models import Role, User

    role_row = Session.scalar(select(Role).where(Role.name == role))
    user = User(
        login=login or f"{role}_{os.urandom(4).hex()}",
        password_hash=_PASSWORD_HASH,
        role=role_row,
        status=status,
        city_id=city_id,
        full_name=full_name or f"Тест {role}",
    )
    Session.add(user)
    Session.commit()  # inside the test's outer transaction when used with the db fixture
    return user


@pytest.fixture()
def make_user(db):
    return create_user


def login(client, user, *, password: str = TEST_PASSWORD):
    response = client.post("/api/auth/login", json={"login": user.login, "password": password})
    assert response.status_code == 200, response.json
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
