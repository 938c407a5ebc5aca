"""A worker killed as a whole (SIGKILL of its main process: its pool process follows it; as when its
machine is lost) does not keep its work for the broker's hour of visibility timeout: the lease of what
it held runs out (tasks/leases.py) and the next worker, started with the default visibility timeout,
gets the same message again and finishes the work exactly once in effect. On RabbitMQ the broker
itself gives the message back when the killed worker's connection closes (no lease is kept there):
the maintenance run is checked on both brokers.

Real `celery worker` processes of tests/fault_worker.py, on queues of their own, against the test
database and Redis. How long the work waited after the kill is printed (run with -s to see it), not
asserted: the tests wait for the outcome with a generous deadline.
"""
from __future__ import annotations

import time
import uuid

import psutil
import pytest
from sqlalchemy import select

from api.security import issue_token
from models import Session
from models.core.redis import get_redis, key
from models.files.rules import VALIDATION_JOB_KIND
from models.files.tables import File
from models.ops.tables import Job
from models.requests.tables import RequestEvent
from tasks import files as file_tasks
from tasks.celery_app import celery_app
from tasks.maintenance import MAINTENANCE_LOCK
from tests.factories import create_user, make_city, make_request
from tests.file_samples import jpeg_bytes
from tests.support import FaultWorker, bearer, multipart, still_running, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow]

DEADLINE = 180  # generous: the lease lets the work go after about 40 s


def _paused_pid(fault_key: str) -> int:
    return int(wait_for(lambda: get_redis().get(fault_key), timeout=60, interval=0.1))


def _jobs(kind: str) -> list[Job]:
    Session.remove()
    rows = Session.scalars(select(Job).where(Job.kind == kind).order_by(Job.created_at)).all()
    Session.remove()
    return rows


def _kill_worker(worker: FaultWorker, pool_pid: int) -> float:
    """SIGKILL the worker's main process; its pool process dies with it. The moment of the kill."""
    pool_process = psutil.Process(pool_pid)
    worker.kill_all()
    killed = time.monotonic()
    assert still_running([pool_process], timeout=30) == []
    return killed


def test_upload_of_a_killed_worker_is_validated_by_the_next_one_within_the_lease(
        app, committed, media, monkeypatch, tmp_path):
    city = make_city()
    request = make_request(city.id)
    with app.app_context():
        token = issue_token(create_user("admin"))
    body, content_type = multipart("БСО.jpg", jpeg_bytes(120, 90, noise=True))
    with monkeypatch.context() as patched:  # accepted and committed; the test queues the validation
        patched.setattr(file_tasks.validate, "apply_async", lambda *args, **kwargs: None)
        response = app.test_client().post(f"/api/requests/{request.id}/upload-bso", data=body,
                                          content_type=content_type, headers=bearer(token))
    assert response.status_code == 202
    file_id, job_id = response.json["file_id"], uuid.UUID(response.json["job_id"])

    queue = f"lease-files-{uuid.uuid4().hex[:8]}"
    first = FaultWorker(queue, tmp_path, media, LEADLINE_FAULT_FILES="after_claim:600")
    second = None
    try:
        file_tasks.validate.apply_async(args=[file_id, str(job_id)], queue=queue)
        pool_pid = _paused_pid(key("test", "files-fault", "after_claim"))
        assert [job.status for job in _jobs(VALIDATION_JOB_KIND)] == ["running"]
        killed = _kill_worker(first, pool_pid)
        second = FaultWorker(queue, tmp_path, media)  # the default visibility timeout: an hour

        def finished():
            Session.remove()
            job = Session.get(Job, job_id)
            return job if job.status in ("succeeded", "failed") else None

        job = wait_for(finished, timeout=DEADLINE, interval=0.2)
        print(f"\nupload of a killed worker validated {time.monotonic() - killed:.1f} s after the kill")
        assert job.status == "succeeded" and job.attempts == 2 and job.result["status"] == "ready"
        Session.remove()
        row = Session.get(File, file_id)
        assert row.status == "ready"
        stored = [p for p in media.media_root.rglob("*") if p.is_file()]
        assert stored == [media.media_root / row.storage_path]
        events = Session.scalars(select(RequestEvent).where(RequestEvent.request_id == request.id,
                                                            RequestEvent.field == "bso_file_path")).all()
        assert [event.new_value for event in events] == [row.storage_path]  # linked once
        assert [j.id for j in _jobs(VALIDATION_JOB_KIND)] == [job_id]
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_maintenance_run_of_a_killed_worker_is_finished_by_the_next_one_as_one_job(committed, tmp_path, broker):
    """Beat's message (no job id): the run's job row is found again by the redelivered message, so the
    run ends as one succeeded job, not a job left `running` and a second one."""
    queue = f"lease-maintenance-{uuid.uuid4().hex[:8]}"
    first = FaultWorker(queue, tmp_path, LEADLINE_FAULT_MAINTENANCE="index_report:600", CELERY_BROKER_URL=broker.url)
    second = None
    try:
        celery_app.send_task("maintenance.index_report", queue=queue)  # as beat sends it
        pool_pid = _paused_pid(key("test", "maintenance-fault"))
        assert [job.status for job in _jobs("maintenance.index_report")] == ["running"]
        killed = _kill_worker(first, pool_pid)
        second = FaultWorker(queue, tmp_path, CELERY_BROKER_URL=broker.url)

        def finished():
            rows = _jobs("maintenance.index_report")
            return rows if rows and all(row.status in ("succeeded", "failed") for row in rows) else None

        rows = wait_for(finished, timeout=DEADLINE, interval=0.2)
        print(f"\nmaintenance run of a killed worker finished {time.monotonic() - killed:.1f} s after the kill "
              f"({broker.kind})")
        assert [(row.status, row.attempts) for row in rows] == [("succeeded", 2)]
        assert "tables" in rows[0].result or "indexes" in rows[0].result
        assert get_redis().get(MAINTENANCE_LOCK) is None  # released by the run that finished
    finally:
        first.stop()
        if second is not None:
            second.stop()
