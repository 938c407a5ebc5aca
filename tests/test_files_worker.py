"""The file pipeline with real workers on the real Redis: 50 uploads at once all settle; a worker killed
with SIGKILL in the middle of a validation gets the task redelivered and the file ends in the right
state exactly once.

Crash points come from the tests' own worker app, tests/fault_worker.py: LEADLINE_FAULT_FILES
"<point>:<seconds>" makes the first validation to reach `point` (after_claim, after_promote,
after_commit) publish its pid and wait there, and the test SIGKILLs that process.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

import embedded
from api.security import issue_token
from models import Session
from models.core.redis import get_redis, key
from models.files.tables import File
from models.ops.tables import Job
from models.requests.tables import RequestEvent
from storage import backend
from tasks import files as file_tasks
from tests.factories import create_user, make_city, make_request, make_transaction
from tests.file_samples import (
    MZ_EXECUTABLE,
    PHP_SHELL,
    docx_bytes,
    jpeg_bytes,
    mp3_bytes,
    pdf_bytes,
    pdf_with_javascript,
    png_bytes,
    polyglot_jpeg_zip,
    wav_bytes,
)
from tests.storage_support import both_backends, media_files, quarantined
from tests.support import FaultWorker, bearer, multipart, stop_process_group, wait_for

REPO = Path(__file__).resolve().parent.parent


def _statuses(ids: list[int]) -> dict[int, str]:
    Session.remove()
    rows = dict(Session.execute(select(File.id, File.status).where(File.id.in_(ids))).all())
    Session.remove()
    return rows


# ---- many at once ------------------------------------------------------------------------------------

@pytest.mark.worker
@pytest.mark.slow
@both_backends
def test_fifty_parallel_uploads_all_end_ready_or_rejected(app, committed, media, celery_worker_thread):
    city = make_city()
    admin = create_user("admin")
    master = create_user("master", city_id=city.id)
    requests = [make_request(city.id, master_id=master.id) for _ in range(10)]
    transaction = make_transaction(city.id)
    with app.app_context():
        tokens = {"admin": issue_token(admin), "master": issue_token(master)}
    cases = [
        ("a.jpg", jpeg_bytes(), "upload-bso", "ready"), ("b.png", png_bytes(), "upload-expense", "ready"),
        ("c.pdf", pdf_bytes(), "upload-bso", "ready"), ("d.mp3", mp3_bytes(), "upload-recording", "ready"),
        ("e.docx", docx_bytes(), "upload-expense", "ready"), ("f.wav", wav_bytes(), "upload-recording", "ready"),
        ("x.jpg", MZ_EXECUTABLE, "upload-bso", "rejected"),
        ("y.jpg", polyglot_jpeg_zip(), "upload-expense", "rejected"),
        ("z.pdf", pdf_with_javascript(), "upload-bso", "rejected"), ("w.png", PHP_SHELL, "upload-bso", "rejected"),
    ]
    uploads = []
    for i in range(50):
        if i % 10 == 9:  # every tenth goes to the cash book
            if i % 20 == 9:
                name, data, expected = "tx.pdf", pdf_bytes(), "ready"
            else:
                name, data, expected = "tx.jpg", MZ_EXECUTABLE, "rejected"
            path = f"/api/transactions/{transaction.id}/upload-file"
        else:
            name, data, endpoint, expected = cases[i % len(cases)]
            path = f"/api/requests/{requests[i % len(requests)].id}/{endpoint}"
        uploads.append((path, name, data, "admin" if i % 2 else "master", expected))

    def send(item):
        path, name, data, who, expected = item
        body, content_type = multipart(name, data)
        response = app.test_client().post(path, data=body, content_type=content_type, headers=bearer(tokens[who]))
        assert response.status_code == 202, response.json
        return response.json["file_id"], expected

    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(send, uploads))

    ids = [file_id for file_id, _ in accepted]
    assert len(set(ids)) == 50

    def settled():
        statuses = _statuses(ids)
        return statuses if "pending" not in statuses.values() else None

    final = wait_for(settled, timeout=180, interval=0.5)
    assert final == {file_id: expected for file_id, expected in accepted}
    # each request slot shows its newest good file; older ones are its history
    Session.remove()
    for request in requests:
        current = Session.execute(
            select(File.kind, func.count()).where(File.request_id == request.id, File.status == "ready",
                                                  File.replaced_by_id.is_(None)).group_by(File.kind)
        ).all()
        assert all(count == 1 for _, count in current), current
    assert quarantined(media) == []


# ---- crashes -----------------------------------------------------------------------------------------

def _pending_upload(app, committed, media, monkeypatch) -> tuple[dict, int]:
    """An upload accepted by the API and committed, its validation not queued yet (the test queues it)."""
    city = make_city()
    admin = create_user("admin")
    request = make_request(city.id)
    with app.app_context():
        token = issue_token(admin)
    body, content_type = multipart("БСО.jpg", jpeg_bytes(120, 90, noise=True))
    with monkeypatch.context() as patched:
        patched.setattr(file_tasks.validate, "apply_async", lambda *args, **kwargs: None)
        response = app.test_client().post(f"/api/requests/{request.id}/upload-bso", data=body,
                                          content_type=content_type, headers=bearer(token))
    assert response.status_code == 202
    return response.json, request.id


def _paused_pid(point: str, timeout: float = 60) -> int:
    fault = key("test", "files-fault", point)
    return int(wait_for(lambda: get_redis().get(fault), timeout=timeout, interval=0.1))


def _settled(job_id: str, media: backend.Storage) -> bool:
    """The job has ended and the quarantine is empty (a redelivery after the decision tidies it)."""
    return _job_finished(job_id) and not quarantined(media)


def _assert_settled_exactly_once(accepted: dict, request_id: int, media: backend.Storage,
                                 attempts: int) -> File:
    Session.remove()
    row = Session.get(File, accepted["file_id"])
    assert row.status == "ready" and row.reject_reason is None
    assert media_files(media) == [row.storage_path]  # one copy, no half-written temporary
    assert quarantined(media) == []
    job = Session.get(Job, uuid.UUID(accepted["job_id"]))
    assert job.status == "succeeded" and job.attempts == attempts and job.result["status"] == "ready"
    events = Session.scalars(select(RequestEvent).where(RequestEvent.request_id == request_id,
                                                        RequestEvent.field == "bso_file_path")).all()
    assert [e.new_value for e in events] == [row.storage_path]  # linked exactly once
    Session.remove()
    return row


POOL_KILLS = [("local", "after_claim"), ("local", "after_promote"), ("local", "after_commit"),
              ("s3", "after_promote")]  # S3 once, where it matters: copied, not yet committed


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.parametrize("media, point", POOL_KILLS, indirect=["media"])
def test_pool_process_killed_mid_validation_is_redelivered(app, committed, media, monkeypatch, tmp_path, point):
    """The pool child running the validation dies (SIGKILL, as the OOM killer would): the parent
    requeues the message (acks late, reject on worker lost) and the next child finishes the file."""
    accepted, request_id = _pending_upload(app, committed, media, monkeypatch)
    queue = f"files-crash-{uuid.uuid4().hex[:8]}"
    worker = FaultWorker(queue, tmp_path, media, LEADLINE_FAULT_FILES=f"{point}:120")
    try:
        file_tasks.validate.apply_async(args=[accepted["file_id"], accepted["job_id"]], queue=queue)
        child = _paused_pid(point)
        assert child != worker.process.pid
        expected_before = "ready" if point == "after_commit" else "pending"
        assert _statuses([accepted["file_id"]])[accepted["file_id"]] == expected_before
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: _settled(accepted["job_id"], media), timeout=90, interval=0.2)
        # After the commit the decision and the job's end are already stored: the redelivery only
        # removes the quarantined bytes and does not count as an attempt.
        _assert_settled_exactly_once(accepted, request_id, media, 1 if point == "after_commit" else 2)
    finally:
        worker.stop()


def _job_finished(job_id: str) -> bool:
    Session.remove()
    status = Session.scalar(select(Job.status).where(Job.id == uuid.UUID(job_id)))
    Session.remove()
    return status in ("succeeded", "failed")


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_claim", "after_promote"])
def test_whole_worker_killed_mid_validation_is_redelivered_to_the_next_worker(app, committed, media, monkeypatch,
                                                                              tmp_path, point):
    """The whole worker (main process and child) is SIGKILLed: the message stays unacknowledged in
    Redis; the next worker restores it once the visibility timeout has passed (short here) and the
    file ends in the right state exactly once."""
    accepted, request_id = _pending_upload(app, committed, media, monkeypatch)
    queue = f"files-crash-{uuid.uuid4().hex[:8]}"
    first = FaultWorker(queue, tmp_path, media, LEADLINE_FAULT_FILES=f"{point}:120")
    second = None
    try:
        file_tasks.validate.apply_async(args=[accepted["file_id"], accepted["job_id"]], queue=queue)
        _paused_pid(point)
        first.kill_all()
        assert _statuses([accepted["file_id"]])[accepted["file_id"]] == "pending"
        time.sleep(3)  # older than the next worker's visibility timeout
        second = FaultWorker(queue, tmp_path, media, LEADLINE_FAULT_FILES=f"{point}:120", BROKER_VISIBILITY_TIMEOUT="2")
        wait_for(lambda: _settled(accepted["job_id"], media), timeout=90, interval=0.2)
        _assert_settled_exactly_once(accepted, request_id, media, 2)
    finally:
        first.stop()
        if second is not None:
            second.stop()


# ---- the cap on a real server --------------------------------------------------------------------------

@pytest.mark.slow
@both_backends
def test_chunked_200_mb_upload_to_gunicorn_gets_413_with_flat_memory(app, committed, media, tmp_path):
    """A real gunicorn worker, a chunked body (no Content-Length) of up to 200 MB: the answer is a 413
    once the 10 MB cap is passed, and the worker's resident memory does not grow with the body."""
    import psutil

    city = make_city()
    request = make_request(city.id)
    with app.app_context():
        token = issue_token(create_user("admin"))
    port = embedded.free_port()
    env = {**os.environ, "APP_ENV": "test", "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING", **media.environment()}
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                               "api:create_app()"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        def answering():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(answering, timeout=60, interval=0.2)
        worker = wait_for(lambda: psutil.Process(server.pid).children(), timeout=30)[0]
        # Warm the worker up (imports, connections) on the same path: a small upload refused for its name.
        body, content_type = multipart("warm-up.exe", b"MZ")
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        warm.request("POST", f"/api/requests/{request.id}/upload-bso", body,
                     {"Authorization": f"Bearer {token}", "Content-Type": content_type})
        assert warm.getresponse().status == 422
        warm.close()
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        boundary = "chunkedBoundary42"
        connection.sendall(
            f"POST /api/requests/{request.id}/upload-bso HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        first = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n\r\n"
                 ).encode() + b"\xff\xd8\xff"
        connection.sendall(b"%x\r\n%s\r\n" % (len(first), first))
        before = worker.memory_info().rss
        peak, sent, chunk = before, len(first), b"\x00" * 65536
        try:
            while sent < 200 * 1024 * 1024:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if sent % (4 * 1024 * 1024) < len(chunk):
                    peak = max(peak, worker.memory_info().rss)
        except OSError:
            pass  # the server stopped reading and closed: expected
        answer = connection.recv(4096)
        connection.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"file_too_large" in answer
        assert sent < 64 * 1024 * 1024  # refused long before the 200 MB were sent
        assert peak - before < 16 * 1024 * 1024, f"worker RSS grew by {(peak - before) / 1e6:.1f} MB"
        assert quarantined(media) == []
    finally:
        stop_process_group(server)
        log.close()
