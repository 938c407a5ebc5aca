"""Sign-in, sessions, lockout, origin check and roles, against the real PostgreSQL and Redis."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask_jwt_extended import create_access_token
from sqlalchemy import update

from models import User
from tests.factories import TEST_PASSWORD
from tests.support import SPA, bearer, login


def test_login_sets_cookie_and_returns_token(client, make_user, make_city):
    city = make_city()
    user = make_user("director", city_id=city.id)
    response = login(client, user)
    body = response.json
    assert body["user_id"] == user.id
    assert body["role"] == body["user_type"] == "director"
    assert body["city_id"] == city.id
    assert body["token_type"] == "bearer" and body["access_token"]
    assert "password" not in response.get_data(as_text=True)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("access_token=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_is_case_insensitive_on_login(client, make_user):
    user = make_user("manager", login="Ivanova")
    response = client.post("/api/auth/login", json={"login": "IVANOVA", "password": TEST_PASSWORD})
    assert response.status_code == 200
    assert response.json["user_id"] == user.id


def test_me_by_cookie(client, make_user):
    user = make_user("callcentr", full_name="Оператор Анна")
    login(client, user)
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json["id"] == user.id
    assert me.json["login"] == user.login
    assert me.json["role"] == "callcentr"
    assert me.json["user_type"] == "employee"
    assert me.json["status"] == "active"
    assert me.json["name"] == "Оператор Анна"
    assert "password_hash" not in me.json


def test_me_by_bearer(app, make_user):
    user = make_user("master", city_id=None)
    token = login(app.test_client(), user).json["access_token"]
    fresh_client = app.test_client()  # no cookie jar shared with the login
    me = fresh_client.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json["user_type"] == "master"


def test_wrong_password(client, make_user):
    user = make_user("manager")
    response = client.post("/api/auth/login", json={"login": user.login, "password": "wrong"})
    assert response.status_code == 401
    assert response.json == {"detail": "Неверный логин или пароль", "code": "invalid_credentials"}
    assert "Set-Cookie" not in response.headers


def test_unknown_login_same_answer_as_wrong_password(client):
    response = client.post("/api/auth/login", json={"login": "nobody", "password": "whatever"})
    assert response.status_code == 401
    assert response.json["code"] == "invalid_credentials"


@pytest.mark.parametrize("status", ["inactive", "suspended", "pending"])
def test_inactive_user_cannot_sign_in(client, make_user, status):
    user = make_user("callcentr", status=status)
    response = client.post("/api/auth/login", json={"login": user.login, "password": TEST_PASSWORD})
    assert response.status_code == 403
    assert response.json["code"] == "user_inactive"
    assert response.json["detail"] == "Учётная запись не активна"


def test_busy_master_may_sign_in(client, make_user):
    user = make_user("master", status="busy")
    assert login(client, user).json["role"] == "master"


def test_deactivated_user_loses_session_at_once(client, make_user, db):
    user = make_user("manager")
    login(client, user)
    db.execute(update(User).where(User.id == user.id).values(status="inactive"))
    db.commit()
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.json["code"] == "user_inactive"


def test_lockout_after_five_failures(client, make_user):
    user = make_user("manager")
    for _ in range(4):
        response = client.post("/api/auth/login", json={"login": user.login, "password": "bad"})
        assert response.status_code == 401
    fifth = client.post("/api/auth/login", json={"login": user.login, "password": "bad"})
    assert fifth.status_code == 423
    assert fifth.json["code"] == "login_locked"
    assert "30 мин" in fifth.json["detail"]
    # Even the right password is refused while locked, with the time left.
    locked = client.post("/api/auth/login", json={"login": user.login, "password": TEST_PASSWORD})
    assert locked.status_code == 423
    assert 1700 < int(locked.headers["Retry-After"]) <= 1800


def test_lockout_is_per_login_and_ip(client, make_user):
    victim, other = make_user("manager"), make_user("manager")
    for _ in range(5):
        client.post("/api/auth/login", json={"login": victim.login, "password": "bad"})
    assert login(client, other).status_code == 200
    from_elsewhere = client.post(
        "/api/auth/login", json={"login": victim.login, "password": TEST_PASSWORD},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert from_elsewhere.status_code == 200


def test_success_resets_failure_count(client, make_user):
    user = make_user("manager")
    for _ in range(4):
        client.post("/api/auth/login", json={"login": user.login, "password": "bad"})
    login(client, user)
    for _ in range(4):
        assert client.post("/api/auth/login", json={"login": user.login, "password": "bad"}).status_code == 401


def test_token_unusable_after_logout_cookie_and_bearer(app, make_user):
    user = make_user("director")
    browser = app.test_client()
    token = login(browser, user).json["access_token"]
    out = browser.post("/api/auth/logout", headers=SPA)
    assert out.status_code == 200
    assert "access_token=;" in out.headers["Set-Cookie"]  # cookie cleared
    # The same token, replayed by cookie or by header, is refused.
    replay = app.test_client()
    replay.set_cookie("access_token", token)
    assert replay.get("/api/auth/me").status_code == 401
    response = app.test_client().get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json["code"] == "token_revoked"


def test_logout_without_session_is_harmless(client):
    response = client.post("/api/auth/logout")
    assert response.status_code == 200


def test_expired_token(app, client, make_user):
    user = make_user("manager")
    with app.app_context():
        token = create_access_token(
            identity=str(user.id), additional_claims={"sid": "s1", "sst": int(time.time()) - 10},
            expires_delta=timedelta(seconds=-5),
        )
    response = client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json == {"detail": "Сессия истекла, войдите снова", "code": "token_expired"}


def test_forged_token(client, make_user):
    user = make_user("admin")
    import jwt

    forged = jwt.encode({"sub": str(user.id), "sid": "x", "sst": int(time.time()), "type": "access",
                         "exp": int(time.time()) + 600}, "not-our-secret-but-long-enough-32chars!", "HS256")
    response = client.get("/api/auth/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.json["code"] == "token_invalid"


def test_garbage_authorization_header(client):
    response = client.get("/api/auth/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert response.json["detail"]


def test_session_extended_silently_while_used(app, make_user):
    user = make_user("manager")
    with app.app_context():
        # A token with a few minutes left of its idle lifetime, issued 5 hours into the shift.
        token = create_access_token(
            identity=str(user.id),
            additional_claims={"sid": "shift-1", "sst": int(time.time()) - 5 * 3600, "role": "manager"},
            expires_delta=timedelta(minutes=3),
        )
    by_header = app.test_client().get("/api/auth/me", headers=bearer(token))
    assert by_header.status_code == 200
    renewed = by_header.headers["X-Access-Token"]
    assert renewed != token
    assert app.test_client().get("/api/auth/me", headers=bearer(renewed)).status_code == 200

    browser = app.test_client()
    browser.set_cookie("access_token", token)
    by_cookie = browser.get("/api/auth/me")
    assert by_cookie.status_code == 200
    assert by_cookie.headers["Set-Cookie"].startswith("access_token=")


def test_fresh_session_is_not_reissued(client, make_user):
    login(client, make_user("manager"))
    response = client.get("/api/auth/me")
    assert "X-Access-Token" not in response.headers
    assert "Set-Cookie" not in response.headers


def test_session_not_extended_past_its_hard_end(app, make_user):
    from settings import settings

    user = make_user("manager")
    with app.app_context():
        token = create_access_token(
            identity=str(user.id),
            additional_claims={"sid": "late", "role": "manager",
                               "sst": int(time.time()) - settings.SESSION_MAX_HOURS * 3600 + 60},
            expires_delta=timedelta(seconds=60),
        )
    response = app.test_client().get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 200
    assert "X-Access-Token" not in response.headers


def test_cookie_unsafe_method_needs_allowed_origin(client, make_user):
    login(client, make_user("admin"))
    no_origin = client.post("/api/jobs/ping")
    assert no_origin.status_code == 403
    assert no_origin.json["code"] == "origin_forbidden"
    evil = client.post("/api/jobs/ping", headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    evil_referer = client.post("/api/jobs/ping", headers={"Referer": "https://evil.example/page"})
    assert evil_referer.status_code == 403


def test_cookie_origin_must_match_scheme_host_and_port(client, make_user):
    """The API's own origin passes only with its scheme, host and port (default ports spelt or not);
    CORS_ORIGINS (http://spa.test in the tests) likewise."""
    login(client, make_user("admin"))  # the test client's API is http://localhost

    def ping(**headers):
        """An unsafe call that changes nothing: past the origin check, its empty name is a 422."""
        return client.post("/api/cities", json={"name": ""}, headers=headers).status_code

    assert ping(Origin="http://localhost") == 422
    assert ping(Origin="http://localhost:80") == 422
    assert ping(Origin="http://spa.test:80") == 422
    for origin in ("https://localhost", "http://localhost:8080", "https://spa.test", "http://spa.test:3000",
                   "ftp://localhost", "null", "http://localhost:bad"):
        assert ping(Origin=origin) == 403, origin
    assert ping(Referer="https://localhost/docs") == 403
    assert ping(Referer="http://localhost/docs") == 422


def test_an_api_served_over_https_refuses_its_http_twin(app, make_user):
    """At https://api.host, a page of http://api.host (a network attacker's, say) is another origin."""
    client = app.test_client()
    user = make_user("admin")
    response = client.post("/api/auth/login", json={"login": user.login, "password": TEST_PASSWORD},
                           base_url="https://api.host")
    assert response.status_code == 200

    def ping(origin):
        """An unsafe call that changes nothing: past the origin check, its empty name is a 422."""
        return client.post("/api/cities", json={"name": ""}, headers={"Origin": origin}, base_url="https://api.host")

    refused = ping("http://api.host")
    assert refused.status_code == 403 and refused.json["code"] == "origin_forbidden"
    assert ping("https://api.host").status_code == 422
    assert ping("https://api.host:443").status_code == 422


def test_bearer_unsafe_method_needs_no_origin(app, client, make_user):
    """A bearer token is never sent by a browser on its own: no origin check applies."""
    token = login(app.test_client(), make_user("manager")).json["access_token"]
    response = client.post("/api/jobs/ping", headers=bearer(token))
    assert response.status_code == 403  # the role check answers, not the origin check
    assert response.json["code"] == "forbidden"


def test_role_check(client, make_user):
    login(client, make_user("callcentr"))
    response = client.post("/api/jobs/ping", headers=SPA)
    assert response.status_code == 403
    assert response.json == {"detail": "Недостаточно прав", "code": "forbidden"}


def test_password_is_never_stored_in_clear(db, make_user):
    user = make_user("manager")
    assert TEST_PASSWORD not in user.password_hash
    assert user.password_hash.startswith("$argon2id$")
