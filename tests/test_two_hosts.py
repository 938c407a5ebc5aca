"""Two hosts, one deployment: each host runs its own API (gunicorn) and heavy worker (celery) processes
with its own empty local folders, and they share PostgreSQL, Redis and the S3 server, nothing else.

An upload accepted by host A's API is validated by host B's worker (A's worker is not started, so only
B can take it) and then served byte-identical by A's API and by B's API; a recording imported from the
mailbox by B's worker is served by A's API. Neither host's local folders ever hold a media file.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from embedded import free_port
from models import Recording
from models.core.business_time import business_tz
from tasks.celery_app import celery_app
from tasks.queues import HEAVY
from tests.factories import TEST_PASSWORD, create_user, make_campaign, make_city, make_request
from tests.file_samples import jpeg_bytes
from tests.imap_server import imap_server_fixture, mango_mail, mp3_bytes, recording_name
from tests.storage_support import S3_TEST_CREDENTIALS
from tests.support import CELERY, REPO, multipart, stop_process_group, wait_for

imap_server = imap_server_fixture()
LINE = "74951000077"


class Host:
    """One host's processes: its API and (when started) its heavy worker, with folders of its own."""

    def __init__(self, name: str, root: Path, bucket: str, endpoint: str, extra: dict[str, str]):
        self.name = name
        self.root = root / name
        self.folders = {folder: self.root / folder for folder in ("media", "quarantine", "tmp")}
        for folder in self.folders.values():
            folder.mkdir(parents=True)
        self.env = {
            **os.environ, "APP_ENV": "test", "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING",
            "STORAGE_BACKEND": "s3", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": endpoint, "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": S3_TEST_CREDENTIALS["access_key_id"],
            "S3_SECRET_ACCESS_KEY": S3_TEST_CREDENTIALS["secret_access_key"],
            "MEDIA_ROOT": str(self.folders["media"]), "QUARANTINE_ROOT": str(self.folders["quarantine"]),
            "TMPDIR": str(self.folders["tmp"]), **extra,
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self.logs = []

    def _start(self, kind: str, command: list[str]) -> None:
        log = open(self.root / f"{kind}.log", "wb")
        self.logs.append(log)
        self.processes.append(subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def start_api(self) -> None:
        self._start("api", [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
                            "api:create_app()"])

    def start_worker(self) -> None:
        self._start("worker", [CELERY, "-A", "tasks", "worker", "--queues", HEAVY, "--concurrency", "1",
                               "--hostname", f"heavy-{self.name}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip",
                               "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"])

    def wait_answering(self) -> None:
        def answering():
            try:
                return requests.get(self.url + "/api/health", timeout=2).status_code < 500
            except requests.RequestException:
                return False

        wait_for(answering, timeout=90, interval=0.3)

    def media_files_on_disk(self) -> list[Path]:
        """What the media and quarantine folders hold (the scratch copies a validation makes included)."""
        return [path for name in ("media", "quarantine") for path in self.folders[name].rglob("*") if path.is_file()]

    def stop(self) -> None:
        for process in self.processes:
            stop_process_group(process)
        for log in self.logs:
            log.close()


@pytest.fixture()
def heavy_queue_to_the_hosts(celery_worker_thread):
    """The in-process worker of the other tests stops taking the heavy queue while the hosts run."""
    hostname = celery_worker_thread.hostname
    celery_app.control.cancel_consumer(HEAVY, destination=[hostname], reply=True, timeout=10)
    try:
        yield
    finally:
        celery_app.control.add_consumer(HEAVY, destination=[hostname], reply=True, timeout=10)


@pytest.mark.slow
@pytest.mark.worker
def test_upload_on_a_validated_by_b_served_by_both_and_a_recording_of_b_served_by_a(
        committed, s3_server, tmp_path, imap_server, heavy_queue_to_the_hosts):
    bucket = s3_server.storage(tmp_path / "setup").bucket  # the shared bucket, created once
    folder = f"TwoHosts-{uuid.uuid4().hex[:8]}"
    imap_server.append([], folder=folder)
    mailbox = {"IMAP_HOST": imap_server.host, "IMAP_PORT": str(imap_server.port), "IMAP_USER": imap_server.user,
               "IMAP_PASSWORD": imap_server.password, "IMAP_SECURITY": "plain", "IMAP_FOLDER": folder,
               "IMAP_MARK_SEEN": "false"}
    city = make_city()
    make_campaign(LINE)
    admin = create_user("admin")
    request_id = make_request(city.id).id
    committed.commit()
    hosts = [Host(name, tmp_path, bucket, s3_server.url, mailbox) for name in ("a", "b")]
    a, b = hosts
    try:
        a.start_api()
        b.start_api()
        b.start_worker()  # A's worker is never started: only B can validate and import
        a.wait_answering()
        b.wait_answering()
        sessions = {}
        for host in hosts:
            session = requests.Session()
            answer = session.post(host.url + "/api/auth/login", json={"login": admin.login, "password": TEST_PASSWORD},
                                  timeout=30)
            assert answer.status_code == 200, answer.text
            session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
            sessions[host.name] = session

        # An upload accepted by A ...
        data = jpeg_bytes(160, 120, noise=True)
        body, content_type = multipart("БСО двух хостов.jpg", data)
        accepted = sessions["a"].post(f"{a.url}/api/requests/{request_id}/upload-bso", data=body,
                                      headers={"Content-Type": content_type}, timeout=30)
        assert accepted.status_code == 202, accepted.text
        file_id, job_id = accepted.json()["file_id"], accepted.json()["job_id"]

        # ... validated by B's worker ...
        def decided():
            state = sessions["a"].get(f"{a.url}/api/files/{file_id}", timeout=10).json()
            return state if state["status"] != "pending" else None

        state = wait_for(decided, timeout=120, interval=0.3)
        assert state["status"] == "ready", state
        job = sessions["b"].get(f"{b.url}/api/jobs/{job_id}", timeout=10).json()
        assert job["status"] == "succeeded" and job["attempts"] == 1

        # ... and served byte-identical by both APIs, with the same headers.
        served = {name: sessions[name].get(f"{host.url}/api/secure-files/view/{state['file_path']}", timeout=30)
                  for name, host in (("a", a), ("b", b))}
        for answer in served.values():
            assert answer.status_code == 200 and answer.content == data
            assert answer.headers["Content-Type"] == "image/jpeg"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert served["a"].headers["Content-Disposition"] == served["b"].headers["Content-Disposition"]
        assert served["a"].headers["ETag"] == served["b"].headers["ETag"]

        # A recording imported by B (from the mailbox, on B's worker) is served by A.
        audio = mp3_bytes(15_000, 901)
        ten_minutes_ago = (datetime.now(timezone.utc) - timedelta(minutes=10)).astimezone(business_tz())
        imap_server.append([mango_mail([(recording_name(ten_minutes_ago, "79160000077", LINE), audio)])], folder=folder)
        run = sessions["b"].post(f"{b.url}/api/recordings/download", json={"days_back": 3}, timeout=30)
        assert run.status_code == 202, run.text

        def finished():
            job = sessions["b"].get(f"{b.url}/api/jobs/{run.json()['job_id']}", timeout=10).json()
            return job if job["status"] in ("succeeded", "failed") else None

        job = wait_for(finished, timeout=120, interval=0.3)
        assert job["status"] == "succeeded" and job["result"]["imported"] == 1, job
        committed.expire_all()
        recording = committed.query(Recording).filter(Recording.sha256 == hashlib.sha256(audio).hexdigest()).one()
        committed.rollback()
        heard = sessions["a"].get(f"{a.url}/api/recordings/{recording.id}/audio", timeout=30)
        assert heard.status_code == 200 and heard.content == audio
        assert heard.headers["Content-Type"].startswith("audio/")

        # Nothing of it ever lived on either host's disk.
        assert a.media_files_on_disk() == [] and b.media_files_on_disk() == []
    finally:
        for host in hosts:
            host.stop()
