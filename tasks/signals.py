"""Celery signal handlers: message stamps, the request id in workers, task counts and durations.

- At publish (any process): every task message gets an `enqueued_at` header (the queue-age probe
  reads it) and the `request_id` of the HTTP request or task that enqueued it.
- In the worker: the request id is put into the logging context for the task's duration, and when
  the task ends its outcome and duration go to Redis in one pipelined call, where the API's
  /metrics reads them (workers run on other processes and hosts, so they cannot be scraped).
"""
from __future__ import annotations

import logging
import time

from celery.signals import before_task_publish, setup_logging, task_failure, task_postrun, task_prerun

from logconfig import request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "request_id"
# The header the queue-age probe reads (models.core.probes.ENQUEUED_AT_HEADER, the same name: checked
# by tests/test_architecture.py). Written here, not imported: beat and Flower load this module and
# no part of the domain (tasks/sender.py).
ENQUEUED_AT_HEADER = "enqueued_at"

_started: dict[str, tuple[float, object]] = {}  # task id -> (monotonic start, context token)


def stamp_headers(headers: dict) -> dict:
    """The enqueue time and the current request id, added to a task message's headers (also used
    by the fast path of tasks/queue.py, which builds its messages without Celery)."""
    headers[ENQUEUED_AT_HEADER] = round(time.time(), 3)
    request_id = request_id_var.get()
    if request_id and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


@before_task_publish.connect
def stamp_message(headers=None, **_kwargs) -> None:
    if headers is not None:
        stamp_headers(headers)


@setup_logging.connect
def use_project_logging(loglevel=None, **_kwargs) -> None:
    """Workers and beat log like the API (JSON in production, request id, masked personal data)
    instead of Celery's own setup; `--loglevel` on their command line still sets the level."""
    from logconfig import configure_logging

    configure_logging()
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@task_prerun.connect
def task_started(task_id=None, task=None, **_kwargs) -> None:
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    token = request_id_var.set(str(request_id) if request_id else f"task-{task_id}")
    _started[task_id] = (time.monotonic(), token)


@task_postrun.connect
def task_finished(task_id=None, task=None, state=None, **_kwargs) -> None:
    started, token = _started.pop(task_id, (None, None))
    if token is not None:
        try:
            request_id_var.reset(token)
        except ValueError:  # set in another context (cannot happen with the pools we use)
            request_id_var.set(None)
    if started is None or task is None:
        return
    duration = time.monotonic() - started
    outcome = (state or "unknown").lower()
    try:
        record_task(task.name, outcome, duration)
    except Exception as exc:  # noqa: BLE001 - metrics never fail a task
        log.warning("task metrics not recorded: %s", type(exc).__name__)


@task_failure.connect
def task_failed_outside(task_id=None, sender=None, **_kwargs) -> None:
    """Failures the running process cannot report (hard time limit, a killed pool process) are
    signalled in the worker's main process: count them there. A failure inside a task is counted
    by task_finished, in the process that ran it."""
    if task_id in _started or sender is None:
        return
    try:
        record_task(sender.name, "failure", None)
    except Exception as exc:  # noqa: BLE001
        log.warning("task metrics not recorded: %s", type(exc).__name__)


def record_task(name: str, outcome: str, duration: float | None) -> None:
    """Count one finished task and its duration (when known): one pipelined Redis call."""
    from models.core.probes import TASK_DURATION_BUCKETS, task_stats_keys
    from models.core.redis import get_redis

    counts, sums, buckets = task_stats_keys()
    field = f"{name}|{outcome}"
    with get_redis().pipeline(transaction=False) as pipe:
        pipe.hincrby(counts, field, 1)
        if duration is not None:
            bucket = next((b for b in TASK_DURATION_BUCKETS if duration <= b), "+Inf")
            pipe.hincrbyfloat(sums, field, round(duration, 6))
            pipe.hincrby(buckets, f"{field}|{bucket}", 1)
        pipe.execute()
