"""The plumbing of every call: the gate (per-client and per-user limits and the session state in one
Redis round trip), pooled connections the server closed replaced without an error, reads that keep
their prepared statements, and precompiled reads."""
from __future__ import annotations

import os

import psycopg
import pytest

import embedded
from models import kv
from models.db import get_engine
from tests.conftest import bearer, login, wait_for
from tests.telephony_support import overridden


@pytest.fixture()
def limited_app():
    from api import create_app

    return create_app({"TESTING": True, "RATELIMIT_ENABLED": True})


def _token(client, user) -> str:
    return login(client, user).json["access_token"]


def test_the_per_user_limit_refuses_only_that_user(limited_app, make_user):
    client = limited_app.test_client()
    first, second = make_user("admin"), make_user("admin")
    first_token, second_token = _token(client, first), _token(client, second)
    with overridden(RATE_LIMIT_PER_USER="3 per minute", RATE_LIMIT_PER_CLIENT="1000 per minute"):
        statuses = [client.get("/api/auth/me", headers=bearer(first_token)).status_code for _ in range(3)]
        refused = client.get("/api/auth/me", headers=bearer(first_token))
        other = client.get("/api/auth/me", headers=bearer(second_token))
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json["code"] == "rate_limited" and refused.json["detail"].startswith("Слишком много запросов")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 200


def test_the_per_client_limit_counts_anonymous_calls_too(limited_app):
    client = limited_app.test_client()
    with overridden(RATE_LIMIT_PER_CLIENT="2 per minute"):
        statuses = [client.get("/api/requests/").status_code for _ in range(3)]
        health = [client.get("/api/health").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert health == [200, 200, 200]  # probes are not counted


def test_without_rate_limiting_configured_nothing_is_counted(client, make_user):
    token = _token(client, make_user("admin"))
    with overridden(RATE_LIMIT_PER_USER="1 per minute", RATE_LIMIT_PER_CLIENT="1 per minute"):
        statuses = {client.get("/api/auth/me", headers=bearer(token)).status_code for _ in range(3)}
    assert statuses == {200}


def test_a_revoked_session_and_a_bad_token_are_told_apart(client, make_user):
    token = _token(client, make_user("admin"))
    assert client.post("/api/auth/logout", headers=bearer(token)).status_code in (200, 204)
    revoked = client.get("/api/auth/me", headers=bearer(token))
    forged = client.get("/api/auth/me", headers=bearer(token[:-3] + "abc"))
    not_bearer = client.get("/api/auth/me", headers={"Authorization": f"Token {token}"})
    assert (revoked.status_code, revoked.json["code"]) == (401, "token_revoked")
    assert (forged.status_code, forged.json["code"]) == (401, "token_invalid")
    assert (not_bearer.status_code, not_bearer.json["code"]) == (401, "not_authenticated")


def test_with_redis_down_sessions_are_refused_with_503_not_500(limited_app, make_user):
    client = limited_app.test_client()
    token = _token(client, make_user("admin"))
    kv.reset(f"redis://127.0.0.1:{embedded.free_port()}/0")  # nothing listens there
    try:
        signed_in = client.get("/api/auth/me", headers=bearer(token))
        anonymous = limited_app.test_client().get("/api/auth/me")
    finally:
        kv.reset(os.environ["REDIS_URL"])
    assert (signed_in.status_code, signed_in.json["code"]) == (503, "session_store_unavailable")
    assert (anonymous.status_code, anonymous.json["code"]) == (401, "not_authenticated")


def test_a_pooled_connection_the_server_ended_is_replaced_before_use(database):
    from sqlalchemy import create_engine

    from models.db import check_liveness_at_checkout

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
    """A GET ends its transaction with COMMIT: a ROLLBACK would make psycopg drop every prepared
    statement of the connection, and each read would be planned by PostgreSQL again."""
    from models.db import configure
    from tests.conftest import create_user

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


def test_a_precompiled_read_gives_the_rows_the_session_gives(db, make_city):
    """Precompiled runs psycopg directly only where psycopg's values are SQLAlchemy's own; a column
    that needs SQLAlchemy's processing (a float from numeric here) sends it through the session."""
    from sqlalchemy import Float, bindparam, cast, select

    from models.db import Precompiled, Session
    from models.lookups import City

    city = make_city()
    plain = select(City.id, City.name).where(City.id == bindparam("city_id"))
    processed = select(City.id, cast(City.id, Float).label("as_float")).where(City.id == bindparam("city_id"))
    direct, through_session = Precompiled(plain), Precompiled(processed)
    assert tuple(direct.one_or_none({"city_id": city.id})) == tuple(Session.execute(plain, {"city_id": city.id}).one())
    assert direct.one_or_none({"city_id": -1}) is None
    row = through_session.one_or_none({"city_id": city.id})
    assert row.as_float == float(city.id) and (direct._direct, through_session._direct) == (True, False)
