"""The one Celery app. Workers, beat and Flower start from here: `celery -A tasks ...`.

Rules of the road (docs/architecture.md): late acks and redelivery when a worker dies, one message
prefetched per process, a visibility timeout longer than any task, soft and hard time limits, JSON
only, results ignored (business state lives in PostgreSQL), two queues by cost.

Workers know nothing of Flask or HTTP: every task is a plain Celery task. The database engine is
bound when the worker starts (any pool, the tests' in-thread worker too), a forked pool process
drops the connections it inherited, and the session is removed after every task.
"""
from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import task_postrun, worker_init, worker_process_init
from kombu import Queue

from settings import settings
from tasks.queue import HEAVY, LIGHT

log = logging.getLogger(__name__)


def broker_url() -> str:
    import embedded

    return embedded.resolve_redis_url(settings.broker_url)


def make_celery() -> Celery:
    from beat.schedule import SCHEDULE

    url = broker_url()
    app = Celery("leadline")
    app.conf.update(
        broker_url=url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT},
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_soft_time_limit=settings.TASK_SOFT_TIME_LIMIT,
        task_time_limit=settings.TASK_TIME_LIMIT,
        task_default_queue=LIGHT,
        task_queues=(Queue(LIGHT), Queue(HEAVY)),
        task_routes={
            "telephony.*": {"queue": LIGHT},
            "alerts.*": {"queue": LIGHT},
            "jobs.*": {"queue": LIGHT},
            "files.*": {"queue": HEAVY},
            "recordings.*": {"queue": HEAVY},
            "maintenance.heartbeat": {"queue": LIGHT},
            "maintenance.*": {"queue": HEAVY},
        },
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_max_tasks_per_child=1000,
        enable_utc=True,
        timezone="UTC",
        # One beat at a time: redbeat keeps the schedule in Redis and holds a lock while it runs.
        beat_schedule=SCHEDULE,
        beat_scheduler="redbeat.RedBeatScheduler",
        beat_max_loop_interval=5,
        redbeat_redis_url=url,
        redbeat_key_prefix="leadline:redbeat:",
        redbeat_lock_timeout=60,
    )
    return app


celery_app = make_celery()

# Task modules register themselves on import.
import tasks.alerts  # noqa: E402,F401
import tasks.files  # noqa: E402,F401
import tasks.jobs  # noqa: E402,F401
import tasks.leases  # noqa: E402,F401 - a dead worker's messages queued again within a minute
import tasks.maintenance  # noqa: E402,F401
import tasks.recordings  # noqa: E402,F401
import tasks.signals  # noqa: E402,F401 - message stamps, request id, task metrics, logging
import tasks.telephony  # noqa: E402,F401


@worker_init.connect
def _bind_database(**_kwargs) -> None:
    """The worker's session is bound to the engine before the first task (whatever the pool)."""
    from models.core.db import get_engine

    get_engine()


@worker_process_init.connect
def _reset_connections_after_fork(**_kwargs) -> None:
    """A forked child must not share the parent's database or Redis sockets."""
    from models.core import redis as kv
    from models.core.db import dispose_after_fork, get_engine

    dispose_after_fork()
    kv.reset()
    get_engine()


@worker_process_init.connect
def _leave_the_workers_process_group(**_kwargs) -> None:
    """A pool process gets a process group of its own.

    Process managers (honcho under `make run`, supervisord with killasgroup, a `kill -TERM -<pgid>`)
    stop a worker by signalling its process group. Sharing it, a pool process would get the SIGTERM
    meant for the worker and die in the middle of its task (WorkerLostError) instead of letting the
    worker's warm shutdown finish it. The worker still ends its pool processes itself; Celery has
    them killed if the worker is killed (parent-death signal), and billiard's time limits signal a
    pool process that leads its own group as a group, with whatever it started."""
    os.setpgid(0, 0)


@task_postrun.connect
def _remove_session(**_kwargs) -> None:
    from models.core.db import remove_session

    remove_session()
