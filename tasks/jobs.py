"""Generic job tasks: the no-op ping that proves the pipeline API -> Redis -> worker -> PostgreSQL."""
from __future__ import annotations

import logging
import os
import socket

from models.ops import jobs
from tasks.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name="jobs.ping", soft_time_limit=30, time_limit=60)
def ping(job_id: str) -> None:
    if not jobs.claim(job_id):
        return  # already finished: a redelivery does nothing
    jobs.succeed(job_id, {"pong": True, "worker": f"{socket.gethostname()}:{os.getpid()}"})
    log.info("ping job %s done", job_id)
