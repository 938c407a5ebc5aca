"""The S3-compatible implementation of storage/backend.py (MinIO, a cloud S3; the tests use moto's server).

One bucket, two key prefixes: `quarantine/<token>` for uploads not yet validated and
`media/<relative path>` for the media layout (the same relative paths the database stores):
- an upload streams to `quarantine/<token>` in parts of PART_SIZE (a multipart upload; a file smaller
  than one part goes up in one PUT at commit), so at most one part per upload is held in memory;
  an unfinished multipart upload is the local `.part` file: the cleanup aborts it once stale;
- the worker downloads the quarantined object into a temporary file under QUARANTINE_ROOT (a local
  scratch folder of its own host) for the validators, and removes it afterwards;
- promotion is a server-side copy to `media/...` (no byte passes through the worker); a PUT or a copy
  is atomic in S3, and repeating it writes the same bytes under the same key;
- the quarantined object of a decided file is deleted a moment later, with others, in one DeleteObjects
  request sent by a thread of the worker (`discard_quarantined`): the worker does not wait for a DELETE
  per file; what a killed process had not sent yet is removed by files.cleanup, as after any crash;
- serving streams the object through the API (same headers and authorization as local disk, ranges
  asked of S3 directly) or, with S3_PRESIGN_SECONDS, redirects to a short-lived presigned URL.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.backend import QuarantineWriter, Storage, UploadTooLarge, is_token, new_token
from storage.paths import BadPath, PathNotFound, check_relative_path
from storage.rejections import Rejected

log = logging.getLogger(__name__)

PART_SIZE = 5 * 1024 * 1024  # S3's smallest part (but the last)
READ_CHUNK = 1024 * 1024
QUARANTINE_PREFIX = "quarantine/"
MEDIA_PREFIX = "media/"
MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
DISCARD_BATCH = 1000  # DeleteObjects' limit
DISCARD_LINGER = 0.5  # seconds a discarded key waits for others to share its request
FLUSH_TIMEOUT = 30.0


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING_CODES


class S3QuarantineWriter(QuarantineWriter):
    """One upload into `quarantine/<token>`. The part being filled waits in a temporary file of the local
    scratch folder, not in memory: whatever the upload's size, the process holds a few chunks only."""

    def __init__(self, storage: "S3Storage", max_bytes: int):
        self.storage = storage
        self.max_bytes = max_bytes
        self.size = 0
        self.token = new_token()
        self.key = QUARANTINE_PREFIX + self.token
        storage.scratch_root.mkdir(parents=True, exist_ok=True)
        self.part = tempfile.TemporaryFile(dir=storage.scratch_root, prefix=".part.")
        self.part_size = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.done = False

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise UploadTooLarge()
        self.part.write(data)
        self.part_size += len(data)
        if self.part_size >= PART_SIZE:
            self._upload_part()

    def _upload_part(self) -> None:
        client, bucket = self.storage.client, self.storage.bucket
        if self.upload_id is None:
            self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=self.key)["UploadId"]
        number = len(self.parts) + 1
        self.part.flush()
        self.part.seek(0)
        answer = client.upload_part(Bucket=bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                                    Body=self.part, ContentLength=self.part_size)
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.part.seek(0)
        self.part.truncate()
        self.part_size = 0

    def commit(self) -> None:
        client, bucket = self.storage.client, self.storage.bucket
        if self.upload_id is None:  # smaller than a part: one PUT
            self.part.flush()
            self.part.seek(0)
            client.put_object(Bucket=bucket, Key=self.key, Body=self.part, ContentLength=self.part_size)
        else:
            if self.part_size:
                self._upload_part()
            client.complete_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                                             MultipartUpload={"Parts": self.parts})
        self.done = True
        self.part.close()

    def abort(self) -> None:
        self.part.close()
        if self.done or self.upload_id is None:
            self.done = True
            return
        self.done = True
        with contextlib.suppress(ClientError):
            self.storage.client.abort_multipart_upload(Bucket=self.storage.bucket, Key=self.key,
                                                       UploadId=self.upload_id)


class _Discarder:
    """Quarantined keys to delete, sent in batches (DeleteObjects) by a daemon thread of this process.

    A key waits at most DISCARD_LINGER for others, and flush() sends what is left (at a worker process's
    end). Each process has its own (a forked child starts empty: the keys are its parent's to send)."""

    def __init__(self, storage: "S3Storage"):
        self.storage = storage
        self.pid = 0

    def _for_this_process(self) -> None:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.condition = threading.Condition()
            self.keys: list[str] = []
            self.sending = 0
            self.thread: threading.Thread | None = None
            atexit.register(self.flush)

    def add(self, key: str) -> None:
        self._for_this_process()
        with self.condition:
            self.keys.append(key)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="s3-discard", daemon=True)
                self.thread.start()
            self.condition.notify_all()

    def pending(self) -> int:
        self._for_this_process()
        with self.condition:
            return len(self.keys) + self.sending

    def _run(self) -> None:
        while True:
            with self.condition:
                while not self.keys:
                    self.condition.wait()
                deadline = time.monotonic() + DISCARD_LINGER
                while 0 < len(self.keys) < DISCARD_BATCH and (left := deadline - time.monotonic()) > 0:
                    self.condition.wait(left)
                batch, self.keys = self.keys[:DISCARD_BATCH], self.keys[DISCARD_BATCH:]
                self.sending = len(batch)
            try:
                self._send(batch)
            finally:
                with self.condition:
                    self.sending = 0
                    self.condition.notify_all()

    def flush(self) -> None:
        """Send every key still waiting, and wait for the batch the thread is sending."""
        self._for_this_process()
        with self.condition:
            keys, self.keys = self.keys, []
        for start in range(0, len(keys), DISCARD_BATCH):
            self._send(keys[start:start + DISCARD_BATCH])
        with self.condition:
            self.condition.wait_for(lambda: not self.sending, timeout=FLUSH_TIMEOUT)

    def _send(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            answer = self.storage.client.delete_objects(
                Bucket=self.storage.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True})
        except Exception:  # the storage is down: files.cleanup removes these later
            log.warning("could not delete %d quarantined objects; files.cleanup will", len(keys), exc_info=True)
            return
        for error in answer.get("Errors", []):
            log.warning("could not delete %s: %s", error.get("Key"), error.get("Code"))


class S3Storage(Storage):
    accel_prefix = None  # nginx cannot read a bucket: the API streams or redirects

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 scratch_root: str | os.PathLike | None = None, presign_seconds: int = 0):
        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.region = region or "us-east-1"
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        # Where the worker puts a quarantined file while it validates it (local to its host).
        self.scratch_root = Path(scratch_root or tempfile.gettempdir()).absolute()
        self.presign_seconds = presign_seconds
        self._client = None
        self._client_pid = 0
        self._discarder = _Discarder(self)
        self._copier: ThreadPoolExecutor | None = None
        self._copier_pid = 0

    @property
    def client(self):
        """One client per process (boto3 clients are thread-safe, but not to be shared across a fork)."""
        if self._client is None or self._client_pid != os.getpid():
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
                # Checksums only where S3 requires them: the newer default (trailing CRC32 on every PUT)
                # is refused by several S3-compatible servers; the worker hashes every file anyway.
                config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                              retries={"max_attempts": 3, "mode": "standard"},
                              connect_timeout=5, read_timeout=60, max_pool_connections=32,
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"),
            )
            self._client_pid = os.getpid()
        return self._client

    def environment(self) -> dict[str, str]:
        """The settings a child process needs to use this same storage."""
        env = {"STORAGE_BACKEND": "s3", "S3_BUCKET": self.bucket, "S3_REGION": self.region,
               "QUARANTINE_ROOT": str(self.scratch_root), "S3_PRESIGN_SECONDS": str(self.presign_seconds)}
        for name, value in (("S3_ENDPOINT_URL", self.endpoint_url), ("S3_ACCESS_KEY_ID", self.access_key_id),
                            ("S3_SECRET_ACCESS_KEY", self.secret_access_key)):
            if value:
                env[name] = value
        return env

    def check(self) -> str:
        self.client.head_bucket(Bucket=self.bucket)
        return f"bucket {self.bucket} answers"

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    # ---- quarantine ---------------------------------------------------------------------------------

    def quarantine_writer(self, max_bytes: int) -> S3QuarantineWriter:
        return S3QuarantineWriter(self, max_bytes)

    @contextlib.contextmanager
    def local_quarantine_file(self, token: str) -> Iterator[Path]:
        if not is_token(token):
            raise Rejected("missing")
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=QUARANTINE_PREFIX + token)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(errno.ENOENT, "quarantined object is gone", token) from None
            raise
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{token}.", suffix=".validating", dir=self.scratch_root)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as local, contextlib.closing(body):
                for chunk in body.iter_chunks(READ_CHUNK):
                    local.write(chunk)
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def delete_quarantined(self, token: str) -> None:
        if not is_token(token):
            return
        key = QUARANTINE_PREFIX + token
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def discard_quarantined(self, token: str) -> None:
        if is_token(token):
            self._discarder.add(QUARANTINE_PREFIX + token)

    def flush(self) -> None:
        self._discarder.flush()

    def warm(self) -> None:
        try:
            _ = self.client  # boto3's import and the client's service models: ~0.3 s of CPU in each process
        except Exception:  # a malformed setting: the first request reports it, the process still starts
            log.warning("could not build the S3 client", exc_info=True)

    def _unfinished_uploads(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Uploads", [])

    def quarantine_entries(self) -> Iterator[tuple[str, float, bool]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=QUARANTINE_PREFIX):
            for item in page.get("Contents", []):
                token = item["Key"][len(QUARANTINE_PREFIX):]
                if is_token(token):
                    yield token, item["LastModified"].timestamp(), True
        for upload in self._unfinished_uploads(QUARANTINE_PREFIX):
            token = upload["Key"][len(QUARANTINE_PREFIX):]
            if is_token(token):
                yield token, upload["Initiated"].timestamp(), False

    def delete_unfinished(self, token: str) -> None:
        """Abort the multipart uploads still open for a quarantine token (an upload cut off mid-way)."""
        for upload in self._unfinished_uploads(QUARANTINE_PREFIX + token):
            with contextlib.suppress(ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    # ---- media --------------------------------------------------------------------------------------

    @staticmethod
    def media_key(relative_path: str) -> str:
        return MEDIA_PREFIX + check_relative_path(relative_path)

    def promote(self, token: str, relative_path: str) -> None:
        if not is_token(token):
            raise Rejected("missing")
        target = self.media_key(relative_path)
        try:
            self.client.copy_object(Bucket=self.bucket, Key=target,
                                    CopySource={"Bucket": self.bucket, "Key": QUARANTINE_PREFIX + token})
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(errno.ENOENT, "quarantined object is gone", token) from None
            raise

    def start_promotion(self, token: str, relative_path: str) -> Future[None]:
        """The copy runs in a thread of this process while the worker prepares the file's decision (which
        it commits only once the copy is done): the worker does not wait for S3 and PostgreSQL in turn."""
        if self._copier is None or self._copier_pid != os.getpid():
            self._copier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-promote")
            self._copier_pid = os.getpid()
        return self._copier.submit(self.promote, token, relative_path)

    def delete_media(self, relative_path: str) -> None:
        try:
            key = self.media_key(relative_path)
        except (BadPath, PathNotFound):
            return
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def media_exists(self, relative_path: str) -> bool:
        try:
            self.media_info(relative_path)
        except (BadPath, PathNotFound):
            return False
        return True

    def media_info(self, relative_path: str) -> tuple[int, float]:
        """(size, modification time) of a media object; PathNotFound / BadPath."""
        key = self.media_key(relative_path)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                raise PathNotFound(relative_path) from None
            raise
        return int(head["ContentLength"]), head["LastModified"].timestamp()

    def read_media(self, relative_path: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """The bytes of a media object, or of [start, end) of it, in chunks; PathNotFound / BadPath."""
        key = self.media_key(relative_path)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(**arguments)["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise PathNotFound(relative_path) from None
            raise
        return _Chunks(body)  # type: ignore[return-value]

    def media_paths(self) -> Iterator[str]:
        """Every relative path stored under media/ (what storage-migrate walks)."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=MEDIA_PREFIX):
            for item in page.get("Contents", []):
                yield item["Key"][len(MEDIA_PREFIX):]

    def presigned_url(self, relative_path: str, *, content_type: str, disposition: str, cache_control: str) -> str:
        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=self.presign_seconds,
            Params={"Bucket": self.bucket, "Key": self.media_key(relative_path),
                    "ResponseContentType": content_type, "ResponseContentDisposition": disposition,
                    "ResponseCacheControl": cache_control},
        )

    def remove_stale_temporaries(self, older_than: float) -> int:
        """Abort multipart uploads into media/ that a crashed process left open (a copy never leaves any),
        and remove the scratch copies a killed worker left on this host."""
        removed = 0
        for upload in self._unfinished_uploads(MEDIA_PREFIX):
            if upload["Initiated"].timestamp() < older_than:
                with contextlib.suppress(ClientError):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    removed += 1
        for path in self.stale_scratch_files(older_than):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    def stale_scratch_files(self, older_than: float) -> Iterator[Path]:
        """Temporary copies a killed worker left in its scratch folder."""
        try:
            entries = list(os.scandir(self.scratch_root))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".validating"):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat(follow_symlinks=False).st_mtime < older_than:
                        yield Path(entry.path)


class _Chunks:
    """An object's body as an iterable of chunks that closes its connection when closed, read or not
    (a WSGI server calls close(); a HEAD never iterates)."""

    def __init__(self, body):
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.body.iter_chunks(READ_CHUNK)
        finally:
            self.body.close()

    def close(self) -> None:
        self.body.close()
