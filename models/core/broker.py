"""The Celery broker as the rest of the code sees it: where it is, which kind, how long its queues are.

Two brokers are supported: Redis (the default: CELERY_BROKER_URL unset, the broker is REDIS_URL's
server) and RabbitMQ (CELERY_BROKER_URL=amqp://... or amqps://...). Whatever the broker, Redis keeps
sessions, lockouts, rate limits, locks, heartbeats, metrics and beat's schedule and lock (redbeat).

What differs between the two, for the code that talks to the broker itself:
- Queue length: Redis keeps a list per queue and priority step (models/core/probes.py reads them);
  RabbitMQ answers a passive queue declaration with the number of messages ready in the queue.
  Both count messages waiting, not those a worker holds.
- The age of a queue's oldest message: Redis lets us read it (LINDEX) without taking it; RabbitMQ
  does not show a message without delivering it, so it is not known there (None, not zero).
- Redelivery of a dead worker's messages: RabbitMQ gives them back as soon as the connection that
  received them closes (tasks/leases.py does it for Redis).
"""
from __future__ import annotations

from settings import broker_kind, settings

REDIS, AMQP = "redis", "amqp"  # what settings.broker_kind answers
CONNECT_TIMEOUT = 1.0


def broker_url() -> str:
    """The broker's URL: CELERY_BROKER_URL, else REDIS_URL, else the embedded Redis (development)."""
    import embedded

    return embedded.resolve_redis_url(settings.broker_url)


def is_redis(url: str | None = None) -> bool:
    """Whether the broker (or the broker at `url`) is Redis; else it is RabbitMQ."""
    url = url or settings.broker_url
    return not url or broker_kind(url) == REDIS  # unset: the embedded Redis


def ping_amqp(url: str | None = None) -> str:
    """Connect to RabbitMQ once (no retry) and tell its version; raises when it does not answer."""
    from kombu import Connection

    with Connection(url or broker_url(), connect_timeout=CONNECT_TIMEOUT,
                    transport_options={"max_retries": 0}) as connection:
        connection.ensure_connection(max_retries=0)  # one attempt: a broker down answers at once
        version = connection.connection.server_properties.get("version", "")
    return f"RabbitMQ {version}".strip()


def amqp_queue_lengths(queues: tuple[str, ...], url: str | None = None) -> dict[str, int]:
    """Messages ready in each RabbitMQ queue (a queue not declared yet holds none)."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    lengths: dict[str, int] = {}
    with Connection(url or broker_url(), connect_timeout=CONNECT_TIMEOUT) as connection:
        connection.ensure_connection(max_retries=0)
        for queue in queues:
            channel = connection.channel()
            try:
                lengths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except NotFound:  # the broker closed the channel with it
                lengths[queue] = 0
            else:
                channel.close()
    return lengths
