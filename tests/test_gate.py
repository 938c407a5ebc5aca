"""The gate before every view: per-client and per-user limits and the session state in one Redis
round trip, and the answers when a token is bad or Redis is gone."""
from __future__ import annotations

import os

import pytest

import embedded
from models.core import redis as kv
from tests.support import bearer, login
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


def test_a_token_verified_once_is_still_refused_when_it_expires(client, make_user, monkeypatch):
    """The gate keeps the claims of tokens it has verified; the clock still ends them."""
    import time as real_time

    from api import gate

    token = _token(client, make_user("admin"))
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200
    assert any(key[0] == token for key in gate._verified)  # noqa: SLF001 - kept after the first call

    class Later:
        @staticmethod
        def time() -> float:
            return real_time.time() + 24 * 3600

    monkeypatch.setattr(gate, "time", Later)
    response = client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json["code"] == "token_expired"
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")  # another signature: verified afresh
    assert client.get("/api/auth/me", headers=bearer(forged)).json["code"] == "token_invalid"


def test_answers_that_are_our_fault_do_not_use_up_the_limits(make_user):
    """A client retrying through an outage (503) or a fault of ours (500) is not refused with 429 after it."""
    from api import create_app
    from api.errors import ApiError
    from api.security import login_required

    app = create_app({"TESTING": True, "RATELIMIT_ENABLED": True, "PROPAGATE_EXCEPTIONS": False})

    @login_required
    def outage():
        raise ApiError(503, "Сервис временно недоступен", code="unavailable")

    @login_required
    def fault():
        raise RuntimeError("a bug")

    app.add_url_rule("/api/test-outage", "test_outage", outage)
    app.add_url_rule("/api/test-fault", "test_fault", fault)
    client = app.test_client()
    token = _token(client, make_user("admin"))
    with overridden(RATE_LIMIT_PER_USER="3 per minute", RATE_LIMIT_PER_CLIENT="3 per minute"):
        failures = [client.get(path, headers=bearer(token)).status_code
                    for path in ("/api/test-outage", "/api/test-fault") * 5]
        after = [client.get("/api/auth/me", headers=bearer(token)).status_code for _ in range(4)]
    assert failures == [503, 500] * 5
    assert after == [200, 200, 200, 429]  # the three calls of the window are all still there
