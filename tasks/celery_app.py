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
from typing import Any

from celery import Celery
from celery.signals import task_postrun, worker_init, worker_process_init, worker_process_shutdown
from celery.worker import control
from kombu import Queue

from settings import broker_kind, settings
from tasks.broker import RestoreHeld
from tasks.queues import HEAVY, LIGHT

log = logging.getLogger(__name__)


def broker_url() -> str:
    """CELERY_BROKER_URL, else REDIS_URL, else the embedded Redis (as models/core/broker.py: beat and
    Flower load this module, and no part of the domain)."""
    import embedded

    return embedded.resolve_redis_url(settings.broker_url)


def redis_url() -> str:
    import embedded

    return embedded.resolve_redis_url(settings.REDIS_URL)


# RabbitMQ: a worker's connection sends heartbeats this often; the broker closes a connection that
# missed two, and gives the messages it held to other workers (a lost machine's within about 40 s).
AMQP_HEARTBEAT_SECONDS = 20


def broker_conf(url: str) -> dict[str, Any]:
    """The settings that depend on the broker's kind (Redis or RabbitMQ, models/core/broker.py)."""
    if broker_kind(url) == "redis":
        return {
            "broker_url": url,
            # A Redis outage is waited out: tasks/broker.py keeps the worker's teardown of a lost
            # connection from killing it, and beat/scheduler.py keeps beat (and its lock) alive.
            "broker_transport": "tasks.broker:Transport",
            "worker_consumer": "tasks.broker:Consumer",
            "broker_transport_options": {
                "visibility_timeout": settings.BROKER_VISIBILITY_TIMEOUT,
                # a server that stops answering (no RST) is noticed, not waited on for ever
                "socket_timeout": 30, "socket_connect_timeout": 5, "socket_keepalive": True,
                "health_check_interval": 25,
            },
        }
    return {
        "broker_url": url,
        "broker_transport": None,  # the URL's: py-amqp
        "worker_consumer": "celery.worker.consumer:Consumer",
        # A message is confirmed by RabbitMQ before publishing returns, as Redis' LPUSH answers.
        "broker_transport_options": {"confirm_publish": True},
        "broker_heartbeat": AMQP_HEARTBEAT_SECONDS,
    }


def make_celery() -> Celery:
    from beat.schedule import SCHEDULE

    url = broker_url()
    app = Celery("leadline")
    app.conf.update(
        # The broker is waited out when it goes away: the worker reconnects with backoff (celery's:
        # 2 s longer each try, up to a cap), for ever, at startup too.
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        **broker_conf(url),
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A task running when the broker goes away is not cancelled (the threads pool of the light
        # workers cannot cancel one anyway). On Redis it finishes and acknowledges its message once
        # Redis is back (tasks/broker.py); the message stays in Redis' unacked set meanwhile, and the
        # lease (tasks/leases.py) redelivers it if the worker dies first. RabbitMQ gives the message
        # back to its queue as soon as the connection is lost: another worker may run it meanwhile,
        # and the task's own claim (every task is idempotent) makes one of the two runs do nothing;
        # the late acknowledgement on the lost connection is only logged.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_soft_time_limit=settings.TASK_SOFT_TIME_LIMIT,
        task_time_limit=settings.TASK_TIME_LIMIT,
        task_default_queue=LIGHT,
        task_queues=(Queue(LIGHT), Queue(HEAVY)),
        task_routes={
            "telephony.*": {"queue": LIGHT},
            "alerts.*": {"queue": LIGHT},
            "callbacks.*": {"queue": LIGHT},
            "jobs.*": {"queue": LIGHT},
            "telegram.send_digest": {"queue": HEAVY},
            "telegram.*": {"queue": LIGHT},
            "files.sweep": {"queue": LIGHT},
            "files.*": {"queue": HEAVY},
            "recordings.*": {"queue": HEAVY},
            "maintenance.heartbeat": {"queue": LIGHT},
            "maintenance.*": {"queue": HEAVY},
            "legacy.*": {"queue": HEAVY},
        },
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_max_tasks_per_child=1000,
        worker_autoscaler="tasks.autoscale:Autoscaler",  # used with --autoscale (the heavy worker)
        enable_utc=True,
        timezone="UTC",
        # One beat at a time: redbeat keeps the schedule in Redis and holds a lock while it runs. Always
        # the application's Redis, whichever the broker.
        beat_schedule=SCHEDULE,
        beat_scheduler="beat.scheduler:Scheduler",
        beat_max_loop_interval=5,
        redbeat_redis_url=redis_url(),
        redbeat_key_prefix="leadline:redbeat:",
        redbeat_lock_timeout=60,
        redbeat_redis_options={"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 25},
    )
    return app


celery_app = make_celery()
celery_app.steps["consumer"].add(RestoreHeld)

import tasks.signals  # noqa: E402,F401 - message stamps, request id, task metrics, logging


def register_task_modules() -> None:
    """Task modules register themselves on import."""
    import tasks.alerts  # noqa: F401
    import tasks.callbacks  # noqa: F401
    import tasks.files  # noqa: F401
    import tasks.jobs  # noqa: F401
    import tasks.leases  # noqa: F401 - a dead worker's messages queued again within a minute
    import tasks.legacy  # noqa: F401
    import tasks.maintenance  # noqa: F401
    import tasks.recordings  # noqa: F401
    import tasks.telegram  # noqa: F401
    import tasks.telephony  # noqa: F401


# Every process that loads the app gets the tasks, but beat and Flower (tasks/sender.py): they run
# none, and the task modules (SQLAlchemy, the domain, file and mail libraries) would double their memory.
if tasks.LOAD_TASK_MODULES:
    register_task_modules()


def _masked(value: Any) -> Any:
    """A configuration value with every URL's password and every configured secret masked."""
    if isinstance(value, str):
        return settings.mask(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    return value


# What workers tell about their configuration (Flower's worker pages and /api/workers show the `conf`
# answer; `celery inspect report` the other): Celery hides keys that look secret and the broker URL's
# password, not redbeat_redis_url's nor any other URL's. These replace its two commands with the same
# answers passed through settings.mask.
@control.inspect_command(alias="dump_conf", signature="[include_defaults=False]",
                         args=[("with_defaults", control.strtobool)])
def conf(state, with_defaults=False, **kwargs):
    """List configuration."""
    return _masked(control.conf(state, with_defaults=with_defaults, **kwargs))


@control.inspect_command()
def report(state):
    """Information about Celery installation for bug reports."""
    return _masked(control.report(state))


@worker_init.connect
def _bind_database(**_kwargs) -> None:
    """The worker's session is bound to the engine before the first task (whatever the pool)."""
    from models.core.db import get_engine

    get_engine()


@worker_init.connect
@worker_process_init.connect
def _warm_storage(**_kwargs) -> None:
    """The storage client is built before the first task rather than by it (S3: boto3's import, imported
    once in the worker's main process and inherited by its pool processes, and a client of each
    process's own: ~0.3 s of CPU)."""
    from storage.backend import get_storage

    get_storage().warm()


@worker_process_shutdown.connect
def _flush_storage(**_kwargs) -> None:
    """Deletions a pool process left for later are sent before it ends (files.cleanup would otherwise)."""
    from storage.backend import get_storage

    get_storage().flush()


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
