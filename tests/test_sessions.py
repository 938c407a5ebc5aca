"""Sessions follow the account: a new password, role or city, losing the right to sign in and deletion
end every session of the user at once; reactivation brings none back; whoever changes their own password
keeps the session they are using. Real PostgreSQL and Redis, tokens sent as the SPA (cookie) and as
bearer clients send them."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from models import Session, User
from models.directories.tables import Role
from tests.factories import TEST_PASSWORD
from tests.support import SPA, bearer, login

NEW_PASSWORD = "Lantern-Orbit-57"


def role_id(name: str) -> int:
    return Session.scalar(select(Role.id).where(Role.name == name))


class Sessions:
    """Two sessions of one user: a browser (cookie) and a bearer client (token)."""

    def __init__(self, app, user, password=TEST_PASSWORD):
        self.browser = app.test_client()
        login(self.browser, user, password=password)
        self.token = login(app.test_client(), user, password=password).json["access_token"]
        self.app = app

    def browser_status(self) -> int:
        return self.browser.get("/api/auth/me").status_code

    def bearer_answer(self):
        return self.app.test_client().get("/api/auth/me", headers=bearer(self.token))

    def both_alive(self) -> bool:
        return self.browser_status() == 200 and self.bearer_answer().status_code == 200

    def assert_both_ended(self) -> None:
        me = self.browser.get("/api/auth/me")
        assert me.status_code == 401, me.json
        answer = self.bearer_answer()
        assert answer.status_code == 401, answer.json
        assert answer.json["code"] in ("token_revoked", "user_inactive")
        assert answer.json["detail"]


@pytest.fixture()
def admin_caller(app, make_user):
    admin = make_user("admin")
    caller = app.test_client()
    login(caller, admin)
    return caller


def test_password_reset_by_an_admin_ends_every_session(app, admin_caller, make_user, make_city):
    master = make_user("master", city_id=make_city().id)
    sessions = Sessions(app, master)
    assert sessions.both_alive()
    response = admin_caller.put(f"/api/users/masters/{master.id}", json={"password": NEW_PASSWORD}, headers=SPA)
    assert response.status_code == 200, response.json
    sessions.assert_both_ended()
    assert sessions.bearer_answer().json == {"detail": "Сессия завершена, войдите снова", "code": "token_revoked"}
    # The new password signs in; the old one does not.
    assert login(app.test_client(), master, password=NEW_PASSWORD).status_code == 200
    stale = app.test_client().post("/api/auth/login", json={"login": master.login, "password": TEST_PASSWORD})
    assert stale.status_code == 401


def test_deactivation_ends_sessions_and_reactivation_does_not_revive_them(app, admin_caller, make_user):
    employee = make_user("callcentr")
    sessions = Sessions(app, employee)
    path = f"/api/users/employees/{employee.id}"
    assert admin_caller.put(path, json={"status": "inactive"}, headers=SPA).status_code == 200
    sessions.assert_both_ended()
    assert admin_caller.put(path, json={"status": "active"}, headers=SPA).status_code == 200
    sessions.assert_both_ended()
    assert sessions.bearer_answer().json["code"] == "token_revoked"
    # Signing in again works: only the old sessions are over.
    fresh = app.test_client()
    login(fresh, employee)
    assert fresh.get("/api/auth/me").status_code == 200


def test_role_change_ends_sessions(app, admin_caller, make_user):
    employee = make_user("callcentr")
    sessions = Sessions(app, employee)
    response = admin_caller.put(f"/api/users/employees/{employee.id}", json={"role_id": role_id("manager")},
                                headers=SPA)
    assert response.status_code == 200, response.json
    sessions.assert_both_ended()


def test_city_change_ends_sessions(app, admin_caller, make_user, make_city):
    master = make_user("master", city_id=make_city().id)
    sessions = Sessions(app, master)
    other_city = make_city()
    response = admin_caller.put(f"/api/users/masters/{master.id}", json={"city_id": other_city.id}, headers=SPA)
    assert response.status_code == 200, response.json
    sessions.assert_both_ended()


def test_deletion_ends_sessions(app, admin_caller, make_user):
    employee = make_user("callcentr")
    sessions = Sessions(app, employee)
    assert admin_caller.delete(f"/api/users/employees/{employee.id}", headers=SPA).status_code in (200, 204)
    sessions.assert_both_ended()


def test_other_changes_keep_sessions(app, admin_caller, make_user, make_city):
    master = make_user("master", city_id=make_city().id)
    sessions = Sessions(app, master)
    body = {"notes": "работает по выходным", "full_name": "Мастер Пётр", "status": "busy"}
    assert admin_caller.put(f"/api/users/masters/{master.id}", json=body, headers=SPA).status_code == 200
    assert sessions.both_alive()


def test_own_password_change_keeps_this_session_and_ends_the_others(app, make_user):
    user = make_user("manager")
    mine = app.test_client()
    login(mine, user)
    others = Sessions(app, user)
    response = mine.post("/api/auth/password", headers=SPA,
                         json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 200, response.json
    assert response.json == {"message": "Пароль изменён"}
    assert "access_token=" in response.headers["Set-Cookie"]  # this session re-issued under the new epoch
    assert mine.get("/api/auth/me").status_code == 200
    others.assert_both_ended()
    assert login(app.test_client(), user, password=NEW_PASSWORD).status_code == 200


def test_own_password_change_by_bearer_returns_the_renewed_token(app, make_user):
    user = make_user("director")
    token = login(app.test_client(), user).json["access_token"]
    response = app.test_client().post("/api/auth/password", headers=bearer(token),
                                      json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 200, response.json
    renewed = response.headers["X-Access-Token"]
    assert app.test_client().get("/api/auth/me", headers=bearer(renewed)).status_code == 200
    assert app.test_client().get("/api/auth/me", headers=bearer(token)).status_code == 401


def test_admin_changing_own_password_through_the_users_page_keeps_the_session(app, make_user):
    admin = make_user("admin")
    mine = app.test_client()
    login(mine, admin)
    others = Sessions(app, admin)
    response = mine.put(f"/api/users/administrators/{admin.id}", json={"password": NEW_PASSWORD}, headers=SPA)
    assert response.status_code == 200, response.json
    assert mine.get("/api/auth/me").status_code == 200
    others.assert_both_ended()


@pytest.mark.parametrize("body, status, field", [
    ({"current_password": "not-my-password", "new_password": NEW_PASSWORD}, 403, "current_password"),
    ({"current_password": TEST_PASSWORD, "new_password": "short1"}, 422, "new_password"),
    ({"current_password": TEST_PASSWORD, "new_password": "password2026"}, 422, "new_password"),
    ({"current_password": TEST_PASSWORD, "new_password": TEST_PASSWORD}, 422, "new_password"),
    ({"new_password": NEW_PASSWORD}, 422, "current_password"),
])
def test_own_password_change_refused(app, make_user, body, status, field):
    user = make_user("manager")
    mine = app.test_client()
    login(mine, user)
    others = Sessions(app, user)
    response = mine.post("/api/auth/password", json=body, headers=SPA)
    assert response.status_code == status, response.json
    assert field in response.json["errors"]
    assert any("а" <= ch <= "я" for ch in response.json["detail"].lower())
    # Nothing changed: every session goes on, the old password still signs in.
    assert mine.get("/api/auth/me").status_code == 200
    assert others.both_alive()
    assert login(app.test_client(), user).status_code == 200


def test_own_password_change_needs_a_session(client):
    response = client.post("/api/auth/password", headers=SPA,
                           json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 401


def test_rehash_on_sign_in_is_not_a_new_password(app, make_user, db):
    """A hash made with older parameters is upgraded when the user signs in; the other sessions go on."""
    user = make_user("manager")
    weak_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(TEST_PASSWORD)
    db.execute(update(User).where(User.id == user.id).values(password_hash=weak_hash))
    db.commit()
    first = Sessions(app, user)  # its sign-ins upgrade the hash
    db.execute(update(User).where(User.id == user.id).values(password_hash=weak_hash))
    db.commit()
    login(app.test_client(), user)  # upgrades it again
    assert db.scalar(select(User.password_hash).where(User.id == user.id)) != weak_hash
    assert first.both_alive()
