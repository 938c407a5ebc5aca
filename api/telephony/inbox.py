"""The two writes of an accepted delivery, made as cheap as they can be: the hottest path of the API.

- `InboxWriter` inserts the row on a database connection each thread keeps for itself, in
  autocommit: one round trip, no pool checkout, no ping, no BEGIN/COMMIT (the INSERT is its own
  transaction and is durable when it returns). A session bound to a single connection (the tests'
  rolled-back transaction) is used as it is instead.
- `InboxPublisher` queues `telephony.process_event` with one LPUSH of a Celery message (protocol 2,
  as kombu's Redis transport stores it) on a Redis client of its own. It fails at once when Redis is
  down and then pauses for a moment: the row is committed already and the sweeper queues it later.
  No task-sent event is published for these messages.

tests/test_telephony_webhook.py compares the message with the one Celery and kombu themselves build.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from typing import Any

import orjson
import psycopg
from sqlalchemy import Engine

from models.db import Session, get_engine

log = logging.getLogger(__name__)

TASK = "telephony.process_event"

INSERT_EVENT = """
    INSERT INTO mango_events (dedupe_key, event_type, entry_id, payload, status, raw_body, last_error)
    VALUES (%(dedupe_key)s, %(event_type)s, %(entry_id)s, CAST(%(payload)s AS jsonb), %(status)s, %(raw_body)s,
            %(last_error)s)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
"""


class InboxWriter:
    """Inserts a delivery (`payload` is the JSON text as received; PostgreSQL parses it once).

    Returns the new id, or None when the dedupe key is already there. Raises psycopg.DataError for a
    value PostgreSQL cannot hold, psycopg.Error (or SQLAlchemy's DBAPIError) when the database is away.
    """

    def __init__(self) -> None:
        self.local = threading.local()

    def insert(self, values: dict[str, Any]) -> int | None:
        # Read from the session factory: asking the session would build one per request for nothing.
        if not isinstance(Session.session_factory.kw.get("bind"), Engine):
            row = Session.connection().exec_driver_sql(INSERT_EVENT, values).first()
            Session.commit()
            return row[0] if row else None
        for attempt in (1, 2):
            connection = self._connection()
            try:
                row = connection.execute(INSERT_EVENT, values).fetchone()
                return row[0] if row else None
            except psycopg.DataError:
                raise
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._drop()  # closed while idle (a database restart): once more on a new connection
                if attempt == 2:
                    raise
        return None  # pragma: no cover

    def _connection(self) -> psycopg.Connection:
        held = getattr(self.local, "held", None)
        if held is not None and held[0] == os.getpid() and not held[2].closed:
            return held[2]
        # A connection of the engine's pool (same URL and options), kept by this thread for good and
        # never given back: it is in autocommit, which nobody else expects from a pooled connection.
        proxied = get_engine().raw_connection()
        connection = proxied.driver_connection
        connection.autocommit = True
        self.local.held = (os.getpid(), proxied, connection)
        return connection

    def _drop(self) -> None:
        held = getattr(self.local, "held", None)
        self.local.held = None
        if held is not None and held[0] == os.getpid():
            try:
                held[1].invalidate()
            except Exception:  # already broken: it is gone either way
                pass


class InboxPublisher:
    PAUSE_AFTER_FAILURE = 2.0
    EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    def __init__(self) -> None:
        self.paused_until = 0.0
        self._redis: tuple[int, Any] | None = None
        self._headers: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _client(self):
        held = self._redis
        if held is None or held[0] != os.getpid():
            import redis

            from tasks.celery_app import broker_url

            client = redis.Redis.from_url(broker_url(), socket_connect_timeout=0.5, socket_timeout=1.0)
            held = self._redis = (os.getpid(), client)
        return held[1]

    def headers_template(self) -> dict[str, Any]:
        """The task headers Celery writes (origin, language, time limits ...), built by Celery once."""
        if self._headers is None:
            with self._lock:
                if self._headers is None:
                    from tasks.celery_app import celery_app

                    message = celery_app.amqp.create_task_message(str(uuid.uuid4()), TASK, (0,), {},
                                                                  create_sent_event=False)
                    self._headers = dict(message.headers)
        return self._headers

    def message(self, event_id: int, queue: str) -> bytes:
        from tasks.signals import stamp_headers  # what Celery's publish adds (enqueue time, request id)

        task_id = str(uuid.uuid4())
        headers = stamp_headers(
            {**self.headers_template(), "id": task_id, "root_id": task_id, "argsrepr": f"({event_id},)"}
        )
        body = base64.b64encode(orjson.dumps([[event_id], {}, self.EMBED])).decode()
        return orjson.dumps({
            "body": body,
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

    def publish(self, event_id: int) -> bool:
        if time.monotonic() < self.paused_until:
            return False
        from tasks.celery_app import LIGHT

        try:
            self._client().lpush(LIGHT, self.message(event_id, LIGHT))
            return True
        except Exception as exc:
            self.paused_until = time.monotonic() + self.PAUSE_AFTER_FAILURE
            log.warning("mango event %s stored but not queued (%s); the sweeper will queue it",
                        event_id, type(exc).__name__)
            return False


writer = InboxWriter()
publisher = InboxPublisher()
