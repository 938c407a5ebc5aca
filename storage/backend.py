"""Where the bytes live. One interface, two implementations: local disk (the default) and an
S3-compatible bucket (storage/s3.py), chosen with STORAGE_BACKEND.

Layout: uploads are written to the quarantine (QUARANTINE_ROOT) under a random token and stay
there until a worker has validated them; a good file is then promoted into the media layout
(MEDIA_ROOT/zayvka/bso/<token>.<ext>, ...). The token is random (128 bits) and chosen once, at
upload, so a redelivered validation promotes to the same name: promotion is idempotent.

The S3 backend implements the same methods (quarantine as a key prefix that the worker downloads
into a temporary file in `local_quarantine_file`, promotion as a server-side copy, serving streamed
through the API or as a short-lived presigned URL instead of X-Accel-Redirect). Nothing outside
storage/ touches the bytes but through this interface.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from abc import ABC, abstractmethod
from concurrent.futures import Future
from pathlib import Path
from typing import Iterator

from storage.paths import BadPath, PathNotFound, check_relative_path
from storage.rejections import Rejected

TOKEN_BYTES = 16
PARTIAL_SUFFIX = ".part"


class UploadTooLarge(Exception):
    """More bytes arrived than the kind allows."""


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def is_token(value: str) -> bool:
    return len(value) == TOKEN_BYTES * 2 and all(ch in "0123456789abcdef" for ch in value)


class QuarantineWriter(ABC):
    token: str
    size: int

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Every byte is durable: the upload may be acknowledged."""

    @abstractmethod
    def abort(self) -> None:
        """Forget the partial upload."""


class Storage(ABC):
    # quarantine
    @abstractmethod
    def quarantine_writer(self, max_bytes: int) -> QuarantineWriter: ...

    @abstractmethod
    def local_quarantine_file(self, token: str) -> contextlib.AbstractContextManager[Path]:
        """A local path to the quarantined bytes for the validator (FileNotFoundError when gone)."""

    @abstractmethod
    def delete_quarantined(self, token: str) -> None: ...

    @abstractmethod
    def quarantine_entries(self) -> Iterator[tuple[str, float, bool]]:
        """(token, modification time, finished?) of everything in the quarantine."""

    # media
    @abstractmethod
    def promote(self, token: str, relative_path: str) -> None:
        """Copy the quarantined bytes to their media path, atomically; repeating it is harmless."""

    def adopt(self, source: Path, relative_path: str) -> bool:
        """Put a copy of a file from outside (the old system's media folder) at its media path,
        atomically, leaving the source where it is; nothing is written when the file is there
        already. True when it wrote.

        This default goes through the backend's own quarantine and promotion, so any backend can
        adopt files; LocalStorage hard-links instead when it can."""
        if self.media_exists(relative_path):
            return False
        writer = self.quarantine_writer(max_bytes=source.stat().st_size)
        try:
            with open(source, "rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    writer.write(chunk)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        try:
            self.promote(writer.token, relative_path)
        finally:
            self.delete_quarantined(writer.token)
        return True

    @abstractmethod
    def delete_media(self, relative_path: str) -> None: ...

    @abstractmethod
    def media_exists(self, relative_path: str) -> bool: ...

    @abstractmethod
    def media_info(self, relative_path: str) -> tuple[int, float]:
        """(size, modification time) of a media file; PathNotFound, BadPath."""

    @abstractmethod
    def read_media(self, relative_path: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """The bytes of a media file (or of [start, end)) in chunks; PathNotFound, BadPath."""

    @abstractmethod
    def media_paths(self) -> Iterator[str]:
        """Every relative path in the media layout."""

    @abstractmethod
    def remove_stale_temporaries(self, older_than: float) -> int:
        """Remove half-written promotions and scratch copies older than the timestamp; how many."""

    @abstractmethod
    def environment(self) -> dict[str, str]:
        """The settings a child process needs to use this same storage."""

    def check(self) -> str:
        """Whether the storage answers (for the readiness check); raises when it does not."""
        return "ok"

    def delete_unfinished(self, token: str) -> None:
        """Forget an upload that was cut off before its commit."""
        self.delete_quarantined(token)

    def start_promotion(self, token: str, relative_path: str) -> "Future[None]":
        """promote(), possibly running while the caller prepares its decision (S3: the server-side copy in a
        thread of this process); result() waits for it and raises what promote() would."""
        future: Future[None] = Future()
        try:
            self.promote(token, relative_path)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)
        return future

    def discard_quarantined(self, token: str) -> None:
        """Delete quarantined bytes nothing needs any more (the file's decision is committed), possibly a
        moment later: S3 sends such deletions in batches from a thread of their own. A deletion lost
        with its process leaves bytes that files.cleanup removes, as after a crash."""
        self.delete_quarantined(token)

    def flush(self) -> None:
        """Send now whatever discard_quarantined left for later (a process about to end calls it)."""

    def warm(self) -> None:
        """Build what the first request would otherwise pay for (called when a process starts)."""

    def media_existing(self, relative_paths) -> set[str]:
        """Which of `relative_paths` exist (as media_exists answers), for checks of many files at once."""
        return {path for path in relative_paths if self.media_exists(path)}


class LocalQuarantineWriter(QuarantineWriter):
    def __init__(self, root: Path, max_bytes: int):
        self.root = root
        self.max_bytes = max_bytes
        self.size = 0
        root.mkdir(parents=True, exist_ok=True)
        while True:
            self.token = new_token()
            self.partial = root / (self.token + PARTIAL_SUFFIX)
            try:
                fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            except FileExistsError:  # pragma: no cover - 128 random bits
                continue
            break
        self.file = os.fdopen(fd, "wb", buffering=256 * 1024)
        self.closed = False

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise UploadTooLarge()
        self.file.write(data)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.closed = True
        os.rename(self.partial, self.root / self.token)

    def abort(self) -> None:
        if not self.closed:
            self.file.close()
            self.closed = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)


class LocalStorage(Storage):
    def __init__(self, media_root: str | os.PathLike, quarantine_root: str | os.PathLike,
                 accel_prefix: str | None = None):
        self.media_root = Path(media_root).absolute()
        self.quarantine_root = Path(quarantine_root).absolute()
        # nginx serves media itself when set (X-Accel-Redirect to this internal location).
        self.accel_prefix = accel_prefix or None

    # ---- quarantine ---------------------------------------------------------------------------------

    def quarantine_writer(self, max_bytes: int) -> LocalQuarantineWriter:
        return LocalQuarantineWriter(self.quarantine_root, max_bytes)

    def quarantine_path(self, token: str) -> Path:
        if not is_token(token):
            raise Rejected("missing")
        return self.quarantine_root / token

    @contextlib.contextmanager
    def local_quarantine_file(self, token: str) -> Iterator[Path]:
        path = self.quarantine_path(token)
        if not path.is_file() or path.is_symlink():
            raise FileNotFoundError(errno.ENOENT, "quarantined file is gone", str(path))
        yield path

    def delete_quarantined(self, token: str) -> None:
        if not is_token(token):
            return
        for name in (token, token + PARTIAL_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.quarantine_root / name)

    def quarantine_entries(self) -> Iterator[tuple[str, float, bool]]:
        try:
            entries = list(os.scandir(self.quarantine_root))
        except FileNotFoundError:
            return
        for entry in entries:
            name = entry.name
            finished = not name.endswith(PARTIAL_SUFFIX)
            token = name if finished else name[: -len(PARTIAL_SUFFIX)]
            if not is_token(token):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            yield token, mtime, finished

    # ---- media --------------------------------------------------------------------------------------

    def media_path(self, relative_path: str) -> Path:
        """The absolute path of a media file, refusing anything outside the layout (BadPath)."""
        check_relative_path(relative_path)
        return self.media_root / relative_path

    def promote(self, token: str, relative_path: str) -> None:
        source = self.quarantine_path(token)
        target = self.media_path(relative_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            try:
                # One filesystem (the deployment puts both roots on one volume): no byte is copied.
                os.link(source, temporary, follow_symlinks=False)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise FileNotFoundError(errno.ENOENT, "quarantined file is gone", str(source)) from exc
                shutil.copyfile(source, temporary, follow_symlinks=False)
                with open(temporary, "rb") as copied:
                    os.fsync(copied.fileno())
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        _fsync_directory(target.parent)

    def adopt(self, source: Path, relative_path: str) -> bool:
        target = self.media_path(relative_path)
        try:
            if target.stat().st_size == source.stat().st_size:
                return False
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            try:  # the same filesystem: a second name for the same bytes, nothing copied
                os.link(source, temporary, follow_symlinks=False)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise
                shutil.copyfile(source, temporary, follow_symlinks=False)
                with open(temporary, "rb") as copied:
                    os.fsync(copied.fileno())
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return True

    def delete_media(self, relative_path: str) -> None:
        try:
            path = self.media_path(relative_path)
        except BadPath:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def media_exists(self, relative_path: str) -> bool:
        try:
            self.open_media(relative_path, stat_only=True)
        except (BadPath, PathNotFound):
            return False
        return True

    def media_info(self, relative_path: str) -> tuple[int, float]:
        with self.open_media(relative_path) as handle:
            stat_result = os.fstat(handle.fileno())
        return stat_result.st_size, stat_result.st_mtime

    def read_media(self, relative_path: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        handle = self.open_media(relative_path)
        return _read_chunks(handle, start, end)

    def media_paths(self) -> Iterator[str]:
        from storage.kinds import MEDIA_DIRECTORIES

        for directory in MEDIA_DIRECTORIES:
            try:
                entries = sorted(os.scandir(self.media_root / directory), key=lambda entry: entry.name)
            except FileNotFoundError:
                continue
            for entry in entries:
                if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
                    yield f"{directory}/{entry.name}"

    def remove_stale_temporaries(self, older_than: float) -> int:
        removed = 0
        for path in self.stale_temporaries(older_than):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    def environment(self) -> dict[str, str]:
        return {"STORAGE_BACKEND": "local", "MEDIA_ROOT": str(self.media_root),
                "QUARANTINE_ROOT": str(self.quarantine_root)}

    def media_existing(self, relative_paths) -> set[str]:
        """media_exists for many paths: each folder of the layout is checked once (lstat of every
        component: no symlink), then each file with one lstat (a regular file, not a symlink). A path
        open_media would refuse (malformed, through a symlink) is not in the answer."""
        root = os.path.realpath(self.media_root)
        folders: dict[str, bool] = {}
        found = set()
        for path in relative_paths:
            try:
                check_relative_path(path)
            except (BadPath, PathNotFound):
                continue
            directory, _, name = path.rpartition("/")
            if directory not in folders:
                folders[directory] = self._plain_folder(root, directory)
            if not folders[directory]:
                continue
            try:
                mode = os.lstat(os.path.join(root, directory, name)).st_mode
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(mode):
                found.add(path)
        return found

    @staticmethod
    def _plain_folder(root: str, directory: str) -> bool:
        """A folder below the root reached without a symlink."""
        current = root
        for part in directory.split("/"):
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return False
            if not stat.S_ISDIR(mode):
                return False
        return True

    def stale_temporaries(self, older_than: float) -> Iterator[Path]:
        """Half-written promotions a crashed worker left behind."""
        from storage.kinds import MEDIA_DIRECTORIES

        for directory in MEDIA_DIRECTORIES:
            try:
                entries = list(os.scandir(self.media_root / directory))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat(follow_symlinks=False).st_mtime < older_than:
                            yield Path(entry.path)

    def open_media(self, relative_path: str, *, stat_only: bool = False):
        """Open a media file for reading without following any symlink on the way.

        Every component below MEDIA_ROOT is checked with lstat (a symlinked folder or file is
        refused: BadPath), the file is opened with O_NOFOLLOW and checked to be a regular file
        still inside the root. Returns an open binary file (or None with stat_only)."""
        check_relative_path(relative_path)
        root = os.path.realpath(self.media_root)
        current = root
        for part in relative_path.split("/"):
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                raise PathNotFound(relative_path) from None
            except NotADirectoryError:
                raise PathNotFound(relative_path) from None
            if stat.S_ISLNK(mode):
                raise BadPath("symlink")
        if os.path.commonpath([os.path.realpath(current), root]) != root:
            raise BadPath("outside the media root")
        try:
            fd = os.open(current, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise PathNotFound(relative_path) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BadPath("symlink") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PathNotFound(relative_path)
        if stat_only:
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")


def storage_unreachable(error: BaseException) -> bool:
    """The storage server could not be reached or answered with a server error (not a bug of the request:
    the client may retry). Local disk errors are not among them."""
    import sys

    if "botocore" not in sys.modules:
        return False
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    if isinstance(error, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(error, ClientError):
        return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500
    return False


def _read_chunks(handle, start: int | None, end: int | None, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    with handle:
        if start:
            handle.seek(start)
        left = None if end is None else end - (start or 0)
        while left is None or left > 0:
            chunk = handle.read(chunk_size if left is None else min(chunk_size, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_storage: Storage | None = None


def get_storage() -> Storage:
    global _storage
    if _storage is None:
        _storage = from_settings()
    return _storage


def from_settings(backend: str | None = None) -> Storage:
    """The storage the settings describe (`backend` overrides STORAGE_BACKEND: storage-migrate's target)."""
    from settings import settings

    if (backend or settings.STORAGE_BACKEND) == "s3":
        from storage.s3 import S3Storage

        return S3Storage(settings.S3_BUCKET, endpoint_url=settings.S3_ENDPOINT_URL, region=settings.S3_REGION,
                         access_key_id=settings.S3_ACCESS_KEY_ID, secret_access_key=settings.S3_SECRET_ACCESS_KEY,
                         scratch_root=settings.QUARANTINE_ROOT, presign_seconds=settings.S3_PRESIGN_SECONDS)
    return LocalStorage(settings.MEDIA_ROOT, settings.QUARANTINE_ROOT, settings.X_ACCEL_REDIRECT_PREFIX)


def configure(storage: Storage | None) -> Storage | None:
    """Use another storage (tests use temporary folders); None goes back to the settings. Returns the
    previous one."""
    global _storage
    previous, _storage = _storage, storage
    return previous
