"""The insert of an accepted delivery, made as cheap as it can be: the hottest path of the API.

`InboxWriter` inserts the row on a database connection each thread keeps for itself, in
autocommit: one round trip, no pool checkout, no ping, no BEGIN/COMMIT (the INSERT is its own
transaction and is durable when it returns). A session bound to a single connection (the tests'
rolled-back transaction) is used as it is instead. The delivery is then queued by the enqueue
helper's fast path (`tasks.queue.fold_inbox_soon`: one `SET NX` while a run of the inbox worker is
queued already, else that and one LPUSH).
"""
from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
from sqlalchemy import Engine

from models.core.db import Session, get_engine

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


writer = InboxWriter()
