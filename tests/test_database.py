"""The API's database plumbing: pooled connections the server closed replaced without an error,
reads that keep their prepared statements, precompiled reads, and a 503 when PostgreSQL is gone
(before a call or in the middle of one)."""
from __future__ import annotations

import psycopg
import pytest

import embedded
from models.core.db import get_engine
from tests.support import bearer, login, wait_for


def _token(client, user) -> str:
    return login(client, user).json["access_token"]


def test_a_pooled_connection_the_server_ended_is_replaced_before_use(database):
    from sqlalchemy import create_engine

    from models.core.db import check_liveness_at_checkout

    engine = create_engine(get_engine().url, pool_size=1, max_overflow=0)
    check_liveness_at_checkout(engine)

    def backend_pid() -> int:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()

    try:
        pid = backend_pid()
        assert backend_pid() == pid  # the one pooled connection comes back
        url = get_engine().url.set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_for(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                           (pid,)).fetchone()[0] == 0, timeout=10)
        assert backend_pid() != pid  # no OperationalError: the dead connection was dropped at checkout
    finally:
        engine.dispose()


def test_reads_keep_the_connections_prepared_statements(client, committed):
    """A GET never ends with ROLLBACK, which would make psycopg drop every prepared statement of the
    connection, and each read would be planned by PostgreSQL again."""
    from models.core.db import configure
    from tests.factories import create_user

    url = get_engine().url.render_as_string(hide_password=False)
    configure(url, pool_size=1, max_overflow=0)  # one connection: the one every call below uses
    try:
        token = _token(client, create_user("admin"))
        for _ in range(3):  # a request's detail is a prepared read (found or not)
            assert client.get("/api/requests/999999/", headers=bearer(token)).status_code == 404
        for _ in range(6):  # a report is not: a generic plan would serve every date range alike
            assert client.get("/api/reports/dashboard?date_from=2026-01-01&date_to=2026-01-31",
                              headers=bearer(token)).status_code == 200
        with get_engine().connect() as conn:
            prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    finally:
        configure(url)
    assert any("FROM requests" in statement for statement in prepared), prepared
    assert not any("count(" in statement.lower() for statement in prepared), prepared


def test_a_get_reads_outside_a_transaction_block_and_other_calls_inside_one(app, committed):
    """A GET's statements run without BEGIN and COMMIT (two round trips saved on every read); a POST
    keeps its transaction; a read that needs a block (a server-side cursor) gets one; and the
    connection goes back to the pool in the default mode."""
    from psycopg.pq import TransactionStatus
    from sqlalchemy import text

    from models.core.db import Session, configure, transaction_block

    url = get_engine().url.render_as_string(hide_password=False)
    configure(url, pool_size=1, max_overflow=0)  # one connection: the same one every time below

    def status_after_select(method: str, block: bool = False) -> TransactionStatus:
        with app.test_request_context("/api/requests", method=method):
            app.preprocess_request()
            if block:
                transaction_block()
            Session.execute(text("SELECT 1"))
            status = Session.connection().connection.dbapi_connection.info.transaction_status
            Session.remove()
        return status

    try:
        assert status_after_select("GET") == TransactionStatus.IDLE
        assert status_after_select("POST") == TransactionStatus.INTRANS
        assert status_after_select("GET", block=True) == TransactionStatus.INTRANS
        assert status_after_select("GET") == TransactionStatus.IDLE
        with get_engine().connect() as conn:  # after a GET the pooled connection is back in the default mode
            assert conn.connection.dbapi_connection.autocommit is False
    finally:
        configure(url)


def test_a_precompiled_read_gives_the_rows_the_session_gives(db, make_city):
    """Precompiled runs psycopg directly only where psycopg's values are SQLAlchemy's own; a column
    that needs SQLAlchemy's processing (a float from numeric here) sends it through the session."""
    from sqlalchemy import Float, bindparam, cast, select

    from models.core.db import Precompiled, Session
    from models.directories.tables import City

    city = make_city()
    plain = select(City.id, City.name).where(City.id == bindparam("city_id"))
    processed = select(City.id, cast(City.id, Float).label("as_float")).where(City.id == bindparam("city_id"))
    direct, through_session = Precompiled(plain), Precompiled(processed)
    assert tuple(direct.one_or_none({"city_id": city.id})) == tuple(Session.execute(plain, {"city_id": city.id}).one())
    assert direct.one_or_none({"city_id": -1}) is None
    row = through_session.one_or_none({"city_id": city.id})
    assert row.as_float == float(city.id) and (direct._direct, through_session._direct) == (True, False)


def test_prepared_scalars_give_the_sessions_ids_for_every_value_of_a_shape(db, make_city):
    """One prepared statement per statement shape serves every value it is called with; a shape with
    an IN list (expanded when it runs) goes through the session."""
    from sqlalchemy import select

    from models.core.db import Session, _shapes, prepared_scalars
    from models.directories.tables import City

    cities = [make_city(f"Город {letter}") for letter in "АБВГД"]

    def page(name_from: str, offset: int):
        return select(City.id).where(City.name >= name_from).order_by(City.name.desc()).limit(2).offset(offset)

    for name_from, offset in (("Город А", 0), ("Город В", 1), ("Город Г", 0), ("Я", 0)):
        stmt = page(name_from, offset)
        assert prepared_scalars(stmt) == Session.scalars(stmt).all()
    assert prepared_scalars(page("Город А", 0)) == [cities[4].id, cities[3].id]
    assert prepared_scalars(page("Город А", 3)) == [cities[1].id, cities[0].id]
    listed = select(City.id).where(City.id.in_([cities[0].id, cities[2].id])).order_by(City.id)
    assert prepared_scalars(listed) == [cities[0].id, cities[2].id]
    shapes = [direct for compiled, direct in _shapes.values() if "cities" in compiled.string]
    assert sorted(shapes) == [False, True]  # one shape for every page above, one for the IN list
    prepared = Session.connection().exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    assert any("FROM cities" in statement and "OFFSET" in statement for statement in prepared), prepared


def test_with_the_database_unreachable_calls_get_503_and_nothing_is_written(client, committed):
    """The database gone (here: nothing listens where it should be) is a 503 the client may retry,
    not a 500; once it is back, the API answers again and nothing half-done is left behind."""
    from models.core.db import configure
    from models.directories.tables import City
    from tests.factories import create_user

    city = City(name="Тверь")
    committed.add(city)
    committed.commit()
    token = _token(client, create_user("admin"))  # the user is now cached: no query to authenticate
    url = get_engine().url.render_as_string(hide_password=False)
    configure(f"postgresql://postgres@127.0.0.1:{embedded.free_port()}/leadline")
    try:
        listed = client.get("/api/requests/?page=1&page_size=5", headers=bearer(token))
        booked = client.post("/api/transactions/", headers=bearer(token),
                             json={"city_id": city.id, "transaction_type_id": 1, "amount": "-1500"})
    finally:
        configure(url)
    for response in (listed, booked):
        assert response.status_code == 503, response.json
        assert response.json["code"] == "database_unavailable" and "База данных" in response.json["detail"]
    assert client.get("/api/requests/?page=1&page_size=5", headers=bearer(token)).status_code == 200
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM transactions").scalar() == 0


def test_a_connection_that_dies_mid_call_is_a_503_and_the_next_call_works(committed):
    """PostgreSQL ends the connection while a call holds it (a restart, pg_terminate_backend): the
    read fails as "database unreachable" (503, the client may retry), the end of the call does not
    turn that into a 500, and the pool does not hand the dead connection out again."""
    from sqlalchemy import select

    from api import create_app
    from models.core.db import Session, configure
    from models.directories.tables import City, RequestType
    from models.requests.tables import Request
    from tests.factories import create_user

    city = City(name="Кострома")
    committed.add(city)
    committed.flush()
    request_type = committed.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    row = Request(city_id=city.id, request_type_id=request_type, client_phone="79990001122")
    committed.add(row)
    committed.commit()
    request_id = row.id
    url = get_engine().url.render_as_string(hide_password=False)
    admin_url = get_engine().url.set(drivername="postgresql").render_as_string(hide_password=False)
    app = create_app({"TESTING": True, "RATELIMIT_ENABLED": False})
    armed, killed = [], []

    @app.before_request
    def end_the_connection_once() -> None:  # after the gate, before the view's read
        if not armed or killed:
            return
        pid = Session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            wait_for(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                           (pid,)).fetchone()[0] == 0, timeout=10)
        killed.append(pid)

    client = app.test_client()
    configure(url, pool_size=1, max_overflow=0)  # one connection: the one that dies
    try:
        token = _token(client, create_user("admin"))
        armed.append(True)
        failed = client.get(f"/api/requests/{request_id}/", headers=bearer(token))
        assert failed.status_code == 503, failed.get_data(as_text=True)
        assert failed.json["code"] == "database_unavailable"
        answered = client.get(f"/api/requests/{request_id}/", headers=bearer(token))
        assert answered.status_code == 200 and answered.json["id"] == request_id
        with get_engine().connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != killed[0]
    finally:
        Session.remove()
        configure(url)


def test_the_end_of_a_call_whose_connection_the_database_ended_is_a_warning(app, database, caplog):
    """A process that still has a transaction open when PostgreSQL ends its connection (a restart;
    `make run` stopping its embedded PostgreSQL under the stack process): ending the session cannot
    roll back on the dead connection. That is one warning, not an exception from the teardown, and
    the next session gets a live connection."""
    from sqlalchemy import text

    from models.core.db import Session, configure

    url = get_engine().url.render_as_string(hide_password=False)
    admin_url = get_engine().url.set(drivername="postgresql").render_as_string(hide_password=False)
    configure(url, pool_size=1, max_overflow=0)
    try:
        with app.app_context():
            pid = Session.execute(text("SELECT pg_backend_pid()")).scalar()  # a transaction is open
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                wait_for(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                               (pid,)).fetchone()[0] == 0, timeout=10)
        assert "session ended after the database closed its connection" in caplog.text
        with app.app_context():
            assert Session.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        Session.remove()
        configure(url)


def test_the_end_of_a_session_raises_any_other_failure(database):
    """Only a connection the database ended is forgiven: a session that fails to close for any
    other reason still raises."""
    from models.core.db import Session, remove_session

    class Unclosable:
        def close(self) -> None:
            raise RuntimeError("a bug while closing")

    Session.registry.set(Unclosable())
    try:
        with pytest.raises(RuntimeError, match="a bug while closing"):
            remove_session()
    finally:
        Session.registry.clear()


def test_the_cleanup_between_tests_outlasts_a_deadlock_with_a_late_writer(database):
    """The suite's own cleanup: a task queued by an earlier test may write to two tables while
    TRUNCATE locks them one by one. PostgreSQL ends the TRUNCATE as the deadlock's victim; the
    writer commits and the cleanup runs again, leaving every table empty."""
    import threading

    from tests.support import truncate_committed_data

    url = get_engine().url.set(drivername="postgresql").render_as_string(hide_password=False)
    errors = []

    def clean() -> None:
        try:
            truncate_committed_data()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with psycopg.connect(url) as writer, psycopg.connect(url, autocommit=True) as admin:
        writer.execute("SET deadlock_timeout = '20s'")  # the TRUNCATE is the one that detects the cycle
        writer.execute("INSERT INTO recordings (source, sha256, storage_path, size_bytes) "
                       "VALUES ('imap', %s, 'r/late.mp3', 1)", ("c" * 64,))  # TRUNCATE locks recordings last
        cleaner = threading.Thread(target=clean)
        cleaner.start()
        wait_for(lambda: admin.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                       "AND query LIKE 'TRUNCATE%%'").fetchone()[0] == 1, timeout=10)
        writer.execute("INSERT INTO cities (name) VALUES ('Поздний')")  # and cities first: a cycle
        writer.commit()
        cleaner.join(60)
        assert not cleaner.is_alive() and errors == []
        left = admin.execute("SELECT (SELECT count(*) FROM recordings) + (SELECT count(*) FROM cities)").fetchone()
        assert left[0] == 0


def test_check_db_never_shows_the_password_of_an_unreachable_database():
    """`flask --app api check-db` against a PostgreSQL that cannot be reached, its URL carrying a
    generated password pasted without encoding: the driver's error names what failed, masked."""
    import os
    import subprocess
    import sys

    password = "Qw8eRt5y@Ui3oPa7sD"  # noqa: S105 - a test's made-up password
    env = dict(os.environ, DATABASE_URL=f"postgresql://leadline:{password}@127.0.0.1:{embedded.free_port()}/leadline")
    checked = subprocess.run([sys.executable, "-m", "flask", "--app", "api", "check-db"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 2, checked.stderr
    assert "database: UNREACHABLE (OperationalError" in checked.stderr
    assert "127.0.0.1" in checked.stderr
    for piece in password.split("@"):
        assert piece not in checked.stdout + checked.stderr
