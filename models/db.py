"""The engine and the session used by both the API and the workers.

One scoped session per thread: the API removes it at the end of each request, workers after each
task; a forked worker process disposes the inherited pool before its first query.
"""
from __future__ import annotations

import select
import time

import psycopg
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import scoped_session, sessionmaker

from settings import settings

_engine: Engine | None = None
Session = scoped_session(sessionmaker(expire_on_commit=False, future=True))


def sqlalchemy_url(url: str) -> str:
    """Use the psycopg 3 driver whatever scheme the URL came with."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def database_url() -> str:
    import embedded

    return sqlalchemy_url(embedded.resolve_database_url(settings.DATABASE_URL))


def configure(url: str | None = None, **engine_options) -> Engine:
    """(Re)build the engine; tests call this with their own database URL."""
    global _engine
    if _engine is not None:
        _engine.dispose()
    # connect_timeout: a database host that stops answering fails a connection in seconds, not after
    # the operating system's TCP timeout (minutes), so probes, health checks and tasks report it.
    options = {"pool_size": 5, "max_overflow": 10, "pool_recycle": 1800, "connect_args": {"connect_timeout": 5}}
    options.update(engine_options)
    _engine = create_engine(sqlalchemy_url(url or database_url()), **options)
    if not options.get("pool_pre_ping"):
        check_liveness_at_checkout(_engine)
    Session.remove()
    Session.configure(bind=_engine)
    return _engine


PING_AFTER_IDLE_SECONDS = 30.0


def check_liveness_at_checkout(engine: Engine) -> None:
    event.listen(engine, "checkout", _check_alive)
    event.listen(engine, "checkin", _note_checkin)


def _note_checkin(dbapi_connection, record) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _check_alive(dbapi_connection, record, _proxy) -> None:
    """Hand out only live connections, without a round trip per checkout.

    An idle connection has nothing to read: if its socket is readable, the server has closed it or
    sent its last words (a restart, pg_terminate_backend), and the pool replaces it. A connection
    idle for a while gets a real ping as well, for a peer that vanished without a word.
    """
    fd = dbapi_connection.pgconn.socket if not dbapi_connection.closed else -1
    dead = fd < 0 or bool(select.select([fd], [], [], 0)[0])
    if not dead and time.monotonic() - record.info.get("checked_in_at", time.monotonic()) > PING_AFTER_IDLE_SECONDS:
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except psycopg.Error:
            dead = True
    if dead:
        raise exc.DisconnectionError("the database closed this connection")


def get_engine() -> Engine:
    return _engine if _engine is not None else configure()


def dispose_after_fork() -> None:
    """A forked process must not reuse the parent's connections."""
    if _engine is not None:
        _engine.dispose(close=False)
