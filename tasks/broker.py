"""How the workers ride out a Redis outage (tasks/celery_app.py plugs these in, with Redis as the
broker only: on RabbitMQ Celery's own transport and consumer are used as they are).

With Redis gone, the worker's consumer collects its connection (which drops the transport's link
to its parameters) and then closes it; closing a channel restores the messages it delivered and
has not acknowledged, through a new Redis client built from those parameters. kombu 5.7.0 then
fails with AttributeError ('NoneType' object has no attribute 'hostname'), which is not a
connection error, so the worker dies ("Unrecoverable error") instead of reconnecting. It happens
whenever the worker holds a message when Redis goes away, a countdown message being the surest
case, whatever `worker_cancel_long_running_tasks_on_connection_loss` says (celery/celery#9250 is
about the same teardown; it is open for 5.7.0).

- `Transport` (the `broker_transport`): its channels keep their connection parameters, so that the
  restore at close fails as a connection error (Redis is down: the consumer then reconnects with
  backoff) and a task that ends after the reconnection still acknowledges its message through the
  channel that delivered it.
- `Consumer` (the `worker_consumer`): tasks keep running through an outage (we no longer cancel
  them on connection loss), so their messages must not be restored while they run: that would have
  them done a second time, at the same moment. They stay in Redis' unacked set until the task
  acknowledges them; if the worker dies first, the visibility timeout brings them back.
- `RestoreHeld` (a consumer step): messages the worker held but had not started (prefetched, a
  countdown) are dropped by Celery at a connection loss, to be delivered again; the restore at
  close cannot reach a Redis that is down, so they are put back in their queues as soon as the
  worker is connected again (not an hour later, when the visibility timeout would).
"""
from __future__ import annotations

import logging
import warnings

from celery import bootsteps
from celery.exceptions import CPendingDeprecationWarning
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.state import active_requests
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        remembered = self.__dict__.setdefault("_leadline_connparams", {})
        if self.connection.client is None and asynchronous in remembered:
            return dict(remembered[asynchronous])  # the connection was collected: same server, same options
        params = super()._connparams(asynchronous=asynchronous)
        remembered[asynchronous] = dict(params)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel


class Consumer(CeleryConsumer):
    held_tags: set[str]

    def on_connection_error_after_connected(self, exc):
        for request in tuple(active_requests):
            message = request.message
            if request.task.acks_late and not request.acknowledged and message.channel is not None:
                # Not restored when the channel closes: acknowledged when the task ends.
                message.channel.qos._delivered.pop(message.delivery_tag, None)
        transport = getattr(self.connection, "transport", None)
        channels = getattr(transport, "channels", None) or ()
        held = {tag for channel in channels for tag in channel.qos._delivered}  # not running: restored
        self.held_tags = getattr(self, "held_tags", set()) | held
        with warnings.catch_warnings():  # that cancelling tasks will be the default one day: we chose not to
            warnings.simplefilter("ignore", CPendingDeprecationWarning)
            super().on_connection_error_after_connected(exc)


class RestoreHeld(bootsteps.StartStopStep):
    """Once connected again, the messages held at the connection loss go back to their queues (a
    message restored already, at close, is not restored twice: the unacked entry is gone)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c) -> None:
        held = getattr(c, "held_tags", None)  # none on RabbitMQ: Celery's consumer, not ours
        if not held:
            return
        qos = c.task_consumer.channel.qos
        for tag in tuple(held):
            qos.restore_by_tag(tag)
            held.discard(tag)
        log.warning("broker: messages held when the connection was lost are queued again")
