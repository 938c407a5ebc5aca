"""The work of a worker that died is queued again within a minute, whatever its task (Redis broker).

Only with Redis as the broker: RabbitMQ does this itself. It hands a message to a consumer's
connection and gives it back to its queue as soon as that connection closes without acknowledging it:
at once when the worker's process dies (its sockets close with it), after two missed heartbeats
(tasks/celery_app.py: AMQP_HEARTBEAT_SECONDS) when its machine is lost. So on RabbitMQ no keeper is
started and nothing here runs (tests/test_worker_leases.py checks the redelivery on both brokers).

With Redis, Celery takes a message off its queue when a worker reserves it and acknowledges it only once the task
has ended (late acks). Kombu's Redis transport keeps such a message in the broker's `unacked` hash, its
delivery time in the `unacked_index` sorted set, and puts it back on its queue when that time is older
than the visibility timeout (BROKER_VISIBILITY_TIMEOUT: an hour, longer than any task). A pool process
that dies is seen by its worker, which requeues the message at once (reject on worker lost); but a
worker SIGKILLed as a whole, or on a machine that is lost, left its messages there for that hour.

The lease, with nothing but the broker's own records:

- Renewal. The main process of every worker runs a thread (`LeaseKeeper`, started by `worker_init`)
  that every RENEW_SECONDS moves the delivery time of each message the worker holds (running, reserved
  or waiting for its ETA: every message it received and has not acknowledged) to the present.
- Reclaim. An index entry older than LEASE_SECONDS therefore belongs to no living worker. The same
  thread, in every worker, puts such messages back at the head of their queue: one Redis transaction
  per message, watching the hash and the index and checking the entry again inside it, so when
  several workers see the same orphan exactly one moves it, and never one whose holder renewed it
  meanwhile. The message keeps its body, task id and job id, so the task's own idempotency (the job's
  conditional claim, the file's `pending` state, the inbox row's claim) makes the run count once; it
  gets a new delivery tag, so an acknowledgement from a holder that was only slow cannot remove the
  new delivery's entry. A worker reclaims only once it has been in touch with Redis for LEASE_SECONDS
  (after an outage the living workers first renew what they hold).

Detection and requeue take at most LEASE_SECONDS + RENEW_SECONDS after the death (40 s), plus the
start of a worker when the dead one was the only one. The visibility timeout is left as it is and
becomes the last resort: a living worker's messages are renewed, so even a task longer than it is no
longer delivered twice.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from celery.signals import task_received, worker_init, worker_shutdown
from kombu.utils.json import loads

from settings import broker_kind

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0  # a message not renewed for this long has no living holder
RENEW_SECONDS = 10.0  # how often a worker renews what it holds and looks for orphans
RECLAIM_BATCH = 100

_held: dict[str, Any] = {}  # delivery tag -> kombu Message, in the worker's main process
_held_lock = threading.Lock()


@task_received.connect
def hold(request=None, **_kwargs) -> None:
    """A message the worker received (running soon, reserved or waiting for its ETA) is renewed
    until it is acknowledged or rejected."""
    message = getattr(request, "message", None)
    tag = getattr(message, "delivery_tag", None)
    if tag:
        with _held_lock:
            _held[str(tag)] = message


def held_tags() -> list[str]:
    """The delivery tags this worker holds now (acknowledged ones are forgotten)."""
    with _held_lock:
        for tag in [tag for tag, message in _held.items() if message.acknowledged]:
            del _held[tag]
        return list(_held)


def renew(channel, tags: list[str], now: float | None = None) -> int:
    """Mark `tags` as held now; entries already acknowledged or reclaimed are not brought back."""
    if not tags:
        return 0
    now = time.time() if now is None else now
    with channel.conn_or_acquire() as client:
        return client.zadd(channel.unacked_index_key, {tag: now for tag in tags}, xx=True)


def reclaim(channel, now: float | None = None) -> int:
    """Put the messages whose lease has expired back on their queues; how many were moved."""
    ceil = (time.time() if now is None else now) - LEASE_SECONDS
    moved = 0
    with channel.conn_or_acquire() as client:
        for tag in client.zrangebyscore(channel.unacked_index_key, "-inf", ceil, start=0, num=RECLAIM_BATCH):
            tag = tag.decode() if isinstance(tag, bytes) else tag
            if _requeue_orphan(channel, client, tag, ceil):
                moved += 1
    return moved


def _requeue_orphan(channel, client, tag: str, ceil: float) -> bool:
    index, unacked = channel.unacked_index_key, channel.unacked_key
    described: list[str] = []

    def move(pipe) -> bool:
        described.clear()
        score = pipe.zscore(index, tag)
        raw = pipe.hget(unacked, tag)
        if score is None or score > ceil:
            return False  # acknowledged, renewed or moved by another worker meanwhile
        pipe.multi()
        pipe.zrem(index, tag)
        pipe.hdel(unacked, tag)
        if not raw:
            return False
        payload, exchange, routing_key = loads(raw.decode() if isinstance(raw, bytes) else raw)
        headers = payload.get("headers") or {}
        described[:] = [str(headers.get("task")), str(headers.get("id"))]
        payload.setdefault("properties", {})["delivery_tag"] = str(uuid.uuid4())
        channel._do_restore_message(payload, exchange, routing_key, pipe, leftmost=False)
        return True

    requeued = client.transaction(move, index, unacked, value_from_callable=True)
    if requeued:
        log.warning("%s[%s]: its worker is gone (lease expired), queued again", *described)
    return bool(requeued)


class LeaseKeeper(threading.Thread):
    """The worker's renewal and reclaim loop, on a connection of its own."""

    def __init__(self, app) -> None:
        super().__init__(name="leadline-lease", daemon=True)
        self.app = app
        self.stopped = threading.Event()
        self.connection = None
        self.channel = None
        self.in_touch_since: float | None = None

    def _channel(self):
        if self.channel is None:
            self.connection = self.app.connection_for_write()
            self.connection.ensure_connection(max_retries=1)
            self.channel = self.connection.channel()
        return self.channel

    def _drop_channel(self) -> None:
        try:
            if self.connection is not None:
                self.connection.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close
            pass
        self.connection = self.channel = None

    def tick(self) -> None:
        try:
            channel = self._channel()
            if not hasattr(channel, "unacked_index_key"):  # not the Redis transport (keeps_leases said so)
                self.stopped.set()
                return
            renew(channel, held_tags())
            now = time.monotonic()
            if self.in_touch_since is None:
                self.in_touch_since = now
            if now - self.in_touch_since >= LEASE_SECONDS:
                reclaim(channel)
        except Exception as exc:  # noqa: BLE001 - Redis away: try again at the next tick
            self.in_touch_since = None
            self._drop_channel()
            log.warning("worker leases not renewed (%s); retrying in %.0f s", type(exc).__name__, RENEW_SECONDS)

    def run(self) -> None:
        while not self.stopped.is_set():
            self.tick()
            self.stopped.wait(RENEW_SECONDS)
        self._drop_channel()


_keeper: LeaseKeeper | None = None


def keeps_leases(app) -> bool:
    """Whether this app's workers keep leases: with Redis as the broker, not with RabbitMQ."""
    return broker_kind(app.conf.broker_url) == "redis"


@worker_init.connect
def start_keeper(sender=None, **_kwargs) -> None:
    global _keeper
    if not keeps_leases(sender.app):
        log.debug("worker leases: not kept, the broker (RabbitMQ) redelivers a lost consumer's messages")
        return
    if _keeper is None or not _keeper.is_alive():
        _keeper = LeaseKeeper(sender.app)
        _keeper.start()


@worker_shutdown.connect
def stop_keeper(**_kwargs) -> None:
    if _keeper is not None:
        _keeper.stopped.set()
