"""Moving the media layout from one storage to another (`flask --app api storage-migrate --to s3`).

Each file is streamed from the source into the target's quarantine and promoted there, the way the
application itself writes, then read back from the target and compared by sha256. A file already in the
target with the right sha256 is skipped, so a run that was stopped (or failed on a few files) is simply
run again: it copies what is missing or wrong and verifies the rest. The expected sha256 is the one the
database recorded when there is one (a source file that no longer matches it is reported, not copied),
else the source's own.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

from storage.backend import Storage
from storage.paths import BadPath, PathNotFound

log = logging.getLogger(__name__)

MAX_MEDIA_BYTES = 1 << 40  # no cap when moving what is stored already


@dataclass
class MigrationReport:
    copied: int = 0
    skipped: int = 0  # in the target already, verified
    missing: list[str] = field(default_factory=list)  # referenced by a row, absent from the source
    failed: list[str] = field(default_factory=list)  # source differs from its row, or the copy did not verify

    @property
    def ok(self) -> bool:
        return not self.missing and not self.failed


def sha256_of(storage: Storage, relative_path: str) -> str:
    digest = hashlib.sha256()
    for chunk in storage.read_media(relative_path):
        digest.update(chunk)
    return digest.hexdigest()


def migrate(source: Storage, target: Storage, known: Iterable[tuple[str, str | None]], *,
            progress: Callable[[str, str], None] = lambda path, outcome: None) -> MigrationReport:
    """Copy every media file of `source` (and every path of `known`, with its recorded sha256 or None)
    into `target`, verified."""
    expected: dict[str, str | None] = {}
    for path, sha256 in known:
        expected[path] = sha256 or expected.get(path)
    for path in source.media_paths():
        expected.setdefault(path, None)
    report = MigrationReport()
    for path in sorted(expected):
        outcome = _migrate_one(source, target, path, expected[path])
        if outcome == "copied":
            report.copied += 1
        elif outcome == "skipped":
            report.skipped += 1
        elif outcome == "missing":
            report.missing.append(path)
        else:
            report.failed.append(path)
        progress(path, outcome)
    return report


def _migrate_one(source: Storage, target: Storage, path: str, recorded: str | None) -> str:
    try:
        if target.media_exists(path):
            want = recorded or sha256_of(source, path)
            if sha256_of(target, path) == want:
                return "skipped"
        chunks = source.read_media(path)
    except (PathNotFound, BadPath):
        return "missing"
    writer = target.quarantine_writer(MAX_MEDIA_BYTES)
    digest = hashlib.sha256()
    try:
        for chunk in chunks:
            digest.update(chunk)
            writer.write(chunk)
        if recorded and digest.hexdigest() != recorded:
            writer.abort()
            log.error("storage-migrate: %s differs from its recorded sha256: not copied", path)
            return "source_differs"
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    try:
        target.promote(writer.token, path)
    finally:
        target.delete_quarantined(writer.token)
    if sha256_of(target, path) != digest.hexdigest():
        log.error("storage-migrate: %s did not verify in the target", path)
        return "not_verified"
    return "copied"
