"""A Redis outage is waited out: a real worker and a real beat, as processes, against a Redis of
this test's own (the embedded one, in a temporary folder, on a port kept across its restart, with
its append-only file), stopped for 30 seconds and started again.

Both processes are the same afterwards; a ping job the worker held when Redis went away (queued
with a countdown, the case that killed the worker) and one queued after are each done once; beat
beats again, still holding its lock; and a beat that finds its lock taken by another steps back
until the lock is free again.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

import embedded
from models.core import probes
from models.core.db import unit_of_work
from models.ops import jobs
from models.ops.tables import Job
from tests.support import stop_process_group, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
OUTAGE_SECONDS = 30
LOCK_KEY = "leadline:redbeat::lock"


class Processes:
    def __init__(self, tmp_path: Path, redis_url: str):
        self.tmp = tmp_path
        self.env = dict(os.environ, APP_ENV="test", REDIS_URL=redis_url, CELERY_BROKER_URL="",
                        BEAT_HEARTBEAT_SECONDS="2", PYTHONPATH=str(REPO), LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        process = subprocess.Popen([CELERY, "-A", "tasks", *args], cwd=REPO, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")


@pytest.fixture()
def outage_stack(tmp_path, monkeypatch, committed):
    port = embedded.free_port()
    monkeypatch.setattr(embedded, "REDIS_DIR", tmp_path / "redis")
    monkeypatch.setattr(embedded, "free_port", lambda: port)
    processes = Processes(tmp_path, embedded.redis_url())
    try:
        yield processes
    finally:
        for process in reversed(processes.started):
            stop_process_group(process, timeout=20)
        embedded.stop_redis()


def queue_ping(redis_url: str, countdown: float = 0) -> str:
    """A ping job committed, its task queued on the test's Redis; the job's id."""
    from tasks.celery_app import celery_app

    with unit_of_work():
        job_id = str(jobs.create_job("ping").id)
    with celery_app.connection_for_write(redis_url) as connection:
        celery_app.send_task("jobs.ping", (job_id,), queue="light", countdown=countdown, connection=connection)
    return job_id


def job_row(session, job_id: str) -> Job:
    session.expire_all()
    row = session.get(Job, uuid.UUID(job_id))
    session.rollback()
    return row


def held_unacked(client: redis.Redis, job_id: str) -> bool:
    return any(job_id in value for value in client.hvals("unacked"))


def test_worker_and_beat_wait_out_a_redis_outage(outage_stack, committed):
    stack = outage_stack
    url = stack.env["REDIS_URL"]
    client = redis.Redis.from_url(url, decode_responses=True)
    worker = stack.start("worker", "worker", "-Q", "light,heavy", "-c", "1", "--pool", "prefork",
                         "-n", f"outage-{os.getpid()}@%h", "--loglevel", "INFO")
    beat = stack.start("beat", "beat", "-s", str(stack.tmp / "beat-schedule"), "--loglevel", "INFO")
    wait_for(lambda: client.get(probes.HEARTBEAT_KEY), timeout=120, interval=0.2)  # beat -> Redis -> worker
    token = wait_for(lambda: client.get(LOCK_KEY), timeout=30)

    # A countdown message the worker holds (reserved, unacknowledged) when Redis goes away.
    held = queue_ping(url, countdown=20)
    wait_for(lambda: held_unacked(client, held), timeout=30, interval=0.1)
    embedded.stop_redis()
    time.sleep(OUTAGE_SECONDS)
    assert worker.poll() is None, stack.log("worker")[-4000:]
    assert beat.poll() is None, stack.log("beat")[-4000:]
    embedded.redis_url()  # the same port and folder: what Redis held comes back from its append-only file
    back = time.time()

    after = queue_ping(url)
    for job_id in (held, after):
        wait_for(lambda: job_row(committed, job_id).status == "succeeded", timeout=120, interval=0.3)
        assert job_row(committed, job_id).attempts == 1  # done once
    wait_for(lambda: not held_unacked(client, held), timeout=30)  # acknowledged: nothing left to redeliver
    wait_for(lambda: float(client.get(probes.HEARTBEAT_KEY)) > back, timeout=60, interval=0.2)  # beat beats
    assert client.get(LOCK_KEY) == token and client.ttl(LOCK_KEY) > 0  # still its lock, renewed
    assert worker.poll() is None and beat.poll() is None  # the same processes throughout
    assert "Unrecoverable error" not in stack.log("worker")

    # The lock lapsed during an outage and another beat took it: this one steps back ...
    client.set(LOCK_KEY, "another-beat", ex=60)
    wait_for(lambda: "another beat holds the lock" in stack.log("beat"), timeout=60, interval=0.2)
    assert client.get(LOCK_KEY) == "another-beat"
    # ... and takes it again once it is free.
    client.delete(LOCK_KEY)
    wait_for(lambda: client.get(LOCK_KEY) not in (None, "another-beat"), timeout=60, interval=0.2)
    assert beat.poll() is None
