"""Helpers the test modules share (test data is in tests/factories.py): signing in, waiting for a
condition, stopping a server a test started, a real worker of tests/fault_worker.py to crash, emptying the
committed data, building an upload."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import psycopg.errors
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from models import Base, Session
from models.core.db import get_engine
from tests.factories import TEST_PASSWORD

REPO = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))
# Lookups seeded by the migration survive the per-test cleanup of committed data.
SEEDED_TABLES = {"roles", "request_types", "transaction_types", "report_rollups"}
# What the SPA's browser sends with every unsafe call: an origin of CORS_ORIGINS (see conftest.py).
SPA = {"Origin": "http://spa.test"}
BOUNDARY = "----leadlineTestBoundary7MA4YWxkTrZu0gW"


def login(client, user, *, password: str = TEST_PASSWORD):
    response = client.post("/api/auth/login", json={"login": user.login, "password": password})
    assert response.status_code == 200, response.json
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


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


def stop_process_group(process, timeout: float = 30.0) -> None:
    """Stop a server the test started in its own process group: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


LEASE_SECONDS = "10"  # the crash tests' workers' lease (tests/fault_worker.py), not production's 30 s


class FaultWorker:
    """A real `celery worker` process (prefork, one child) on queues of its own, with the faults of
    tests/fault_worker.py that `env` names; `media` (a storage.backend.Storage) where its files live."""

    def __init__(self, queue: str, log_dir: Path, media=None, **env: str):
        self.log = open(log_dir / f"worker-{uuid.uuid4().hex[:6]}.log", "wb")
        environment = {**os.environ, "APP_ENV": "test", "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING",
                       "LEADLINE_FAULT_LEASE_SECONDS": LEASE_SECONDS, **env}
        if media is not None:
            environment.update(media.environment())
        self.process = subprocess.Popen(
            [CELERY, "-A", "tests.fault_worker", "worker", "-Q", queue, "-c", "1", "--pool", "prefork",
             "-n", f"crash-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "WARNING"],
            cwd=REPO, env=environment, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill_all(self) -> None:
        """SIGKILL the worker's main process (its pool process follows it: parent-death signal)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill_all()
        self.log.close()


def at_once(*calls: Callable[[], object], timeout: float = 30.0) -> list:
    """Run the calls at the same moment, each on a thread of its own (a barrier releases them
    together), and return their results in the order given."""
    import threading

    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


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


def multipart(filename: str | bytes, data: bytes, *, fields: tuple[tuple[str, str], ...] = (),
              field: str = "file") -> tuple[bytes, str]:
    """A multipart body written the way browsers and attack tools do: the name raw in `filename="..."`,
    or RFC 2231 `filename*=` when it holds characters a quoted string cannot."""
    b = BOUNDARY.encode()
    body = b""
    for name, value in fields:
        body += b"--" + b + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        body += value.encode() + b"\r\n"
    if isinstance(filename, str) and any(ch in filename for ch in '"\r\n'):
        disposition = b"filename*=UTF-8''" + quote(filename, safe="").encode()
    else:
        raw = filename if isinstance(filename, bytes) else filename.encode()
        disposition = b'filename="' + raw + b'"'
    body += (b"--" + b + b'\r\nContent-Disposition: form-data; name="' + field.encode() + b'"; ' + disposition
             + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--" + b + b"--\r\n")
    return body, f"multipart/form-data; boundary={BOUNDARY}"
