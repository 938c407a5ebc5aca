"""Shared fixtures: real PostgreSQL, real Redis, a real Celery worker.

PostgreSQL and Redis come from DATABASE_URL / REDIS_URL when set (CI points them at the machine's
services), otherwise from the embedded services under ./var. The URLs are settled here, before any
project module reads its settings. Embedded services the run starts are stopped when it ends
(passed, failed or interrupted); those it found running (a `make run` beside it) are left alone.
"""
from __future__ import annotations

import atexit
import os
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

# The broker of the run (tests/brokers.py): Redis, or RabbitMQ with LEADLINE_TEST_BROKER=amqp.
from tests import brokers  # noqa: E402

SESSION_BROKER = brokers.session_broker()
if SESSION_BROKER == brokers.AMQP:
    _amqp_url, _why = brokers.amqp_url()
    if _amqp_url is None:
        raise pytest.UsageError(f"LEADLINE_TEST_BROKER=amqp: {_why}")
    os.environ["CELERY_BROKER_URL"] = _amqp_url

from sqlalchemy import text  # noqa: E402

from models import Session  # noqa: E402
from models.core import migrate as migrations  # noqa: E402
from models.core.db import configure, get_engine  # noqa: E402
from models.core.redis import get_redis  # noqa: E402
from tests import factories  # noqa: E402
from tests.support import login, truncate_committed_data  # noqa: E402


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


@pytest.fixture()
def committed(database) -> Iterator:
    """For tests whose data another process or thread must see (the worker): real commits,
    then every non-seed table is emptied afterwards."""
    Session.remove()
    yield Session
    truncate_committed_data()


@pytest.fixture(scope="session")
def celery_worker_thread(database):
    """A real Celery worker consuming both queues from the run's broker (Redis unless
    LEADLINE_TEST_BROKER=amqp), in a thread."""
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


@pytest.fixture(params=brokers.BROKERS)
def broker(request) -> Iterator[brokers.Broker]:
    """The test runs once on Redis and once on RabbitMQ (skipped with the reason when none answers).
    On the run's own broker nothing changes; on the other, the test process uses it for the test."""
    kind = request.param
    if kind == brokers.AMQP:
        url, why = brokers.amqp_url()
        if url is None:
            pytest.skip(why)
    url = brokers.url_of(kind)
    if kind == SESSION_BROKER:
        yield brokers.Broker(kind, url, switched=False)
        return
    with brokers.switched_to(url):
        yield brokers.Broker(kind, url, switched=True)


@pytest.fixture()
def broker_worker(broker, request, tmp_path):
    """A real worker consuming light and heavy on the test's broker: the session's worker thread on
    the run's broker, a worker process of the test's own on the other."""
    if not broker.switched:
        yield request.getfixturevalue("celery_worker_thread")
        return
    worker = brokers.WorkerProcess(broker.url, tmp_path)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-protocol server (moto's standalone server in a process of its own), started once when a
    test first asks for the S3 backend."""
    from tests.storage_support import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3-server"))
    yield server
    server.stop()


@pytest.fixture()
def media(request, tmp_path):
    """The storage of this test only: local folders, or (a test parametrised with `both_backends`) each
    backend in turn, S3 as a bucket of its own on the S3 server."""
    from storage import backend
    from tests.storage_support import make_storage

    kind = getattr(request, "param", "local")
    store = make_storage(kind, tmp_path, request.getfixturevalue("s3_server") if kind == "s3" else None)
    previous = backend.configure(store)
    yield store
    backend.configure(previous)


# ---- data: the factories of tests/factories.py, as fixtures of tests that use the db fixture ---------

@pytest.fixture()
def make_city(db):
    return factories.make_city


@pytest.fixture()
def make_user(db):
    return factories.create_user


@pytest.fixture()
def signed_in(client, make_user):
    """signed_in(role, **user_fields) -> a new user of that role, signed in on `client` by cookie."""

    def sign_in(role: str, **kwargs):
        user = make_user(role, **kwargs)
        login(client, user)
        return user

    return sign_in
