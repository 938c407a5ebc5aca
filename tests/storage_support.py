"""Storage for the tests on both backends: local disk in the test's own folders, or a bucket of its own
on a real S3-protocol server (moto's standalone server, a process of its own on this machine, as
production talks to MinIO or a cloud S3), and what the tests read back from either."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from embedded import free_port
from storage.backend import LocalStorage, Storage

BACKENDS = ("local", "s3")
# A test marked with this runs once on local disk and once on S3 (conftest's `media` fixture).
both_backends = pytest.mark.parametrize("media", BACKENDS, indirect=True)
# moto accepts any credentials; these only have to look like keys.
S3_TEST_CREDENTIALS = {"access_key_id": "leadline-test-key", "secret_access_key": "leadline-test-secret-value"}


class S3Server:
    """`python -m moto.server` on a free loopback port, stopped by stop()."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / "moto-server.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.url + "/moto-api/", timeout=1)
                break
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto's S3 server did not start (see moto-server.log)") from None
                time.sleep(0.1)

    def storage(self, scratch: Path, bucket: str | None = None) -> Storage:
        from storage.s3 import S3Storage

        store = S3Storage(bucket or f"test-{uuid.uuid4().hex[:12]}", endpoint_url=self.url, region="us-east-1",
                          scratch_root=scratch, **S3_TEST_CREDENTIALS)
        store.ensure_bucket()
        return store

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def make_storage(backend: str, root: Path, s3_server: S3Server | None) -> Storage:
    if backend == "s3":
        assert s3_server is not None
        return s3_server.storage(root / "scratch")
    return LocalStorage(root / "media", root / "quarantine")


def media_bytes(store: Storage, relative_path: str) -> bytes:
    return b"".join(store.read_media(relative_path))


def media_files(store: Storage) -> list[str]:
    """Every file of the media layout (local: half-written temporaries included)."""
    if isinstance(store, LocalStorage):
        if not store.media_root.exists():
            return []
        return sorted(str(p.relative_to(store.media_root)) for p in store.media_root.rglob("*")
                      if p.is_file() or p.is_symlink())
    return sorted(store.media_paths())


def quarantined(store: Storage) -> list[str]:
    """The quarantine's entries, finished or not (local: every name in the folder), once this process has
    sent the deletions it left for later (S3: a worker sends them within a second, in a batch)."""
    store.flush()
    if isinstance(store, LocalStorage):
        return sorted(p.name for p in store.quarantine_root.glob("*")) if store.quarantine_root.exists() else []
    return sorted(token for token, _, _ in store.quarantine_entries())


def put_media(store: Storage, relative_path: str, data: bytes) -> None:
    """Bytes into the media layout the way the application writes them: quarantine, then promotion."""
    writer = store.quarantine_writer(len(data) + 1)
    writer.write(data)
    writer.commit()
    store.promote(writer.token, relative_path)
    store.delete_quarantined(writer.token)
