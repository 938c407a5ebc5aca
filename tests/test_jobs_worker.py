"""A job accepted by the API is executed by a real Celery worker, on Redis and on RabbitMQ."""
from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import select

from models.ops import jobs
from models.ops.tables import Job
from tests.factories import create_user
from tests.support import SPA, login, wait_for


@pytest.mark.worker
def test_ping_job_runs_on_a_real_worker(app, committed, broker, broker_worker):
    admin = create_user("admin")
    client = app.test_client()
    login(client, admin)

    accepted = client.post("/api/jobs/ping", headers=SPA)
    assert accepted.status_code == 202
    job_id = accepted.json["job_id"]
    assert accepted.json["status"] == "queued"

    def finished():
        state = client.get(f"/api/jobs/{job_id}").json
        return state if state["status"] in ("succeeded", "failed") else None

    state = wait_for(finished, timeout=30)
    assert state["status"] == "succeeded"
    assert state["kind"] == "ping"
    assert state["result"]["pong"] is True
    assert state["attempts"] == 1
    assert state["started_at"] and state["finished_at"]
    # Run by the worker on the test's broker (a worker process of its own on the other one).
    assert state["result"]["worker"].endswith(f":{broker_worker.process.pid if broker.switched else os.getpid()}")


@pytest.mark.worker
def test_redelivered_job_is_not_run_twice(committed):
    """The claim is a conditional UPDATE: a finished job stays finished when its task comes back."""
    from tasks.jobs import ping

    job = jobs.create_job("ping")
    committed.commit()
    ping.run(str(job.id))
    ping.run(str(job.id))
    committed.expire_all()
    assert job.status == "succeeded"
    assert job.attempts == 1


def test_job_is_visible_only_to_its_creator_and_managers(client, make_user, db):
    owner, stranger, manager = make_user("callcentr"), make_user("callcentr"), make_user("manager")
    job = jobs.create_job("ping", created_by_id=owner.id)
    db.commit()
    for user, status in ((owner, 200), (stranger, 404), (manager, 200)):
        client.post("/api/auth/logout", headers=SPA)
        login(client, user)
        assert client.get(f"/api/jobs/{job.id}").status_code == status


def test_unknown_job_id(client, make_user):
    login(client, make_user("admin"))
    assert client.get(f"/api/jobs/{uuid.uuid4()}").status_code == 404


def test_a_job_the_broker_cannot_take_is_failed_and_answered_503(client, make_user, db, monkeypatch):
    """tasks.queue.enqueue_job: the row is committed first, so when the broker refuses the message the
    job is failed (never left queued) and the client is told to come back."""
    from tasks.jobs import ping

    def broker_down(*_args, **_kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(ping, "apply_async", broker_down)
    login(client, make_user("admin"))
    response = client.post("/api/jobs/ping", headers=SPA)
    assert (response.status_code, response.json["code"]) == (503, "broker_unavailable")
    [job] = db.scalars(select(Job).where(Job.kind == "ping")).all()
    assert (job.status, job.error) == ("failed", "очередь задач недоступна")
