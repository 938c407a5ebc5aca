"""Lifecycle of a background job row. The API creates it; a worker claims, finishes or fails it.

Claiming is a conditional UPDATE, so a redelivered task never runs a finished job twice.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import update

from models.db import Session
from models.ops import Job


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_job(kind: str, params: dict[str, Any] | None = None, created_by_id: int | None = None) -> Job:
    job = Job(id=uuid.uuid4(), kind=kind, status="queued", params=params or {}, created_by_id=created_by_id)
    Session.add(job)
    return job


def claim(job_id: str | uuid.UUID) -> bool:
    """Mark a queued (or interrupted running) job as running; False when it already finished."""
    result = Session.execute(
        update(Job)
        .where(Job.id == uuid.UUID(str(job_id)), Job.status.in_(("queued", "running")))
        .values(status="running", started_at=_now(), attempts=Job.attempts + 1)
    )
    Session.commit()
    return result.rowcount == 1


def succeed(job_id: str | uuid.UUID, result: dict[str, Any] | None = None) -> None:
    Session.execute(
        update(Job)
        .where(Job.id == uuid.UUID(str(job_id)), Job.status == "running")
        .values(status="succeeded", result=result or {}, finished_at=_now(), error=None)
    )
    Session.commit()


def fail(job_id: str | uuid.UUID, error: str) -> None:
    Session.execute(
        update(Job)
        .where(Job.id == uuid.UUID(str(job_id)), Job.status.in_(("queued", "running")))
        .values(status="failed", error=error[:2000], finished_at=_now())
    )
    Session.commit()
