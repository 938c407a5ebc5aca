"""Uploaded files: validation (one task per upload) and housekeeping (periodic), on the heavy queue.

`files.validate` is safe to run twice, concurrently or after a crash at any point:
- every decision is a conditional UPDATE of a `pending` row, so exactly one run finishes a file;
- the media name is chosen at upload (the quarantine token), so promotion by a second run writes
  the same path with the same bytes;
- the quarantined bytes are removed only after the final state is committed (on S3 a moment later, in a
  batch: storage.discard_quarantined; files.cleanup removes what a killed worker had not sent).
"""
from __future__ import annotations

import logging
import uuid
from concurrent import futures
from datetime import datetime, timedelta, timezone
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import case, delete, func, select, update

from models.core.db import Session, unit_of_work
from models.core.redis import SingleFlight, get_redis, key
from models.files.rules import FILE_PATH_FIELDS, VALIDATION_JOB_KIND
from models.files.tables import File
from models.ops import jobs
from models.ops.tables import Job
from models.requests.tables import RequestEvent
from settings import settings
from storage import validation
from storage.backend import get_storage, storage_unreachable
from storage.kinds import KINDS
from storage.names import check_name
from storage.rejections import REASONS, Rejected
from tasks.celery_app import celery_app
from tasks.queue import enqueue

log = logging.getLogger(__name__)

STALE_PENDING_MINUTES = 10  # a pending upload this old lost its message: queue it again
REQUEUE_GUARD_SECONDS = 600
MEDIA_TEMPORARY_MAX_AGE = 3600
BATCH = 500
# Two-key advisory lock namespace ("FIL" + kind index): one promotion per owner and kind at a time.
LOCK_NAMESPACE = 0x46494C00
KIND_INDEX = {name: index for index, name in enumerate(KINDS)}


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---- validation --------------------------------------------------------------------------------------

@celery_app.task(name="files.validate", soft_time_limit=120, time_limit=180)
def validate(file_id: int, job_id: str | None = None) -> str:
    """Validate one uploaded file; promote and link it, or reject it with the reason."""
    return run_validation(int(file_id), job_id)


def run_validation(file_id: int, job_id: str | None = None) -> str:
    with unit_of_work():  # the file and its job read, the job claimed: one transaction, ended before the check
        row, job = _load(file_id, job_id)
        if job_id is not None:
            job_id = _matching_job(job, job_id, file_id)
            if job_id is None:  # a message about a job that no longer exists or names another file
                return "ignored"
        final = _final(row) if row is not None and row.status != "pending" else None
        if row is not None and final is None:
            if job_id:
                jobs.mark_running(job_id)
            token, kind, original_name = row.quarantine_path, KINDS[row.kind], row.original_name
    if row is None:
        if job_id and jobs.claim(job_id):
            jobs.fail(job_id, "файл не найден")
        return "missing"
    if final is not None:
        return _already_final(*final, job_id)

    storage = get_storage()
    facts = validation.Facts()
    try:
        with storage.local_quarantine_file(token or "") as path:
            verdict = validation.validate(path, kind, original_name, facts)
    except Rejected as rejected:
        return _reject(file_id, job_id, token, rejected, facts)
    except FileNotFoundError:
        return _reject(file_id, job_id, token, Rejected("missing"), facts)
    except SoftTimeLimitExceeded:
        return _reject(file_id, job_id, token, Rejected("timeout"), facts)
    except Exception as exc:  # a parser tripped over this file in a way nobody foresaw: it is not trusted
        if storage_unreachable(exc):  # not the file's fault: it stays pending, files.sweep sends it again
            raise
        log.exception("file %s: validation failed unexpectedly", file_id)
        return _reject(file_id, job_id, token, Rejected("check_failed"), facts)

    _, extension = check_name(original_name)
    relative_path = f"{kind.directory}/{token}.{extension}"
    result = {"file_id": file_id, "status": "ready", "file_path": relative_path,
              "content_type": verdict.content_type, **verdict.details}
    # S3: the server-side copy runs while the decision is prepared; `ready` is committed once it is done.
    promotion = storage.start_promotion(token, relative_path)
    try:
        decided = _mark_ready(file_id, verdict, relative_path, job_id, result, promotion)
    except FileNotFoundError:  # another run finished the file and removed the quarantined bytes
        return _settle_lost_race(file_id, job_id, token)
    if not decided:
        return _settle_lost_race(file_id, job_id, token)
    storage.discard_quarantined(token)
    return "ready"


# The job's transitions (models/ops/jobs.py) are folded into the file's own units of work: one commit to
# claim, one to decide (file and job together), whatever the outcome.

def _load(file_id: int, job_id: str | None) -> tuple[File | None, Job | None]:
    """The file and the job the message names, in one round trip."""
    try:
        job_key = uuid.UUID(str(job_id)) if job_id else None
    except ValueError:
        job_key = None
    if job_key is None:
        return Session.get(File, file_id, populate_existing=True), None
    found = Session.execute(
        select(File, Job).outerjoin(Job, Job.id == job_key).where(File.id == file_id)
        .execution_options(populate_existing=True)
    ).first()
    if found is None:
        return None, Session.get(Job, job_key)
    return found[0], found[1]


def _matching_job(job: Job | None, job_id: str, file_id: int) -> str | None:
    """The job row of this file, or None (a job that names another file is not ours to touch)."""
    if job is None or job.kind != VALIDATION_JOB_KIND or (job.params or {}).get("file_id") != file_id:
        log.warning("files.validate: job %s does not belong to file %s", job_id, file_id)
        return None
    return str(job.id)


def _final(row: File) -> tuple[str, str | None, dict[str, Any]]:
    """What a decided file's redelivery needs: its status, its quarantine token and its job's result."""
    return row.status, row.quarantine_path, {"file_id": row.id, "status": row.status,
                                             "file_path": row.storage_path, "reason": row.reject_reason}


def _already_final(status: str, token: str | None, result: dict[str, Any], job_id: str | None) -> str:
    """A redelivery after the decision was committed: tidy up what the first run could not."""
    if token:
        get_storage().discard_quarantined(token)
    if job_id and jobs.claim(job_id):
        jobs.succeed(job_id, result)
    return status


def _settle_lost_race(file_id: int, job_id: str | None, token: str | None) -> str:
    with unit_of_work(read_only=True):
        row = Session.get(File, file_id, populate_existing=True)
        if row is None:
            return "missing"
        final, kind, original_name = _final(row), KINDS[row.kind], row.original_name
    status = final[0]
    if status == "pending":  # the bytes are gone and nobody decided: nothing left to validate
        return _reject(file_id, job_id, token, Rejected("missing"), validation.Facts())
    if status == "rejected" and token:
        # This run promoted bytes the deciding run refused: they must not stay in the media folder.
        extension = (original_name.rpartition(".")[2] or "").lower()
        get_storage().delete_media(f"{kind.directory}/{token}.{extension}")
    return _already_final(*final, job_id)


def _reject(file_id: int, job_id: str | None, token: str | None, rejected: Rejected,
            facts: validation.Facts) -> str:
    with unit_of_work():
        decided = Session.execute(
            update(File)
            .where(File.id == file_id, File.status == "pending")
            .values(status="rejected", reject_reason=rejected.message[:2000], validated_at=_now(),
                    size_bytes=facts.size if facts.size is not None else File.size_bytes,
                    sha256=facts.sha256, sniffed_type=facts.content_type)
        ).rowcount
        if decided and job_id:
            jobs.mark_succeeded(job_id, {"file_id": file_id, "status": "rejected", "code": rejected.code,
                                         "reason": rejected.message})
    if not decided:
        with unit_of_work(read_only=True):
            row = Session.get(File, file_id, populate_existing=True)
            final = _final(row) if row is not None else None
        return _already_final(*final, job_id) if final is not None else "missing"
    if token:
        get_storage().discard_quarantined(token)
    log.info("file %s rejected: %s", file_id, rejected.code)
    return "rejected"


def _mark_ready(file_id: int, verdict: validation.Verdict, relative_path: str, job_id: str | None,
                result: dict[str, Any], promotion: futures.Future) -> bool:
    """Commit `ready`, the link to the owner and the job's end in one unit of work, once the promotion is
    done (its error rolls the decision back and is raised); False when already decided. Either way the
    promotion has ended when this returns (a lost race may remove what it copied)."""
    try:
        return _decide_ready(file_id, verdict, relative_path, job_id, result, promotion)
    finally:
        futures.wait([promotion])


def _decide_ready(file_id: int, verdict: validation.Verdict, relative_path: str, job_id: str | None,
                  result: dict[str, Any], promotion: futures.Future) -> bool:
    # The row lock, and the owner-and-kind lock that orders promotions into the same slot, in one statement.
    owner_lock = func.pg_advisory_xact_lock(
        LOCK_NAMESPACE + case(KIND_INDEX, value=File.kind, else_=len(KIND_INDEX)),
        func.coalesce(File.request_id, File.transaction_id),
    )
    with unit_of_work():
        found = Session.execute(
            select(File, owner_lock).where(File.id == file_id).with_for_update(of=File)
            .execution_options(populate_existing=True)
        ).first()
        row = found[0] if found else None
        if row is None or row.status != "pending":
            promotion.result()
            return False
        owner_column, owner_id = (
            (File.request_id, row.request_id) if row.request_id is not None
            else (File.transaction_id, row.transaction_id)
        )
        row.status = "ready"
        row.storage_path = relative_path
        row.sha256 = verdict.sha256
        row.sniffed_type = verdict.content_type
        row.size_bytes = verdict.size
        row.validated_at = _now()
        if owner_id is not None:
            _link(row, owner_column, owner_id)
        if job_id:
            jobs.mark_succeeded(job_id, result)
        promotion.result()  # before the commit: a `ready` row never names bytes that are not there
    return True


def _link(row: File, owner_column, owner_id: int) -> None:
    """The newest good file of an owner and kind is its current one; the others stay as its history."""
    same_slot = (owner_column == owner_id, File.kind == row.kind, File.status == "ready")
    newer = Session.scalar(select(func.min(File.id)).where(*same_slot, File.id > row.id))
    if newer is not None:
        row.replaced_by_id = newer
        return
    previous = Session.scalars(
        update(File)
        .where(*same_slot, File.replaced_by_id.is_(None), File.id < row.id)
        .values(replaced_by_id=row.id)
        .returning(File.storage_path)
    ).all()
    if row.request_id is not None and row.kind in FILE_PATH_FIELDS:
        Session.add(RequestEvent(
            request_id=row.request_id, user_id=row.uploaded_by_id, action="updated",
            field=FILE_PATH_FIELDS[row.kind], old_value=previous[-1] if previous else None,
            new_value=row.storage_path, source="system",
        ))


# ---- housekeeping ------------------------------------------------------------------------------------

def job_of(file_id: int) -> str | None:
    """The unfinished validation job of a file (for re-enqueueing)."""
    job_id = Session.scalar(
        select(Job.id)
        .where(Job.kind == VALIDATION_JOB_KIND, Job.status.in_(jobs.UNFINISHED),
               Job.params["file_id"].as_integer() == file_id)
        .order_by(Job.created_at.desc())
        .limit(1)
    )
    return str(job_id) if job_id else None


@celery_app.task(name="files.sweep", soft_time_limit=120, time_limit=180)
def sweep() -> int:
    """Send the validations whose message could not be sent (the broker was down at upload time: their
    job is marked unsent) as soon as the broker answers, and queue again the uploads still pending long
    after upload (a purged queue). A validation that is merely slow is protected by a guard key."""
    queued = 0
    with unit_of_work(read_only=True):
        unsent = Session.execute(
            select(File.id, Job.id)
            .join(Job, Job.params["file_id"].as_integer() == File.id)
            .where(File.status == "pending", Job.kind == VALIDATION_JOB_KIND, Job.status == "queued",
                   Job.params.has_key(jobs.UNSENT))
            .order_by(File.id).limit(BATCH)
        ).all()
    for file_id, job_id in unsent:
        enqueue("files.validate", file_id, str(job_id))  # the broker still down: this sweep fails, the next retries
        with unit_of_work():
            jobs.note_sent(job_id)
        queued += 1
    cutoff = _now() - timedelta(minutes=STALE_PENDING_MINUTES)
    redis = get_redis()
    with unit_of_work(read_only=True):
        ids = Session.scalars(
            select(File.id).where(File.status == "pending", File.created_at < cutoff).order_by(File.id).limit(BATCH)
        ).all()
        for file_id in ids:
            if redis.set(key("files", "requeued", file_id), "1", nx=True, ex=REQUEUE_GUARD_SECONDS):
                enqueue("files.validate", file_id, job_of(file_id))
                queued += 1
    if queued:
        log.warning("files.sweep: %d pending uploads queued again", queued)
    return queued


@celery_app.task(name="files.cleanup", soft_time_limit=1800, time_limit=2000)
def cleanup() -> dict[str, int]:
    """Expire uploads never validated, remove quarantine leftovers and half-written promotions, and
    delete the files of deleted requests and transactions after FILES_RETENTION_DAYS. One at a time."""
    with SingleFlight(key("lock", "files-cleanup"), 2100) as acquired:
        return run_cleanup() if acquired else {"skipped": 1}


def run_cleanup(now: datetime | None = None) -> dict[str, int]:
    now = now or _now()
    storage = get_storage()
    counts = {"expired": 0, "quarantine_removed": 0, "temporaries_removed": 0, "owners_gone": 0, "purged": 0}
    quarantine_cutoff = now - timedelta(hours=settings.FILES_QUARANTINE_MAX_HOURS)

    with unit_of_work():
        expired = Session.execute(
            update(File)
            .where(File.status == "pending", File.created_at < quarantine_cutoff)
            .values(status="rejected", reject_reason=REASONS["expired"], validated_at=now)
            .returning(File.quarantine_path)
        ).scalars().all()
    for token in expired:
        if token:
            storage.discard_quarantined(token)
    counts["expired"] = len(expired)

    with unit_of_work(read_only=True):
        pending_tokens = set(Session.scalars(select(File.quarantine_path).where(File.status == "pending")).all())
    for token, modified, finished in storage.quarantine_entries():
        if token not in pending_tokens and modified < quarantine_cutoff.timestamp():
            if finished:
                storage.discard_quarantined(token)
            else:
                storage.delete_unfinished(token)
            counts["quarantine_removed"] += 1
    storage.flush()  # the deletions of both loops, in batches, sent before the counts are reported

    counts["temporaries_removed"] = storage.remove_stale_temporaries(now.timestamp() - MEDIA_TEMPORARY_MAX_AGE)

    with unit_of_work():
        counts["owners_gone"] = Session.execute(
            update(File)
            .where(File.request_id.is_(None), File.transaction_id.is_(None), File.owner_deleted_at.is_(None),
                   File.status != "pending")
            .values(owner_deleted_at=now)
        ).rowcount

    retention_cutoff = now - timedelta(days=settings.FILES_RETENTION_DAYS)
    while True:
        with unit_of_work():
            rows = Session.execute(
                select(File.id, File.storage_path).where(File.owner_deleted_at < retention_cutoff).limit(BATCH)
            ).all()
            if not rows:
                break
            for _, storage_path in rows:  # bytes first: a crash leaves a row to retry, never lost bytes
                if storage_path:
                    storage.delete_media(storage_path)
            Session.execute(delete(File).where(File.id.in_([file_id for file_id, _ in rows])))
        counts["purged"] += len(rows)
    return counts
