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

from sqlalchemy import update

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


def start_job(kind: str, params: dict[str, Any] | None = None) -> str:
    """A job that a worker starts by itself (beat's runs): created running, committed; its id."""
    with unit_of_work():
        job = create_job(kind, params)
        job.status, job.started_at, job.attempts = "running", _now(), 1
    return str(job.id)


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
