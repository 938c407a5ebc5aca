"""The embedded PostgreSQL and Redis start, are found again, stop, and survive a crashed run."""
from __future__ import annotations

import os
import signal

import psutil
import psycopg
import pytest
import redis

import embedded


@pytest.fixture()
def scratch_var(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "PG_DIR", tmp_path / "pg")
    monkeypatch.setattr(embedded, "REDIS_DIR", tmp_path / "redis")
    yield tmp_path
    embedded.stop_all()


def _pg_query(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5) as conn:
        return conn.execute("SELECT 41 + 1").fetchone()[0]


def test_redis_starts_is_found_again_and_stops(scratch_var):
    url = embedded.redis_url()
    client = redis.Redis.from_url(url)
    assert client.ping()
    client.set("k", "v")
    assert embedded.redis_url() == url  # a second caller finds the running server
    assert embedded.redis_running()
    embedded.stop_redis()
    assert not embedded.redis_running()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()


def test_redis_after_a_crash(scratch_var):
    embedded.redis_url()
    pid = int((scratch_var / "redis" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    url = embedded.redis_url()  # stale pid file and dead port do not block the next start
    assert redis.Redis.from_url(url).ping()


def test_postgres_starts_is_found_again_stops_and_survives_a_crash(scratch_var):
    url = embedded.postgres_url("leadline_scratch")
    assert _pg_query(url) == 42
    assert embedded.postgres_url("leadline_scratch") == url
    assert embedded.postgres_running()

    embedded.stop_postgres()
    assert not embedded.postgres_running()
    with pytest.raises(psycopg.OperationalError):
        _pg_query(url)

    url = embedded.postgres_url("leadline_scratch")
    assert _pg_query(url) == 42
    # A crash (power loss, kill -9 of everything) leaves a stale postmaster.pid behind.
    postmaster = psutil.Process(int((scratch_var / "pg" / "postmaster.pid").read_text().split()[0]))
    victims = [postmaster, *postmaster.children(recursive=True)]
    for process in victims:
        try:
            process.kill()
        except psutil.NoSuchProcess:  # a child that went down with the postmaster already
            pass
    psutil.wait_procs(victims, timeout=10)
    assert (scratch_var / "pg" / "postmaster.pid").exists()
    url = embedded.postgres_url("leadline_scratch")  # the stale pid file does not block the start
    assert _pg_query(url) == 42
