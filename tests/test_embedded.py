"""The embedded PostgreSQL and Redis start, are found again, stop, and survive a crashed run; a test run
stops those it started and leaves alone those it found running."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

import embedded
from tests.support import still_running

REPO = Path(__file__).resolve().parent.parent


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
    first = embedded.redis_url()
    pid = int((scratch_var / "redis" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    url = embedded.redis_url()  # stale pid file and dead port do not block the next start
    assert redis.Redis.from_url(url).ping()
    assert url == first  # back at the same address: running processes reconnect to it


def test_redis_comes_back_on_its_port_and_a_client_reconnects(scratch_var):
    url = embedded.redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    client.set("kept", "1")  # append-only: kept across the restart
    embedded.stop_redis()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert embedded.redis_url() == url
    assert client.get("kept") == b"1"  # the same client, never told about a new address


def test_redis_moves_only_when_another_program_took_its_port(scratch_var):
    url = embedded.redis_url()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    embedded.stop_redis()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        moved = embedded.redis_url()
    assert moved != url and redis.Redis.from_url(moved).ping()
    embedded.stop_redis()
    assert embedded.redis_url() == moved  # and stays at the new one


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


# ---- the test run's own embedded services ---------------------------------------------------------

A_RUN = '''
import os
from pathlib import Path

import embedded


def test_notes_the_services_it_uses():
    postmaster = (embedded.PG_DIR / "postmaster.pid").read_text().split()[0]
    redis_server = (embedded.REDIS_DIR / "redis.pid").read_text().strip()
    Path(os.environ["SERVICE_PIDS"]).write_text(f"{postmaster} {redis_server}")


def test_fails():
    assert False, "a failed run stops its services too"
'''


def _embedded_env(var) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    return {**env, "LEADLINE_VAR_DIR": str(var), "XDG_RUNTIME_DIR": str(var / "run")}


def _service_processes(var) -> list[psutil.Process]:
    postmaster = psutil.Process(int((var / "pg" / "postmaster.pid").read_text().split()[0]))
    return [postmaster, psutil.Process(int((var / "redis" / "redis.pid").read_text()))]


def _processes(pids: list[str]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(int(pid)))
        except psutil.NoSuchProcess:  # ended and collected already
            pass
    return found


@pytest.mark.slow
def test_a_test_run_stops_the_embedded_services_it_started_and_only_those(tmp_path):
    """`make test` without DATABASE_URL / REDIS_URL: a run that started the embedded services stops
    them when it ends (here it fails); a run that found them running (a `make run` beside it)
    leaves them running."""
    var = tmp_path / "var"
    env = _embedded_env(var)
    (tmp_path / "test_a_run.py").write_text(A_RUN)
    pids = tmp_path / "pids"
    run = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-c", str(REPO / "setup.cfg"), "--rootdir",
           str(REPO), "-q", str(tmp_path / "test_a_run.py")]
    try:
        done = subprocess.run(run, cwd=REPO, env={**env, "SERVICE_PIDS": str(pids)}, capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 1 and "1 failed, 1 passed" in done.stdout, done.stdout[-3000:] + done.stderr
        assert "leadline: stopping embedded postgres, redis started by the tests" in done.stdout
        assert still_running(_processes(pids.read_text().split()), timeout=5) == []
        port = int((var / "redis" / "port").read_text())
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

        subprocess.run([sys.executable, "-c", "import embedded; embedded.postgres_url(); embedded.redis_url()"],
                       cwd=REPO, env=env, check=True, timeout=120)  # as `make run` would have them
        running = _service_processes(var)
        done = subprocess.run(run, cwd=REPO, env={**env, "SERVICE_PIDS": str(pids)}, capture_output=True,
                              text=True, timeout=240)
        assert "1 failed, 1 passed" in done.stdout, done.stdout[-3000:] + done.stderr
        assert "stopping embedded" not in done.stdout
        assert [int(pid) for pid in pids.read_text().split()] == [process.pid for process in running]
        assert still_running(running, timeout=0) == running
    finally:
        subprocess.run([sys.executable, "-c", "import embedded; embedded.stop_all()"], cwd=REPO, env=env,
                       timeout=120)
