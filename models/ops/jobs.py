"""Lifecycle of a background job row: the one place a job's state changes.

The API creates a job with the rows it is about; a worker claims, finishes or fails it. Claiming is
a conditional UPDATE, so a redelivered task never runs a finished job twice. Each transition is its
own committed transaction, except `mark_running` and `mark_succeeded`, which a task commits together
with its own rows.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert

from models.core.db import Session, unit_of_work
from models.ops.tables import Job
from settings import settings

UNFINISHED = ("queued", "running")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _key(job_id: str | uuid.UUID) -> uuid.UUID:
    return uuid.UUID(str(job_id))


def create_job(kind: str, params: dict[str, Any] | None = None, created_by_id: int | None = None) -> Job:
    """A queued job, added to the session: the caller commits it with the rows it is about."""
    job = Job(id=uuid.uuid4(), kind=kind, status="queued", params=params or {}, created_by_id=created_by_id)
    Session.add(job)
    return job


def run_job_id(run_id: str | None) -> uuid.UUID:
    """The job id of a run a worker starts by itself: its task message's id (a UUID), so that the
    message, delivered again after its worker died, finds the row of its first attempt."""
    if not run_id:
        return uuid.uuid4()
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"leadline-run:{run_id}")


def ensure_job(kind: str, params: dict[str, Any] | None = None, run_id: str | None = None) -> str:
    """The queued job of a run a worker starts by itself (beat's runs), committed; the row of its
    first delivery when the message comes again. Its id."""
    job_id = run_job_id(run_id)
    with unit_of_work():
        Session.execute(insert(Job).values(id=job_id, kind=kind, status="queued", params=params or {}, attempts=0)
                        .on_conflict_do_nothing(index_elements=[Job.id]))
    return str(job_id)


def start_job(kind: str, params: dict[str, Any] | None = None, run_id: str | None = None) -> str | None:
    """A job that a worker starts by itself (beat's runs), running and committed: its id; None when
    the run of this message (`run_id`) has already finished."""
    job_id = ensure_job(kind, params, run_id)
    return job_id if claim(job_id) else None


# A queued job whose message could not be sent (the broker was down): its sweeper sends it as soon as
# the broker answers again, instead of waiting until the job looks lost.
UNSENT = "unsent"


def note_unsent(job_id: str | uuid.UUID) -> None:
    """The job's message was not sent, in the caller's transaction."""
    Session.execute(update(Job).where(Job.id == _key(job_id), Job.status == "queued")
                    .values(params=Job.params.op("||")(func.jsonb_build_object(UNSENT, True))))


def note_sent(job_id: str | uuid.UUID) -> None:
    """The job's message is sent at last, in the caller's transaction."""
    Session.execute(update(Job).where(Job.id == _key(job_id)).values(params=Job.params.op("-")(UNSENT)))


def mark_running(job_id: str | uuid.UUID) -> int:
    """Mark a queued (or interrupted running) job as running, in the caller's transaction: the number
    of this attempt, 0 when the job had already finished."""
    attempts = Session.scalar(
        update(Job)
        .where(Job.id == _key(job_id), Job.status.in_(UNFINISHED))
        .values(status="running", started_at=_now(), attempts=Job.attempts + 1)
        .returning(Job.attempts)
    )
    return attempts or 0


def claim(job_id: str | uuid.UUID) -> int:
    """`mark_running`, committed: truthy when this run may do the job."""
    with unit_of_work():
        return mark_running(job_id)


def record_progress(job_id: str | uuid.UUID, progress: dict[str, Any]) -> None:
    """How far a running job is (its result until it finishes), committed at once."""
    with unit_of_work():
        Session.execute(update(Job).where(Job.id == _key(job_id), Job.status == "running")
                        .values(result={"progress": progress}))


def params_of(job_id: str | uuid.UUID) -> dict[str, Any]:
    with unit_of_work(read_only=True):
        job = Session.get(Job, _key(job_id))
        return dict(job.params or {}) if job is not None else {}


def mark_succeeded(job_id: str | uuid.UUID, result: dict[str, Any] | None = None) -> None:
    """The running job has succeeded, in the caller's transaction (committed with the task's rows)."""
    Session.execute(
        update(Job)
        .where(Job.id == _key(job_id), Job.status == "running")
        .values(status="succeeded", result=result or {}, finished_at=_now(), error=None)
    )


def succeed(job_id: str | uuid.UUID, result: dict[str, Any] | None = None) -> None:
    with unit_of_work():
        mark_succeeded(job_id, result)


def fail(job_id: str | uuid.UUID, error: str, result: dict[str, Any] | None = None) -> None:
    values: dict[str, Any] = {"status": "failed", "error": settings.mask(error)[:2000], "finished_at": _now()}
    if result is not None:
        values["result"] = result
    with unit_of_work():
        Session.execute(update(Job).where(Job.id == _key(job_id), Job.status.in_(UNFINISHED)).values(**values))
