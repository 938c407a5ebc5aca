"""The one way work is queued, by API routes and by tasks alike.

Work is queued only once the transaction that wrote what the task reads has committed: the worker
must find its rows. Tasks are named, not imported, so a route needs no task module to queue work.
Every call says what happens when the broker (Redis or RabbitMQ) cannot take the message:

- `enqueue(task, *args)`: the error reaches the caller (a task then fails or retries); with
  `if_down=LATER` it is logged and False returned instead, for work whose row is durable and that
  a sweeper queues again from PostgreSQL (files.sweep, telephony.sweep_inbox, the periodic
  recordings.match_pending).
- `enqueue_job(kind, task, params)`: a job row committed, then its task queued with the job's id.
  The broker down: the job is failed (it must not sit `queued` forever) and BrokerUnavailable raised.
- `enqueue_debounced(task, key, seconds)`: queued `seconds` from now unless that was asked already
  within them, so a burst asks once; it never fails its caller.
- `fold_inbox_soon()`: the Mango webhook's path, the hottest of the API. A delivery queues a run of
  the inbox worker only when none is queued yet (a Redis `SET NX`), so a burst queues one message.
  The message is built here (Celery's protocol 2) and sent on a connection of its own: with Redis one
  LPUSH (as kombu's Redis transport stores it), with RabbitMQ one basic.publish that the broker
  confirms. It fails at once when the broker is down and then pauses for a moment (the row is
  committed already and the inbox sweeper queues a run later). tests/test_telephony_webhook.py
  compares the message with the one Celery and kombu themselves build, on both brokers.
"""
from __future__ import annotations

import base64
import logging
import math
import os
import threading
import time
import uuid
from typing import Any

import orjson

from models.core.db import unit_of_work
from models.core.redis import get_redis, key
from models.ops import jobs
from models.ops.tables import Job
from settings import broker_kind
from tasks.queues import HEAVY, LIGHT  # noqa: F401 - the queue names, here for the callers

log = logging.getLogger(__name__)

RAISE, LATER = "raise", "later"
BROKER_DOWN = "очередь задач недоступна"


class BrokerUnavailable(Exception):
    """The job could not be queued (and was failed): the caller may try again later."""


def _task(name: str):
    from tasks.celery_app import celery_app  # the app registers every task module when it is loaded

    return celery_app.tasks[name]


def enqueue(task: str, *args: Any, if_down: str = RAISE, **options: Any) -> bool:
    """Queue `task(*args)`, with Celery's options (`countdown`, `queue`, `retry` ...). True when queued."""
    try:
        _task(task).apply_async(args, **options)
        return True
    except Exception as exc:
        if if_down != LATER:
            raise
        log.warning("%s%r not queued (%s): its sweeper or periodic run queues it later", task, args, type(exc).__name__)
        return False


def enqueue_job(kind: str, task: str, params: dict[str, Any] | None = None, *,
                created_by_id: int | None = None) -> Job:
    """Create the job row, commit, then queue `task(job_id)`: the worker always finds the row it is given."""
    with unit_of_work():
        job = jobs.create_job(kind, params, created_by_id=created_by_id)
    try:
        enqueue(task, str(job.id))
    except Exception as exc:
        jobs.fail(job.id, BROKER_DOWN)
        raise BrokerUnavailable(BROKER_DOWN) from exc
    return job


def enqueue_debounced(task: str, debounce_key: str, seconds: int, **options: Any) -> bool:
    """Queue `task` `seconds` from now unless a call within the last `seconds` did; True when this one
    queued it. Never fails its caller: the task's periodic run catches up with what a broken broker lost."""
    try:
        if get_redis().set(debounce_key, "1", nx=True, ex=seconds):
            return enqueue(task, countdown=seconds, retry=False, if_down=LATER, **options)
    except Exception as exc:
        log.warning("%s not queued (%s)", task, type(exc).__name__)
    return False


# ---- requests that both the API and tasks make -----------------------------------------------------

MATCH_RECORDINGS_TASK = "recordings.match_pending"
MATCH_DEBOUNCE_KEY = key("recordings", "match-soon")
MATCH_DEBOUNCE_SECONDS = 5


def match_recordings_soon() -> bool:
    """Retry the unmatched call recordings a few seconds from now (a request was created, a call
    folded: it may be what one of them waits for); a burst asks once."""
    return enqueue_debounced(MATCH_RECORDINGS_TASK, MATCH_DEBOUNCE_KEY, MATCH_DEBOUNCE_SECONDS, queue=HEAVY)


TELEGRAM_DELIVER_TASK = "telegram.deliver"
TELEGRAM_LATER_KEY = key("telegram", "deliver-later")


def deliver_telegram_soon() -> bool:
    """Send the Telegram outbox now (a commit just wrote messages to it). Never fails or waits for its
    caller: with the broker down, beat's periodic telegram.deliver sends them."""
    return enqueue(TELEGRAM_DELIVER_TASK, queue=LIGHT, retry=False, if_down=LATER)


def deliver_telegram_later(seconds: float) -> bool:
    """Send the Telegram outbox again in `seconds` (a retry falls due then); a burst asks once."""
    return enqueue_debounced(TELEGRAM_DELIVER_TASK, TELEGRAM_LATER_KEY, max(1, math.ceil(seconds)), queue=LIGHT)


# ---- the webhook inbox's fast path -------------------------------------------------------------------

class DirectPublisher:
    """Publishes one task's messages building Celery's message itself: with Redis one LPUSH on a client
    of its own; with RabbitMQ one confirmed basic.publish on a connection of its own (per process)."""

    PAUSE_AFTER_FAILURE = 2.0
    CONNECT_TIMEOUT = 0.5
    EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    def __init__(self, task: str, queue: str) -> None:
        self.task = task
        self.queue = queue
        self.paused_until = 0.0
        self._redis: tuple[int, str, Any] | None = None
        self._amqp: tuple[int, str, Any] | None = None  # (pid, url, kombu Producer)
        self._headers: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._amqp_lock = threading.Lock()  # a kombu connection is not shared between threads

    def _client(self):
        from tasks.celery_app import broker_url

        url = broker_url()
        held = self._redis
        if held is None or held[:2] != (os.getpid(), url):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=self.CONNECT_TIMEOUT, socket_timeout=1.0)
            held = self._redis = (os.getpid(), url, client)
        return held[2]

    def headers_template(self) -> dict[str, Any]:
        """The task headers Celery writes (origin, language, time limits ...), built by Celery once."""
        if self._headers is None:
            with self._lock:
                if self._headers is None:
                    from tasks.celery_app import celery_app

                    message = celery_app.amqp.create_task_message(str(uuid.uuid4()), self.task, (0,), {},
                                                                  create_sent_event=False)
                    self._headers = dict(message.headers)
        return self._headers

    def _parts(self, args: tuple) -> tuple[str, dict[str, Any], bytes]:
        """The task id, the headers and the body (protocol 2) of one message."""
        from tasks.signals import stamp_headers  # what Celery's publish adds (enqueue time, request id)

        task_id = str(uuid.uuid4())
        headers = stamp_headers(
            {**self.headers_template(), "id": task_id, "root_id": task_id, "argsrepr": repr(args)}
        )
        return task_id, headers, orjson.dumps([list(args), {}, self.EMBED])

    def message(self, args: tuple, queue: str) -> bytes:
        """The message as kombu's Redis transport stores it in the queue's list."""
        task_id, headers, body = self._parts(args)
        return orjson.dumps({
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": task_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        })

    def _producer(self, url: str):
        held = self._amqp
        if held is None or held[:2] != (os.getpid(), url):
            from kombu import Connection, Producer

            # One attempt to connect (max_retries 0): a broker that is down fails the publish at once.
            connection = Connection(url, connect_timeout=self.CONNECT_TIMEOUT,
                                    transport_options={"confirm_publish": True, "max_retries": 0})
            held = self._amqp = (os.getpid(), url, Producer(connection.default_channel, auto_declare=False))
        return held[2]

    def _drop_producer(self) -> None:
        held, self._amqp = self._amqp, None
        if held is not None and held[0] == os.getpid():
            try:
                held[2].connection.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def publish_amqp(self, args: tuple, queue: str, url: str) -> None:
        """One persistent message, confirmed by RabbitMQ, routed as Celery routes a task to a queue of a
        direct exchange: through the default exchange, the queue's name as routing key. The queue is
        declared first, as Celery does, once per connection (RabbitMQ drops a message no queue takes)."""
        from tasks.celery_app import celery_app

        declared = celery_app.amqp.queues[queue]  # as Celery's router finds it (a queue it lacks is added)
        task_id, headers, body = self._parts(args)
        with self._amqp_lock:
            try:
                self._producer(url).publish(
                    body, exchange="", routing_key=queue, declare=[declared], retry=False, serializer=None,
                    content_type="application/json", content_encoding="utf-8", headers=headers,
                    correlation_id=task_id, reply_to="", delivery_mode=2, priority=0,
                )
            except Exception:
                self._drop_producer()  # connected again at the next publish
                raise

    def publish(self, *args: Any) -> bool:
        """True when queued; False when the broker refused (or did a moment ago): the sweeper queues it later."""
        if time.monotonic() < self.paused_until:
            return False
        try:
            from tasks.celery_app import broker_url

            url = broker_url()
            if broker_kind(url) == "redis":
                self._client().lpush(self.queue, self.message(args, self.queue))
            else:
                self.publish_amqp(args, self.queue, url)
            return True
        except Exception as exc:
            self.paused_until = time.monotonic() + self.PAUSE_AFTER_FAILURE
            log.warning("%s%r not queued (%s): the sweeper will queue it", self.task, args, type(exc).__name__)
            return False


FOLD_INBOX_TASK = "telephony.fold_inbox"
FOLD_QUEUED_KEY = key("mango", "fold-queued")
FOLD_QUEUED_SECONDS = 30  # a run whose message was lost is asked for again after this long at most
inbox = DirectPublisher(FOLD_INBOX_TASK, LIGHT)


def fold_inbox_soon(*, force: bool = False) -> bool:
    """Make sure a `telephony.fold_inbox` run looks at the Mango inbox after this moment: the webhook's
    path, once its row is committed. True when one will (queued now, or queued before and not started).

    A run deletes FOLD_QUEUED_KEY before it claims anything, so while the key exists a queued run is
    still to look and will find every row committed before: a burst of deliveries queues one message,
    not one each (`SET NX`, one Redis round trip when a run is queued already). `force` queues a run
    whatever the key says (the sweeper: a message may have been lost with its key still alive). False
    when Redis or the broker is down: the row stays pending and telephony.sweep_inbox queues a run later.
    """
    try:
        redis = get_redis()
        if not redis.set(FOLD_QUEUED_KEY, "1", nx=not force, ex=FOLD_QUEUED_SECONDS):
            return True
    except Exception as exc:
        log.warning("%s not queued (%s): the sweeper will queue it", FOLD_INBOX_TASK, type(exc).__name__)
        return False
    if inbox.publish():
        return True
    try:
        redis.delete(FOLD_QUEUED_KEY)  # nothing is queued: the next delivery must try again
    except Exception:  # noqa: BLE001 - it expires by itself
        pass
    return False
