"""Nothing is lost and nothing is done twice: the broker stopped, a worker killed mid-event.

The API (gunicorn) and the workers run as separate processes, as in production, against the test
database and a Redis of their own (the embedded one, in a temporary folder, on a fixed port so it
can be stopped and started again with its append-only file).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import func, select

import embedded
from models import Call, MangoEvent, Request, RequestEvent
from tests.factories import make_campaign
from tests.support import LEASE_SECONDS, stop_process_group, wait_for
from tests.telephony_support import KEY, LINE, SALT, form, incoming_answered, path_of

pytestmark = [pytest.mark.worker, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class Stack:
    """A Redis, the API and light workers of this test's own."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.tmp = tmp_path
        port, self.api_port = embedded.free_port(), embedded.free_port()
        monkeypatch.setattr(embedded, "REDIS_DIR", tmp_path / "redis")
        monkeypatch.setattr(embedded, "free_port", lambda: port)
        self.redis_url = embedded.redis_url()
        self.env = dict(os.environ, APP_ENV="test", REDIS_URL=self.redis_url, CELERY_BROKER_URL="",
                        MANGO_API_KEY=KEY, MANGO_API_SALT=SALT, MANGO_SWEEP_AFTER_SECONDS="1",
                        PYTHONPATH=str(REPO), LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        self.processes: list[subprocess.Popen] = []

    def start_api(self) -> None:
        log = open(self.tmp / "api.log", "ab")
        self.processes.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.api_port}", "--workers", "2", "api:create_app()"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

        def answers():
            try:
                return requests.get(f"http://127.0.0.1:{self.api_port}/api/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=60, interval=0.2)

    def start_worker(self, **fault_env) -> subprocess.Popen:
        """A light worker; with `fault_env`, one of tests/fault_worker.py (the faults it names injected)."""
        log = open(self.tmp / "worker.log", "ab")
        app = "tests.fault_worker" if fault_env else "tasks"
        worker = subprocess.Popen(
            [str(BIN / "celery"), "-A", app, "worker", "-Q", "light", "-c", "1", "--pool", "prefork",
             "-n", f"light-{os.getpid()}-{len(self.processes)}@%h", "--without-gossip", "--without-mingle",
             "--loglevel", "WARNING"],
            cwd=REPO, env={**self.env, **fault_env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(worker)
        return worker

    def sweep(self) -> str:
        done = subprocess.run([sys.executable, "-c", "from models.core.db import get_engine; get_engine(); "
                               "from tasks.telephony import sweep_once; print(sweep_once())"],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def post(self, deliveries) -> list[dict]:
        answers = []
        for event_type, payload in deliveries:
            response = requests.post(f"http://127.0.0.1:{self.api_port}{path_of(event_type)}", data=form(payload),
                                     timeout=10)
            assert response.status_code == 200, response.text
            answers.append(response.json())
        return answers

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process_group(process, timeout=20)
        embedded.stop_redis()


@pytest.fixture()
def stack(tmp_path, monkeypatch, committed):
    make_campaign(LINE)
    running = Stack(tmp_path, monkeypatch)
    try:
        yield running
    finally:
        running.stop()


def counts_by_status(session) -> dict[str, int]:
    session.expire_all()
    counts = dict(session.execute(select(MangoEvent.status, func.count()).group_by(MangoEvent.status)).all())
    session.rollback()
    return counts


def all_processed(session, total: int):
    return lambda: counts_by_status(session) == {"processed": total}


def test_deliveries_while_redis_is_down_are_processed_once_it_is_back(stack, committed):
    stack.start_api()
    before = incoming_answered("redis-before", client="79161230001", t0=int(time.time()) - 300)
    during = incoming_answered("redis-down", client="79161230002", t0=int(time.time()) - 200)
    after = incoming_answered("redis-after", client="79161230003", t0=int(time.time()) - 100)

    assert all(answer["queued"] for answer in stack.post(before))
    embedded.stop_redis()
    answers = stack.post(during)  # stored and answered although nothing can be queued
    assert [answer["queued"] for answer in answers] == [False] * len(during)
    assert counts_by_status(committed) == {"pending": len(before) + len(during)}

    embedded.redis_url()  # the same port and folder: the queued run comes back from the AOF
    stack.start_worker()
    # That run folds every pending row, the ones stored while Redis was down too (nothing queued them).
    wait_for(all_processed(committed, len(before) + len(during)), timeout=60)
    time.sleep(1.2)  # older than MANGO_SWEEP_AFTER_SECONDS, were any left
    assert "'stale': 0, 'enqueued': 0" in stack.sweep()

    time.sleep(2.1)  # the API's publisher pauses after a failure, then queues again
    if not all(answer["queued"] for answer in stack.post(after)):
        # On a loaded machine the pause may not be over yet: the sweeper still delivers them.
        time.sleep(1.2)
        stack.sweep()
    total = len(before) + len(during) + len(after)
    wait_for(all_processed(committed, total), timeout=60)

    attempts = committed.scalars(select(MangoEvent.attempts)).all()
    assert attempts == [1] * total  # each claimed and applied exactly once
    assert committed.scalar(select(func.count()).select_from(Call)) == 3
    requests_made = committed.scalars(select(Request.client_phone).order_by(Request.id)).all()
    assert requests_made == ["79161230001", "79161230002", "79161230003"]
    assert committed.scalar(select(func.count()).select_from(RequestEvent)) == 3
    assert "'enqueued': 0" in stack.sweep()


def _kill_worker_in_the_middle(stack, committed, marker: Path, *, whole_worker: bool) -> subprocess.Popen:
    worker = stack.start_worker(LEADLINE_FAULT_MANGO_SLEEP="120", LEADLINE_FAULT_MANGO_MARKER=str(marker),
                                LEADLINE_FAULT_MANGO_TYPE="summary")
    deliveries = incoming_answered("killed", t0=int(time.time()) - 120)
    stack.post(deliveries[:-1])
    wait_for(all_processed(committed, len(deliveries) - 1), timeout=60)
    stack.post(deliveries[-1:])
    wait_for(lambda: marker.exists() and marker.read_text(), timeout=60)
    # The summary is folded (request created, call linked) but not committed: kill here.
    child = int(marker.read_text())
    assert child != worker.pid
    if whole_worker:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    else:
        os.kill(child, signal.SIGKILL)

    def gone():
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, timeout=10)
    return worker


def assert_summary_applied_once(committed) -> None:
    summary = committed.scalars(select(MangoEvent).where(MangoEvent.event_type == "summary")).one()
    assert (summary.status, summary.attempts) == ("processed", 1)
    [request] = committed.scalars(select(Request)).all()
    [call] = committed.scalars(select(Call)).all()
    assert call.request_id == request.id and call.summary_received
    assert committed.scalar(select(func.count()).select_from(RequestEvent)) == 1


def test_worker_killed_mid_event_is_redelivered_and_applied_once(stack, committed, tmp_path):
    stack.start_api()
    _kill_worker_in_the_middle(stack, committed, tmp_path / "paused", whole_worker=False)
    # Late ack + reject on worker lost: the message goes back to the queue and a new pool process runs it.
    wait_for(all_processed(committed, 6), timeout=90)
    assert_summary_applied_once(committed)


def test_whole_worker_killed_mid_event_is_swept_and_applied_once(stack, committed, tmp_path):
    stack.start_api()
    _kill_worker_in_the_middle(stack, committed, tmp_path / "paused", whole_worker=True)
    # The unacknowledged message waits for the broker's visibility timeout; the row is still pending,
    # so the sweeper queues it again for the next worker.
    assert counts_by_status(committed) == {"processed": 5, "pending": 1}
    stack.start_worker()
    time.sleep(1.2)
    stack.sweep()
    wait_for(all_processed(committed, 6), timeout=90)
    assert_summary_applied_once(committed)


def test_whole_worker_killed_mid_event_is_taken_over_by_the_next_worker_within_the_lease(
        stack, committed, tmp_path):
    """No sweeper runs here: the lease of the dead worker's message runs out (tasks/leases.py) and the
    next worker gets that very message again, well before the broker's hour of visibility timeout."""
    stack.start_api()
    _kill_worker_in_the_middle(stack, committed, tmp_path / "paused", whole_worker=True)
    killed = time.monotonic()
    assert counts_by_status(committed) == {"processed": 5, "pending": 1}
    stack.start_worker(LEADLINE_FAULT_LEASE_SECONDS=LEASE_SECONDS)  # the lease on a shorter clock, no fault
    wait_for(all_processed(committed, 6), timeout=180)
    print(f"\nevent of a killed worker processed {time.monotonic() - killed:.1f} s after the kill")
    assert_summary_applied_once(committed)
