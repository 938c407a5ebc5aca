"""The engine and the session used by both the API and the workers, and the unit of work.

One scoped session per thread: the API removes it at the end of each request, workers after each
task; a forked worker process disposes the inherited pool before its first query. Tasks write
through `unit_of_work()`, which commits what a block did or rolls it back.
"""
from __future__ import annotations

import logging
import operator
import select
import time
from contextlib import contextmanager
from typing import Iterator

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import namedtuple_row, tuple_row
from psycopg.types.numeric import FloatLoader
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import scoped_session, sessionmaker
from sqlalchemy.sql import sqltypes

from settings import settings

log = logging.getLogger(__name__)
_engine: Engine | None = None
NEVER_AUTO_PREPARE = 2 ** 31 - 1
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
    # psycopg would prepare any statement run 5 times on a connection, and PostgreSQL would soon
    # run it with a generic plan: right for a lookup by id, wrong for a report over a date range (one
    # plan for 30 days and for 365). The threshold is out of reach, so only Precompiled reads, which
    # ask for it, are prepared (None would disable even those).
    options = {"pool_size": 5, "max_overflow": 10, "pool_recycle": 1800,
               "connect_args": {"connect_timeout": 5, "prepare_threshold": NEVER_AUTO_PREPARE}}
    options.update(engine_options)
    _engine = create_engine(sqlalchemy_url(url or database_url()), **options)
    event.listen(_engine, "checkin", _end_autocommit)
    if not options.get("pool_pre_ping"):
        check_liveness_at_checkout(_engine)
    Session.remove()
    Session.configure(bind=_engine)
    return _engine


# ---- the unit of work ------------------------------------------------------------------------------

@contextmanager
def unit_of_work(*, read_only: bool = False) -> Iterator[scoped_session]:
    """One transaction of the session: committed when the block ends, rolled back if it raises.

    `read_only`: rolled back when the block ends too. For reads that must not leave a transaction
    open (before slow work: a download, a file check) and for blocks whose writes are tentative.
    Blocks are not nested: each one ends the session's transaction."""
    try:
        yield Session
        if read_only:
            Session.rollback()
        else:
            Session.commit()
    except BaseException:
        Session.rollback()
        raise


@contextmanager
def prepared_statements() -> Iterator[None]:
    """The session's statements in this block are prepared by psycopg on their first run (parsed and
    planned once per connection, not every time), for work that runs the same few statements many
    times in a row. Plain lookups only: a generic plan is fine for them (see NEVER_AUTO_PREPARE)."""
    dbapi_connection = Session.connection().connection.dbapi_connection
    saved = dbapi_connection.prepare_threshold
    dbapi_connection.prepare_threshold = 0
    try:
        yield
    finally:
        dbapi_connection.prepare_threshold = saved


# ---- reads outside a transaction block ------------------------------------------------------------

AUTOCOMMIT_READS = "leadline_autocommit_reads"


def autocommit_reads(session: OrmSession) -> None:
    """Run this session's statements outside a transaction block (psycopg's autocommit).

    For a request that only reads (the API's GETs): psycopg would otherwise send BEGIN before the
    first statement and the request would end with COMMIT, two round trips and two commands for
    PostgreSQL on every call, for nothing: at READ COMMITTED every statement takes its own snapshot
    either way, so a read sees exactly what it saw inside a transaction. Sessions bound to a
    connection (tests' outer transactions) keep theirs. A read that needs a transaction block (a
    server-side cursor) asks for one with `transaction_block()`."""
    session.info[AUTOCOMMIT_READS] = True


def reads_autocommit(session: OrmSession) -> bool:
    return bool(session.info.get(AUTOCOMMIT_READS)) and isinstance(session.bind, Engine)


@event.listens_for(OrmSession, "after_begin")
def _begin_autocommit(session, transaction, connection) -> None:
    if reads_autocommit(session):
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            dbapi_connection.autocommit = True


def transaction_block() -> None:
    """The session's next statements run in one transaction block, whatever `autocommit_reads` said
    (ended by the session's commit or rollback)."""
    dbapi_connection = Session.connection().connection.dbapi_connection
    if dbapi_connection.autocommit:
        dbapi_connection.autocommit = False


def _end_autocommit(dbapi_connection, record) -> None:
    """A connection goes back to the pool in the default mode (statements in transactions). An
    invalidated connection comes back as None (already closed and discarded)."""
    if dbapi_connection is not None and dbapi_connection.autocommit and not dbapi_connection.closed:
        try:
            dbapi_connection.autocommit = False
        except psycopg.Error:  # not idle (never after the pool's reset): the pool will not reuse it
            record.invalidate()


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


def _native(type_) -> bool:
    """psycopg takes and returns this type's values as SQLAlchemy would (no processing needed)."""
    if isinstance(type_, sqltypes.Numeric):
        return type_.asdecimal and not isinstance(type_, sqltypes.Float)
    if isinstance(type_, (sqltypes.Enum, sqltypes.Unicode)):
        return False
    if isinstance(type_, sqltypes.ARRAY):  # a list of ids, cast to INTEGER[] in the SQL
        return isinstance(type_.item_type, sqltypes.Integer)
    return isinstance(type_, (sqltypes.Integer, sqltypes.String, sqltypes.DateTime, sqltypes.Date,
                              sqltypes.Boolean, sqltypes.JSON, sqltypes.NullType))


class _TextAsBytes(Loader):
    def load(self, data) -> bytes:
        return bytes(data)


def _direct(compiled) -> bool:
    """psycopg can run `compiled` by itself: no parameter or result column needs SQLAlchemy's type
    processing, and no parameter is expanded when the statement runs (an IN list)."""
    if compiled.post_compile_params or compiled.literal_execute_params:
        return False
    binds = compiled._bind_processors  # noqa: SLF001
    return all(_native(compiled.binds[name].type) for name in binds) and all(
        _native(column[3]) for column in compiled._result_columns  # noqa: SLF001
    )


def int_array(ids: list[int]) -> str:
    """A list of ids as PostgreSQL's array text (`{1,2,3}`), for a parameter the SQL casts to INTEGER[]:
    psycopg would otherwise inspect and dump a thousand ints one by one in Python."""
    return "{" + ",".join(map(str, ids)) + "}"


def _first_column(cursor) -> operator.itemgetter:
    """A psycopg row factory: each row is its first value (no tuple or named tuple per row)."""
    return operator.itemgetter(0)


def _prepared_rows(sql: str, params: dict, limit: int | None = None, text_as_bytes: bool = False,
                   tuples: bool = False, row_factory=None) -> list:
    """`sql` run by psycopg on the session's connection as a prepared statement.

    Rows come as named tuples; with `tuples`, as plain tuples with numeric values as floats (rows that
    are only unpacked); with `row_factory`, as that factory makes them (e.g. `_first_column`)."""
    dbapi_connection = Session.connection().connection.dbapi_connection
    row_factory = row_factory or (tuple_row if tuples else namedtuple_row)
    with dbapi_connection.cursor(row_factory=row_factory) as cursor:
        if text_as_bytes:
            cursor.adapters.register_loader("text", _TextAsBytes)
        if tuples:  # rows only unpacked: money as float, as it is answered
            cursor.adapters.register_loader("numeric", FloatLoader)
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchmany(limit) if limit else cursor.fetchall()


class Precompiled:
    """A Core SELECT compiled once and run by psycopg itself on the session's connection (in the
    session's transaction, or outside any for a GET), as a prepared statement: the hottest reads skip
    SQLAlchemy's per-call execution machinery and PostgreSQL's parsing and planning.

    For statements whose parameters and result columns need no SQLAlchemy type processing (ids,
    text, numbers, dates and JSON, which psycopg converts itself); others run through the session."""

    def __init__(self, stmt, *, text_as_bytes: bool = False, tuples: bool = False) -> None:
        """`text_as_bytes`: text columns come as UTF-8 bytes, not str (JSON text that is only passed on).
        `tuples`: rows are plain tuples, numbers (numeric) floats: for rows that are only unpacked."""
        self.stmt = stmt
        self.text_as_bytes = text_as_bytes
        self.tuples = tuples
        self._compiled: tuple[str, dict] | None = None
        self._direct = True

    def _sql(self) -> tuple[str, dict]:
        if self._compiled is None:
            compiled = self.stmt.compile(dialect=get_engine().dialect)
            self._direct = _direct(compiled)
            self._compiled = (compiled.string, compiled.construct_params(_check=False))
        return self._compiled

    def _rows(self, params: dict, limit: int | None = None) -> list:
        sql, defaults = self._sql()
        if not self._direct:
            result = Session.execute(self.stmt, params)
            return result.fetchmany(limit) if limit else result.all()
        return _prepared_rows(sql, {**defaults, **params}, limit, self.text_as_bytes, self.tuples)

    def all(self, params: dict) -> list:
        return self._rows(params)

    def one_or_none(self, params: dict):
        rows = self._rows(params, limit=2)
        if len(rows) > 1:
            raise exc.MultipleResultsFound("more than one row where one or none was expected")
        return rows[0] if rows else None


SHAPES_KEPT = 1000
_shapes: dict = {}


def prepared_scalars(stmt) -> list:
    """The first column of every row of `stmt`, as `Session.scalars(stmt).all()` gives it, run as a
    prepared statement: one per statement shape (SQLAlchemy's cache key, e.g. a page's ids under one
    combination of filters), compiled once, with this call's values. Shapes psycopg cannot run
    by itself go through the session."""
    cache_key = stmt._generate_cache_key()  # noqa: SLF001 - what the session would compute to execute it
    if cache_key is None:
        return Session.scalars(stmt).all()
    shape = _shapes.get(cache_key.key)
    if shape is None:
        compiled = stmt.compile(dialect=get_engine().dialect, cache_key=cache_key)
        if len(_shapes) >= SHAPES_KEPT:
            _shapes.clear()
        shape = _shapes[cache_key.key] = (compiled, _direct(compiled))
    compiled, direct = shape
    if not direct:
        return Session.scalars(stmt).all()
    params = compiled.construct_params(extracted_parameters=cache_key.bindparams, _check=False)
    return _prepared_rows(compiled.string, params, row_factory=_first_column)


# admin_shutdown, crash_shutdown, cannot_connect_now; class 08 is "connection exception".
_SERVER_GONE = {"57P01", "57P02", "57P03"}


def database_unreachable(error: BaseException) -> bool:
    """The database could not be reached or dropped the connection (a restart, the network), as
    opposed to a statement that failed: the caller may try again later."""
    if isinstance(error, exc.DisconnectionError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig
    if isinstance(error, psycopg.OperationalError):
        state = error.sqlstate
        return state is None or state.startswith("08") or state in _SERVER_GONE
    return False


def remove_session() -> None:
    """End this thread's session: the API after each request, workers after each task.

    Closing rolls back what the session left open. When the database has already ended the
    connection (a restart, or `make run` stopping its embedded PostgreSQL), that rollback cannot
    reach it and there is nothing left to end: PostgreSQL rolled the transaction back itself. That
    case is one line of log; any other failure is raised."""
    try:
        Session.remove()
    except Exception as error:
        if not database_unreachable(error):
            raise
        Session.registry.clear()  # Session.remove() stops before forgetting the session it could not close
        log.warning("session ended after the database closed its connection (%s)", type(error).__name__)


def get_engine() -> Engine:
    return _engine if _engine is not None else configure()


def dispose_engine() -> None:
    """Close the pool's connections: for a process that is done with the database (one that was
    never configured has none)."""
    if _engine is not None:
        _engine.dispose()


def dispose_after_fork() -> None:
    """A forked process must not reuse the parent's connections."""
    if _engine is not None:
        _engine.dispose(close=False)
