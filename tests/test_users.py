"""Masters, employees and administrators over the one users table, on the real PostgreSQL."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from models import Session
from models.directories.tables import Role
from models.people.passwords import hash_password
from models.people.tables import User
from models.requests.tables import Request
from tests.factories import TEST_PASSWORD, make_request
from tests.support import SPA, login

MASTER_FIELDS = {
    "id", "full_name", "name", "phone_number", "login", "status", "city_id", "city", "birth_date",
    "passport", "chat_id", "notes", "created_at", "updated_at", "role", "role_id",
}
STAFF_FIELDS = {
    "id", "name", "full_name", "role_id", "role", "status", "city_id", "city", "login", "phone_number",
    "notes", "mango_extension", "created_at", "updated_at",
}
CYRILLIC = re.compile("[а-яА-ЯёЁ]")


class Caller:
    """A signed-in SPA session (cookie + allowed Origin); every answer is checked for secrets."""

    def __init__(self, app, user, password=TEST_PASSWORD):
        self.user = user
        self.client = app.test_client()
        login(self.client, user, password=password)

    def _call(self, method, path, **kwargs):
        response = getattr(self.client, method)(path, headers=SPA, **kwargs)
        assert_no_secrets(response)
        return response

    def get(self, path, **kwargs):
        return self._call("get", path, **kwargs)

    def post(self, path, **kwargs):
        return self._call("post", path, **kwargs)

    def put(self, path, **kwargs):
        return self._call("put", path, **kwargs)

    def delete(self, path, **kwargs):
        return self._call("delete", path, **kwargs)


def assert_no_secrets(response):
    text = response.get_data(as_text=True)
    assert "password_hash" not in text
    assert "$argon2" not in text
    if response.status_code < 400:
        assert "password" not in text


def assert_error(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert CYRILLIC.search(body["detail"]), body
    if code:
        assert body["code"] == code, body
    return body


@pytest.fixture()
def as_user(app, db):
    return lambda user, password=TEST_PASSWORD: Caller(app, user, password)


@pytest.fixture()
def admin(make_user):
    return make_user("admin", full_name="Главный Админ")


def master_body(city_id, login="master_new", **overrides):
    """Exactly what MasterCreatePage sends (docs/spa-contract.md, body F)."""
    body = {
        "city_id": city_id,
        "full_name": "Иван Мастеров",
        "phone_number": "+7 (912) 345-67-89",
        "login": login,
        "password": "Sekret-Pine-71",
        "birth_date": "",
        "passport": "",
        "chat_id": "",
        "notes": "",
        "status": "active",
    }
    body.update(overrides)
    return body


def make_master(make_user, city, **kwargs):
    return make_user("master", city_id=city.id if city else None, **kwargs)


def role_id(name):
    return Session.scalar(select(Role.id).where(Role.name == name))


def ids(response):
    return [row["id"] for row in response.json]


# ---- masters: create ------------------------------------------------------------------------------

def test_create_master_with_the_spa_body(as_user, admin, make_city):
    city = make_city("Самара")
    caller = as_user(admin)
    response = caller.post("/api/users/masters/", json=master_body(city.id, status="busy"))
    assert response.status_code == 201, response.json
    master = response.json
    assert set(master) == MASTER_FIELDS
    assert master["full_name"] == master["name"] == "Иван Мастеров"
    assert master["phone_number"] == "+7 (912) 345-67-89"
    assert master["login"] == "master_new"
    assert master["status"] == "busy"
    assert master["city_id"] == city.id and master["city"] == {"id": city.id, "name": "Самара"}
    assert master["birth_date"] is None and master["passport"] is None
    assert master["chat_id"] is None and master["notes"] is None
    assert master["role"] == "master"
    row = Session.get(User, master["id"])
    assert row.phone == "79123456789" and row.role_name == "master"

    detail = caller.get(f"/api/users/masters/{master['id']}")
    assert detail.status_code == 200 and detail.json == master
    listed = caller.get("/api/users/masters/")
    assert listed.status_code == 200
    assert [m for m in listed.json if m["id"] == master["id"]] == [master]


def test_create_master_full_body_and_default_status(as_user, make_user, make_city):
    city = make_city()
    body = master_body(city.id, birth_date="1990-05-01", passport="3600 123456", chat_id="123456789",
                       notes="Холодильники")
    del body["status"]
    response = as_user(make_user("manager")).post("/api/users/masters", json=body)
    assert response.status_code == 201, response.json
    master = response.json
    assert master["birth_date"] == "1990-05-01"
    assert master["passport"] == "3600 123456"
    assert master["chat_id"] == "123456789"
    assert master["notes"] == "Холодильники"
    assert master["status"] == "active"


def test_new_master_can_sign_in(app, as_user, admin, make_city):
    city = make_city()
    assert as_user(admin).post("/api/users/masters", json=master_body(city.id, login="Novikov")).status_code == 201
    response = app.test_client().post("/api/auth/login", json={"login": "novikov", "password": "Sekret-Pine-71"})
    assert response.status_code == 200
    assert response.json["role"] == "master" and response.json["city_id"] == city.id


def test_director_creates_masters_only_in_own_city(as_user, make_user, make_city):
    home, other = make_city(), make_city()
    director = as_user(make_user("director", city_id=home.id))
    assert director.post("/api/users/masters", json=master_body(home.id, login="m_home")).status_code == 201
    assert_error(director.post("/api/users/masters", json=master_body(other.id, login="m_other")), 403, "other_city")
    everywhere = as_user(make_user("director", city_id=None))
    assert everywhere.post("/api/users/masters", json=master_body(other.id, login="m_other")).status_code == 201


@pytest.mark.parametrize("role", ["callcentr", "avitolog", "master"])
def test_other_roles_cannot_create_masters(as_user, make_user, make_city, role):
    city = make_city()
    caller = as_user(make_user(role, city_id=city.id if role == "master" else None))
    assert_error(caller.post("/api/users/masters", json=master_body(city.id)), 403, "forbidden")


def test_create_master_requires_sign_in(client, make_city, db):
    city = make_city()
    response = client.post("/api/users/masters", json=master_body(city.id), headers=SPA)
    assert_error(response, 401, "not_authenticated")


# ---- masters: read and scope ----------------------------------------------------------------------

@pytest.fixture()
def two_cities(make_user, make_city):
    city_a, city_b = make_city("Город А"), make_city("Город Б")
    master_a = make_master(make_user, city_a, full_name="Мастер А", login="master_a")
    master_b = make_master(make_user, city_b, full_name="Мастер Б", login="master_b")
    for master, passport in ((master_a, "1111 111111"), (master_b, "2222 222222")):
        Session.get(User, master.id).passport = passport
    Session.commit()
    return city_a, city_b, master_a, master_b


def test_masters_list_scope(as_user, make_user, two_cities):
    city_a, city_b, master_a, master_b = two_cities
    both = {master_a.id, master_b.id}
    assert set(ids(as_user(make_user("director", city_id=city_a.id)).get("/api/users/masters"))) == {master_a.id}
    assert set(ids(as_user(make_user("director")).get("/api/users/masters"))) >= both
    assert ids(as_user(master_a).get("/api/users/masters")) == [master_a.id]
    for role in ("manager", "callcentr", "avitolog", "admin"):
        listed = as_user(make_user(role)).get("/api/users/masters")
        assert listed.status_code == 200
        assert set(ids(listed)) >= both
        for master in listed.json:
            assert set(master) == MASTER_FIELDS
            for name in ("full_name", "phone_number", "login"):
                assert isinstance(master[name], str)


def test_passport_shown_only_to_those_who_manage_masters(as_user, make_user, two_cities):
    _, _, master_a, _ = two_cities

    def passport(role):
        rows = as_user(make_user(role)).get("/api/users/masters").json
        return next(m["passport"] for m in rows if m["id"] == master_a.id)

    assert passport("manager") == "1111 111111"
    assert passport("director") == "1111 111111"
    assert passport("callcentr") is None
    assert passport("avitolog") is None


def test_master_detail_scope(as_user, make_user, two_cities):
    city_a, _, master_a, master_b = two_cities
    director_a = as_user(make_user("director", city_id=city_a.id))
    assert director_a.get(f"/api/users/masters/{master_a.id}").status_code == 200
    assert_error(director_a.get(f"/api/users/masters/{master_b.id}"), 404, "not_found")
    as_master = as_user(master_a)
    own = as_master.get(f"/api/users/masters/{master_a.id}")
    assert own.status_code == 200 and own.json["passport"] == "1111 111111"
    assert_error(as_master.get(f"/api/users/masters/{master_b.id}"), 404, "not_found")
    assert as_user(make_user("manager")).get(f"/api/users/masters/{master_b.id}").status_code == 200
    assert as_user(make_user("director")).get(f"/api/users/masters/{master_b.id}").status_code == 200
    assert_error(as_user(make_user("callcentr")).get(f"/api/users/masters/{master_a.id}"), 403, "forbidden")


def test_master_detail_of_other_kinds_is_404(as_user, admin, make_user):
    employee = make_user("manager")
    caller = as_user(admin)
    assert_error(caller.get(f"/api/users/masters/{employee.id}"), 404, "not_found")
    assert_error(caller.get(f"/api/users/masters/{admin.id}"), 404, "not_found")
    assert_error(caller.get("/api/users/masters/999999999"), 404, "not_found")
    assert_error(caller.get("/api/users/masters/99999999999999"), 404, "not_found")


def test_requests_masters_is_the_same_list_and_needs_sign_in(app, as_user, make_user, two_cities):
    city_a, _, master_a, _ = two_cities
    assert_error(app.test_client().get("/api/requests/masters/"), 401, "not_authenticated")
    director = as_user(make_user("director", city_id=city_a.id))
    old_path = director.get("/api/requests/masters/")
    assert old_path.status_code == 200
    assert old_path.json == director.get("/api/users/masters/").json
    assert ids(old_path) == [master_a.id]
    assert director.post("/api/requests/masters", json={}).status_code == 405


def test_masters_list_filters_order_and_pages(as_user, admin, make_user, make_city):
    city_a, city_b = make_city(), make_city()
    first = make_master(make_user, city_a, full_name="Сергей Первый", login="serg1")
    second = make_master(make_user, city_b, full_name="Павел Второй", login="pavel2", status="inactive")
    third = make_master(make_user, city_a, full_name="Олег Третий", login="oleg3")
    Session.get(User, third.id).phone = "79991234567"
    Session.get(User, third.id).phone_number = "8 (999) 123-45-67"
    Session.commit()
    caller = as_user(admin)

    everyone = caller.get("/api/users/masters")
    assert "X-Pagination" not in everyone.headers
    assert ids(everyone)[:3] == [third.id, second.id, first.id]  # newest first
    assert set(ids(caller.get(f"/api/users/masters?city_id={city_a.id}"))) == {first.id, third.id}
    assert ids(caller.get("/api/users/masters?status=inactive")) == [second.id]
    assert ids(caller.get("/api/users/masters?search=павел")) == [second.id]
    assert ids(caller.get("/api/users/masters?search=OLEG")) == [third.id]
    assert ids(caller.get("/api/users/masters?search=8999123")) == [third.id]
    assert ids(caller.get("/api/users/masters?search=%25")) == []
    assert len(caller.get("/api/users/masters?search=").json) == len(everyone.json)
    assert_error(caller.get("/api/users/masters?status=unknown"), 422, "validation_error")

    page = caller.get("/api/users/masters?page=2&page_size=1")
    assert page.status_code == 200 and ids(page) == [second.id]
    pagination = json.loads(page.headers["X-Pagination"])
    assert pagination["total"] == len(everyone.json) and pagination["page"] == 2


# ---- masters: update ----------------------------------------------------------------------------

def test_update_master_with_the_spa_body(as_user, make_user, make_city):
    city, other_city = make_city(), make_city()
    master = make_master(make_user, city, full_name="Старое Имя")
    body = {
        "full_name": "Новое Имя",
        "phone_number": "8 912 000-11-22",
        "birth_date": "1985-12-31",
        "passport": "4000 000000",
        "status": "busy",
        "chat_id": "777",
        "city_id": other_city.id,
        "notes": "Только выходные",
    }
    caller = as_user(make_user("manager"))
    response = caller.put(f"/api/users/masters/{master.id}", json=body)
    assert response.status_code == 200, response.json
    updated = response.json
    assert set(updated) == MASTER_FIELDS
    for name, value in body.items():
        assert updated[name] == value
    assert updated["city"]["id"] == other_city.id
    assert Session.get(User, master.id).phone == "79120001122"

    # Partial: only the keys sent change; '' clears an optional field.
    response = caller.put(f"/api/users/masters/{master.id}/", json={"notes": "", "birth_date": ""})
    assert response.status_code == 200
    assert response.json["notes"] is None and response.json["birth_date"] is None
    assert response.json["full_name"] == "Новое Имя" and response.json["passport"] == "4000 000000"


def test_master_password_change_lets_them_sign_in(app, as_user, admin, make_user, make_city):
    master = make_master(make_user, make_city())
    response = as_user(admin).put(f"/api/users/masters/{master.id}", json={"password": "new-secret"})
    assert response.status_code == 200
    client = app.test_client()
    assert client.post("/api/auth/login", json={"login": master.login, "password": TEST_PASSWORD}).status_code == 401
    assert client.post("/api/auth/login", json={"login": master.login, "password": "new-secret"}).status_code == 200


def test_director_cannot_move_master_to_another_city(as_user, make_user, two_cities):
    city_a, city_b, master_a, master_b = two_cities
    director = as_user(make_user("director", city_id=city_a.id))
    assert_error(director.put(f"/api/users/masters/{master_a.id}", json={"city_id": city_b.id}), 403, "other_city")
    assert_error(director.put(f"/api/users/masters/{master_b.id}", json={"notes": "x"}), 404, "not_found")
    ok = director.put(f"/api/users/masters/{master_a.id}", json={"city_id": city_a.id, "notes": "свой"})
    assert ok.status_code == 200 and ok.json["notes"] == "свой"
    assert Session.get(User, master_a.id).city_id == city_a.id


def test_masters_cannot_edit_masters(as_user, two_cities):
    _, _, master_a, master_b = two_cities
    caller = as_user(master_a)
    assert_error(caller.put(f"/api/users/masters/{master_a.id}", json={"notes": "я"}), 403, "forbidden")
    assert_error(caller.put(f"/api/users/masters/{master_b.id}", json={"notes": "он"}), 403, "forbidden")


def test_callcentr_lists_masters_but_cannot_change_them(as_user, make_user, two_cities):
    _, _, master_a, _ = two_cities
    caller = as_user(make_user("callcentr"))
    assert caller.get("/api/users/masters").status_code == 200
    assert_error(caller.put(f"/api/users/masters/{master_a.id}", json={"notes": "x"}), 403, "forbidden")
    assert_error(caller.delete(f"/api/users/masters/{master_a.id}"), 403, "forbidden")


# ---- logins -------------------------------------------------------------------------------------

def test_login_is_unique_across_all_roles_whatever_the_case(as_user, admin, make_user, make_city):
    city = make_city()
    make_user("callcentr", login="Petrov")
    caller = as_user(admin)
    body = assert_error(caller.post("/api/users/masters", json=master_body(city.id, login="petrov")), 409,
                        "login_taken")
    assert body["detail"] == "Логин уже занят"
    employee = {"role_id": role_id("manager"), "name": "Петров 2", "login": "PETROV", "password": "Sekret-Pine-71"}
    assert_error(caller.post("/api/users/employees", json=employee), 409, "login_taken")
    administrator = {"name": "Петров 3", "login": "pEtRoV", "password": "long-secret"}
    assert_error(caller.post("/api/users/administrators", json=administrator), 409, "login_taken")
    assert_error(caller.post("/api/users/administrators", json={**administrator, "login": admin.login.upper()}),
                 409, "login_taken")

    master = make_master(make_user, city, login="sidorov")
    assert_error(caller.put(f"/api/users/masters/{master.id}", json={"login": "PETROV"}), 409, "login_taken")
    renamed = caller.put(f"/api/users/masters/{master.id}", json={"login": "Sidorov"})  # own login, new case
    assert renamed.status_code == 200 and renamed.json["login"] == "Sidorov"


# ---- masters: delete ----------------------------------------------------------------------------

def test_master_with_open_requests_cannot_be_deleted(as_user, admin, make_user, make_city):
    city = make_city()
    master = make_master(make_user, city)
    for status in ("В работе", "Ожидает", "Готово"):
        make_request(city.id, master_id=master.id, status=status)
    body = assert_error(as_user(admin).delete(f"/api/users/masters/{master.id}"), 409, "master_has_open_requests")
    assert "2 заявки" in body["detail"]
    assert Session.get(User, master.id) is not None


def test_master_with_only_final_requests_is_deleted(as_user, admin, make_user, make_city):
    city = make_city()
    master = make_master(make_user, city)
    finished = [make_request(city.id, master_id=master.id, status=status).id
                for status in ("Готово", "Отказ", "НеЗаказ")]
    response = as_user(admin).delete(f"/api/users/masters/{master.id}/")
    assert response.status_code == 200, response.json
    assert response.json == {"message": "Мастер удалён"}
    Session.expire_all()
    assert Session.get(User, master.id) is None
    for request_id in finished:
        assert Session.get(Request, request_id).master_id is None


@pytest.mark.parametrize("role", ["manager", "director"])
def test_only_admin_deletes_masters(as_user, make_user, make_city, role):
    city = make_city()
    master = make_master(make_user, city)
    caller = as_user(make_user(role, city_id=city.id if role == "director" else None))
    assert_error(caller.delete(f"/api/users/masters/{master.id}"), 403, "forbidden")
    assert Session.get(User, master.id) is not None


def test_delete_through_the_wrong_endpoint_is_404(as_user, admin, make_user, make_city):
    """UsersPage sends ids from the masters list to the employees and administrators endpoints."""
    master = make_master(make_user, make_city())
    employee = make_user("callcentr")
    other_admin = make_user("admin")
    caller = as_user(admin)
    assert_error(caller.delete(f"/api/users/employees/{master.id}/"), 404, "not_found")
    assert_error(caller.delete(f"/api/users/administrators/{master.id}/"), 404, "not_found")
    assert_error(caller.delete(f"/api/users/masters/{employee.id}"), 404, "not_found")
    assert_error(caller.delete(f"/api/users/administrators/{employee.id}"), 404, "not_found")
    assert_error(caller.delete(f"/api/users/masters/{other_admin.id}"), 404, "not_found")
    assert_error(caller.delete(f"/api/users/employees/{other_admin.id}"), 404, "not_found")
    assert_error(caller.delete("/api/users/employees/99999999999"), 404, "not_found")
    for user in (master, employee, other_admin):
        assert Session.get(User, user.id) is not None


# ---- employees ----------------------------------------------------------------------------------

def employee_body(role, city_id=None, login="employee_new", **overrides):
    """What EmployeeCreatePage sends (docs/spa-contract.md, body H)."""
    body = {
        "city_id": city_id,
        "role_id": role_id(role),
        "name": "Анна Офисная",
        "status": "pending",
        "login": login,
        "password": "Sekret-Pine-71",
        "notes": "",
    }
    body.update(overrides)
    return body


def test_create_employee_with_the_spa_body(as_user, make_user, make_city):
    city = make_city("Казань")
    caller = as_user(make_user("manager"))
    response = caller.post("/api/users/employees/", json=employee_body("director", city.id))
    assert response.status_code == 201, response.json
    employee = response.json
    assert set(employee) == STAFF_FIELDS
    assert employee["name"] == employee["full_name"] == "Анна Офисная"
    assert employee["role_id"] == role_id("director")
    assert employee["role"] == {"id": role_id("director"), "name": "director"}
    assert employee["status"] == "pending"
    assert employee["city_id"] == city.id and employee["city"] == {"id": city.id, "name": "Казань"}
    assert employee["login"] == "employee_new" and employee["notes"] is None
    assert caller.get(f"/api/users/employees/{employee['id']}").json == employee


def test_director_without_city_sees_every_city(as_user, admin, make_city, make_user):
    city_a, city_b = make_city(), make_city()
    master_a, master_b = make_master(make_user, city_a), make_master(make_user, city_b)
    body = employee_body("director", 0, login="dir_all", status="active")
    response = as_user(admin).post("/api/users/employees", json=body)
    assert response.status_code == 201 and response.json["city_id"] is None and response.json["city"] is None
    director = Session.get(User, response.json["id"])
    listed = as_user(director, "Sekret-Pine-71").get("/api/users/masters")
    assert {master_a.id, master_b.id} <= set(ids(listed))


@pytest.mark.parametrize("role", ["admin", "master"])
def test_employee_cannot_be_given_admin_or_master_role(as_user, make_user, role):
    caller = as_user(make_user("manager"))
    body = assert_error(caller.post("/api/users/employees", json=employee_body(role)), 422, "invalid_role")
    assert "role_id" in body["errors"]
    employee = make_user("callcentr")
    assert_error(caller.put(f"/api/users/employees/{employee.id}", json={"role_id": role_id(role)}), 422,
                 "invalid_role")
    assert Session.get(User, employee.id).role_name == "callcentr"


def test_employees_list_has_only_employees(as_user, admin, make_user, make_city):
    city = make_city()
    director = make_user("director", city_id=city.id, full_name="Директор Казани")
    operator = make_user("callcentr", status="inactive")
    master = make_master(make_user, city)
    caller = as_user(admin)
    listed = caller.get("/api/users/employees")
    assert listed.status_code == 200
    found = set(ids(listed))
    assert {director.id, operator.id} <= found
    assert master.id not in found and admin.id not in found
    for row in listed.json:
        assert set(row) == STAFF_FIELDS and row["role"]["name"] in ("director", "manager", "callcentr", "avitolog")
    assert ids(caller.get(f"/api/users/employees?role_id={role_id('callcentr')}&status=inactive")) == [operator.id]
    assert ids(caller.get("/api/users/employees?search=казани")) == [director.id]


def test_update_employee(app, as_user, make_user, make_city):
    city = make_city()
    employee = make_user("callcentr", full_name="Старое")
    caller = as_user(make_user("manager"))
    response = caller.put(
        f"/api/users/employees/{employee.id}",
        json={"full_name": "Новое", "role_id": role_id("director"), "city_id": city.id, "status": "active",
              "password": "Changed-Fern-38"},
    )
    assert response.status_code == 200, response.json
    assert response.json["name"] == response.json["full_name"] == "Новое"
    assert response.json["role"]["name"] == "director" and response.json["city_id"] == city.id
    signed_in = app.test_client().post("/api/auth/login", json={"login": employee.login, "password": "Changed-Fern-38"})
    assert signed_in.status_code == 200 and signed_in.json["role"] == "director"

    partial = caller.put(f"/api/users/employees/{employee.id}", json={"notes": "ночные смены"})
    assert partial.json["notes"] == "ночные смены" and partial.json["name"] == "Новое"
    assert partial.json["role"]["name"] == "director"


def test_employee_endpoints_roles(as_user, make_user):
    employee = make_user("avitolog")
    manager = as_user(make_user("manager"))
    assert manager.get("/api/users/employees").status_code == 200
    assert manager.get(f"/api/users/employees/{employee.id}").status_code == 200
    assert_error(manager.delete(f"/api/users/employees/{employee.id}"), 403, "forbidden")
    for role in ("director", "callcentr", "avitolog", "master"):
        caller = as_user(make_user(role))
        assert_error(caller.get("/api/users/employees"), 403, "forbidden")
        assert_error(caller.get(f"/api/users/employees/{employee.id}"), 403, "forbidden")
        assert_error(caller.post("/api/users/employees", json=employee_body("callcentr")), 403, "forbidden")
        assert_error(caller.put(f"/api/users/employees/{employee.id}", json={"notes": "x"}), 403, "forbidden")


def test_admin_deletes_employee_but_not_self(as_user, admin, make_user):
    employee = make_user("director")
    caller = as_user(admin)
    response = caller.delete(f"/api/users/employees/{employee.id}")
    assert response.status_code == 200 and response.json == {"message": "Сотрудник удалён"}
    assert Session.get(User, employee.id) is None
    assert_error(caller.delete(f"/api/users/employees/{employee.id}"), 404, "not_found")
    assert_error(caller.delete(f"/api/users/employees/{admin.id}"), 409, "cannot_delete_self")


def test_manager_cannot_reach_administrators(as_user, admin, make_user):
    manager = as_user(make_user("manager"))
    assert_error(manager.get(f"/api/users/employees/{admin.id}"), 404, "not_found")
    assert_error(manager.put(f"/api/users/employees/{admin.id}", json={"status": "inactive"}), 404, "not_found")
    assert_error(manager.get("/api/users/administrators"), 403, "forbidden")
    assert_error(manager.post("/api/users/administrators", json={"name": "Я", "login": "boss", "password": "x" * 8}),
                 403, "forbidden")
    assert Session.get(User, admin.id).status == "active"


# ---- administrators -----------------------------------------------------------------------------

def test_create_and_read_administrator(app, as_user, admin):
    caller = as_user(admin)
    body = {"name": "Второй Админ", "role_id": role_id("admin"), "login": "admin2", "password": "long-secret",
            "notes": ""}
    response = caller.post("/api/users/administrators/", json=body)
    assert response.status_code == 201, response.json
    created = response.json
    assert set(created) == STAFF_FIELDS
    assert created["role"] == {"id": role_id("admin"), "name": "admin"} and created["status"] == "active"
    assert created["city_id"] is None
    assert caller.get(f"/api/users/administrators/{created['id']}").json == created
    assert created["id"] in ids(caller.get("/api/users/administrators"))
    assert app.test_client().post("/api/auth/login", json={"login": "admin2", "password": "long-secret"}).json[
        "role"] == "admin"

    without_role = caller.post("/api/users/administrators", json={"name": "Третий", "login": "admin3",
                                                                  "password": "long-secret"})
    assert without_role.status_code == 201 and without_role.json["role"]["name"] == "admin"


def test_administrator_validation(as_user, admin):
    caller = as_user(admin)
    short = caller.post("/api/users/administrators", json={"name": "А", "login": "a1", "password": "1234567"})
    assert "password" in assert_error(short, 422, "validation_error")["errors"]
    wrong_role = {"name": "А", "login": "a1", "password": "Sekret-Pine-71", "role_id": role_id("director")}
    assert_error(caller.post("/api/users/administrators", json=wrong_role), 422, "invalid_role")
    missing = assert_error(caller.post("/api/users/administrators", json={}), 422, "validation_error")
    assert {"name", "login", "password"} <= set(missing["errors"])


def test_administrator_delete_rules(as_user, admin, make_user):
    other = make_user("admin")
    caller = as_user(admin)
    assert_error(caller.delete(f"/api/users/administrators/{admin.id}"), 409, "cannot_delete_self")
    response = caller.delete(f"/api/users/administrators/{other.id}")
    assert response.status_code == 200 and response.json == {"message": "Администратор удалён"}
    assert Session.get(User, other.id) is None


def test_last_active_admin_is_kept_on_delete(app, db, make_user):
    """Only reachable when two admins remove each other at once; the guard itself is checked."""
    from api.errors import ApiError
    from api.users.routes import ensure_another_active_admin

    for user in Session.scalars(select(User).join(Role).where(Role.name == "admin")):
        user.status = "inactive"
    Session.commit()
    last = make_user("admin")
    make_user("admin", status="suspended")
    with app.app_context():
        with pytest.raises(ApiError) as refused:
            ensure_another_active_admin(Session.get(User, last.id), "Нельзя удалить последнего администратора")
        assert refused.value.code == 409 and refused.value.error_code == "last_admin"
        make_user("admin")
        ensure_another_active_admin(Session.get(User, last.id), "ok")  # another active admin now exists


def test_last_active_admin_cannot_be_deactivated_or_demoted(as_user, db, make_user):
    for user in Session.scalars(select(User).join(Role).where(Role.name == "admin")):
        user.status = "inactive"
    Session.commit()
    only = make_user("admin")
    caller = as_user(only)
    for change in ({"status": "inactive"}, {"status": "suspended"}, {"role_id": role_id("manager")}):
        body = assert_error(caller.put(f"/api/users/administrators/{only.id}", json=change), 409, "last_admin")
        assert "последнего" in body["detail"]
    assert Session.get(User, only.id).status == "active"
    assert caller.put(f"/api/users/administrators/{only.id}", json={"notes": "я"}).status_code == 200

    second = make_user("admin")
    demoted = caller.put(f"/api/users/administrators/{second.id}", json={"role_id": role_id("manager")})
    assert demoted.status_code == 200 and demoted.json["role"]["name"] == "manager"
    assert second.id in ids(caller.get("/api/users/employees"))
    assert_error(caller.get(f"/api/users/administrators/{second.id}"), 404, "not_found")


def test_administrator_password_change(app, as_user, admin, make_user):
    other = make_user("admin")
    caller = as_user(admin)
    assert_error(caller.put(f"/api/users/administrators/{other.id}", json={"password": "short"}), 422,
                 "validation_error")
    assert caller.put(f"/api/users/administrators/{other.id}", json={"password": "brand-new-pass"}).status_code == 200
    response = app.test_client().post("/api/auth/login", json={"login": other.login, "password": "brand-new-pass"})
    assert response.status_code == 200


@pytest.mark.parametrize("password, reason", [
    ("Kx9!mv2L", "не менее 10 символов"),  # 8: accepted before the policy
    ("password2026", "распространён"),
    ("Qwerty123456", "распространён"),
    ("iloveyou1234", "распространён"),
    ("1234567890", "слишком простой"),
    ("zzzzzzzzzzzz", "слишком простой"),
])
@pytest.mark.parametrize("path", ["masters", "employees", "administrators"])
def test_weak_passwords_refused_with_the_reason(as_user, admin, make_user, make_city, path, password, reason):
    target = make_user({"masters": "master", "employees": "manager", "administrators": "admin"}[path],
                       city_id=make_city().id if path == "masters" else None)
    response = as_user(admin).put(f"/api/users/{path}/{target.id}", json={"password": password})
    body = assert_error(response, 422, "validation_error")
    assert reason in body["errors"]["password"][0] and reason in body["detail"]


def test_a_password_set_before_the_policy_keeps_working(app, db, make_user):
    """Existing shorter passwords sign in until they are changed."""
    user = make_user("callcentr")
    user.password_hash = hash_password("abc123")
    db.commit()
    response = app.test_client().post("/api/auth/login", json={"login": user.login, "password": "abc123"})
    assert response.status_code == 200


# ---- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "change, field",
    [
        ({"status": "vacation"}, "status"),
        ({"status": "pending"}, "status"),
        ({"full_name": "Я" * 201}, "full_name"),
        ({"full_name": "   "}, "full_name"),
        ({"phone_number": "не телефон"}, "phone_number"),
        ({"login": "two words"}, "login"),
        ({"login": "л" * 101}, "login"),
        ({"password": "12345"}, "password"),
        ({"birth_date": "31.12.1990"}, "birth_date"),
        ({"birth_date": "1800-01-01"}, "birth_date"),
        ({"passport": "9" * 41}, "passport"),
        ({"notes": "x" * 5001}, "notes"),
        ({"city_id": 0}, "city_id"),
        ({"city_id": "abc"}, "city_id"),
        ({"city_id": 99999999999}, "city_id"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_master_create_validation(as_user, admin, make_city, change, field):
    city = make_city()
    payload = {**master_body(city.id), **change}
    body = assert_error(as_user(admin).post("/api/users/masters", json=payload), 422, "validation_error")
    assert field in body["errors"]
    for message in body["errors"][field]:
        assert CYRILLIC.search(message), body


@pytest.mark.parametrize("field", ["full_name", "phone_number", "notes", "passport", "password"])
@pytest.mark.parametrize("bad", ["\x00", "\ud800"])
def test_unstorable_characters_are_refused(as_user, admin, make_city, field, bad):
    city = make_city()
    payload = {**master_body(city.id), field: "+7 912 345 67 89" + bad}
    caller = as_user(admin)
    response = caller.client.post("/api/users/masters", data=json.dumps(payload), content_type="application/json",
                                  headers=SPA)
    body = assert_error(response, 422, "validation_error")
    assert body["errors"] == {field: ["Недопустимый символ в тексте"]}


def test_master_create_missing_fields(as_user, admin):
    body = assert_error(as_user(admin).post("/api/users/masters", json={}), 422, "validation_error")
    assert set(body["errors"]) == {"city_id", "full_name", "phone_number", "login", "password"}
    assert body["errors"]["login"] == ["Обязательное поле"]


def test_master_create_unknown_city(as_user, admin):
    body = assert_error(as_user(admin).post("/api/users/masters", json=master_body(987654)), 422, "unknown_city")
    assert body["detail"] == "Город не найден"


def test_non_object_bodies(as_user, admin, make_city):
    caller = as_user(admin)
    assert_error(caller.post("/api/users/masters", json=[1, 2]), 422, "validation_error")
    assert_error(caller.post("/api/users/employees", json="text"), 422, "validation_error")
    response = caller.client.post("/api/users/masters", data="{oops", content_type="application/json", headers=SPA)
    assert response.status_code == 400


def test_master_update_validation(as_user, admin, make_user, make_city):
    master = make_master(make_user, make_city())
    caller = as_user(admin)
    url = f"/api/users/masters/{master.id}"
    assert "city_id" in assert_error(caller.put(url, json={"city_id": 0}), 422)["errors"]
    assert "full_name" in assert_error(caller.put(url, json={"full_name": ""}), 422)["errors"]
    assert "full_name" in assert_error(caller.put(url, json={"full_name": None}), 422)["errors"]
    assert "status" in assert_error(caller.put(url, json={"status": "deleted"}), 422)["errors"]
    assert_error(caller.put(url, json={"city_id": 424242}), 422, "unknown_city")
    assert_error(caller.put("/api/users/masters/424242", json={"notes": "x"}), 404, "not_found")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"status": "busy"}, "status"),
        ({"role_id": None}, "role_id"),
        ({"role_id": "x"}, "role_id"),
        ({"name": ""}, "name"),
        ({"password": "123"}, "password"),
        ({"notes": "x" * 5001}, "notes"),
        ({"name": "А", "full_name": "Б"}, "full_name"),
    ],
)
def test_employee_create_validation(as_user, make_user, change, field):
    payload = {**employee_body("callcentr"), **change}
    response = as_user(make_user("manager")).post("/api/users/employees", json=payload)
    body = assert_error(response, 422, "validation_error")
    assert field in body["errors"]


def test_employee_unknown_role_and_city(as_user, make_user):
    caller = as_user(make_user("manager"))
    assert_error(caller.post("/api/users/employees", json=employee_body("callcentr", role_id=424242)), 422,
                 "invalid_role")
    assert_error(caller.post("/api/users/employees", json=employee_body("callcentr", city_id=424242)), 422,
                 "unknown_city")


# ---- nothing secret anywhere --------------------------------------------------------------------

def test_no_endpoint_returns_secrets(as_user, admin, make_user, make_city):
    city = make_city()
    master = make_master(make_user, city)
    employee = make_user("director", city_id=city.id)
    caller = as_user(admin)  # every call goes through assert_no_secrets
    paths = [
        "/api/users/masters", f"/api/users/masters/{master.id}", "/api/requests/masters",
        "/api/users/employees", f"/api/users/employees/{employee.id}",
        "/api/users/administrators", f"/api/users/administrators/{admin.id}",
        "/api/users/masters?page=1&page_size=5", "/api/users/employees?page=1",
    ]
    for path in paths:
        assert caller.get(path).status_code == 200
    assert caller.put(f"/api/users/masters/{master.id}", json={"password": "Another-Fern-39"}).status_code == 200
    assert caller.put(f"/api/users/employees/{employee.id}", json={"password": "Another-Fern-39"}).status_code == 200
    assert caller.put(f"/api/users/administrators/{admin.id}", json={"notes": "n"}).status_code == 200
