"""The SPA's contract (docs/spa-contract.md, whose numbers of the calls name the tests): every reachable
call, replayed with the bodies the SPA really sends (quirks included), asserting every field the SPA
reads — as a browser session with the cookie, from the SPA's origin, with the SPA's trailing slashes.

Uploads and secure files (calls 12–14, 26, 44–45) belong to the file pipeline and are tested there.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from models.directories.tables import RequestType, Role, TransactionType
from tests.factories import TEST_PASSWORD
from tests.support import SPA


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.fixture()
def spa(client, make_user, make_city, db):
    """A director's browser after login, with a city, a master, a campaign and a direction."""
    city = make_city("Москва")
    admin = make_user("admin", login="spa_admin")
    response = client.post("/api/auth/login", json={"login": "spa_admin", "password": TEST_PASSWORD})
    assert response.status_code == 200
    return {"client": client, "city": city, "admin": admin, "db": db}


def test_1_3_login_me_logout(client, make_user, make_city):
    city = make_city()
    user = make_user("director", login="director1", city_id=city.id)
    login = client.post("/api/auth/login", json={"login": "director1", "password": TEST_PASSWORD})
    assert login.status_code == 200
    assert is_int(login.json["user_id"]) and login.json["user_type"] == "director" and login.json["role"] == "director"
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    body = me.json
    assert body["id"] == user.id and body["login"] == "director1" and body["status"] == "active"
    assert isinstance(body["user_type"], str) and body["role"] == "director" and body["city_id"] == city.id
    out = client.post("/api/auth/logout", headers=SPA)
    assert out.status_code == 200
    assert client.get("/api/auth/me").status_code == 401
    wrong = client.post("/api/auth/login", json={"login": "director1", "password": "nope"})
    assert wrong.status_code == 401 and isinstance(wrong.json["detail"], str)  # shown verbatim by the SPA


def test_cookie_can_be_scoped_to_the_parent_domain(make_user):
    """The SPA's /api proxy on another subdomain carries a cookie set for the parent domain."""
    from api import create_app

    app = create_app({"TESTING": True, "RATELIMIT_ENABLED": False, "JWT_COOKIE_DOMAIN": ".lead.example"})
    user = make_user("manager")
    response = app.test_client().post("/api/auth/login", json={"login": user.login, "password": TEST_PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "Domain=lead.example" in cookie or "Domain=.lead.example" in cookie
    assert "HttpOnly" in cookie and "Path=/" in cookie


def test_reference_lists_9_10_15_24_42_43(spa):
    c, db = spa["client"], spa["db"]
    for path in ("/api/requests/request-types/", "/api/requests/directions/", "/api/transactions/transaction-types/",
                 "/api/users/cities/", "/api/users/roles/", "/api/transactions/cities/"):
        response = c.get(path)
        assert response.status_code == 200, path
        assert isinstance(response.json, list)
        for row in response.json:
            assert is_int(row["id"]) and isinstance(row["name"], str)
    names = {r["name"] for r in c.get("/api/requests/request-types/").json}
    assert {"Впервые", "Повтор"} <= names
    roles = {r["name"] for r in c.get("/api/users/roles/").json}
    assert {"admin", "director", "manager", "callcentr", "avitolog", "master"} <= roles
    assert db.scalar(select(RequestType.id)) is not None


def test_16_15_campaign_create_and_list(spa):
    c, city = spa["client"], spa["city"]
    created = c.post("/api/requests/advertising-campaigns/", headers=SPA,
                     json={"city_id": city.id, "name": "Авито Москва", "phone_number": "+7 (999) 123-45-67"})
    assert created.status_code in (200, 201), created.json
    assert is_int(created.json["id"])
    rows = c.get("/api/requests/advertising-campaigns/").json
    row = next(r for r in rows if r["id"] == created.json["id"])
    assert row["name"] == "Авито Москва" and row["phone_number"] == "+7 (999) 123-45-67"
    assert row["city_id"] == city.id and row["city"]["name"] == "Москва"
    # useUpdate/useDeleteAdvertisingCampaign paths, with the trailing slash the SPA sends.
    assert c.put(f"/api/requests/advertising-campaigns/{row['id']}/", json={"name": "Авито"},
                 headers=SPA).json["id"] == row["id"]


def _master(spa, **extra):
    c, city = spa["client"], spa["city"]
    body = {"city_id": city.id, "full_name": "Петров Пётр", "phone_number": "+7 912 000-00-01", "login": "petrov",
            "password": "Sekret-Pine-71", "birth_date": "", "passport": "", "chat_id": "", "notes": "",
            "status": "active"}
    body.update(extra)
    response = c.post("/api/users/masters/", json=body, headers=SPA)
    assert response.status_code in (200, 201), response.json
    return response.json


def test_27_31_masters(spa):
    c, city = spa["client"], spa["city"]
    created = _master(spa)
    rows = c.get("/api/users/masters/").json
    row = next(r for r in rows if r["id"] == created["id"])
    for field in ("full_name", "phone_number", "login"):
        assert isinstance(row[field], str)
    assert row["status"] == "active" and row["city_id"] == city.id and row["city"] == {"id": city.id, "name": "Москва"}
    assert "created_at" in row and "birth_date" in row
    detail = c.get(f"/api/users/masters/{created['id']}").json
    for field in ("id", "full_name", "phone_number", "birth_date", "passport", "status", "chat_id", "city_id",
                  "notes", "login", "created_at"):
        assert field in detail, field
    assert "password" not in str(detail) and "password_hash" not in detail
    # MasterViewPage PUT: no login, no password; '' dates.
    updated = c.put(f"/api/users/masters/{created['id']}", headers=SPA, json={
        "full_name": "Петров П.", "phone_number": "+7 912 000-00-02", "birth_date": "1990-05-01", "passport": "4510",
        "status": "busy", "chat_id": "123", "city_id": city.id, "notes": "ок"})
    assert updated.status_code == 200 and is_int(updated.json["id"])
    again = c.get(f"/api/users/masters/{created['id']}").json
    assert again["birth_date"] == "1990-05-01" and again["status"] == "busy" and again["notes"] == "ок"
    deleted = c.delete(f"/api/users/masters/{created['id']}", headers=SPA)
    assert deleted.status_code == 200


def test_34_36_41_employees_and_deletes_from_users_page(spa, db):
    c, city = spa["client"], spa["city"]
    role_id = db.scalar(select(Role.id).where(Role.name == "callcentr"))
    created = c.post("/api/users/employees/", headers=SPA, json={
        "city_id": city.id, "role_id": role_id, "name": "Оператор", "status": "pending", "login": "op1",
        "password": "Sekret-Pine-71", "notes": ""})
    assert created.status_code in (200, 201), created.json
    refused = c.delete(f"/api/users/administrators/{spa['admin'].id}", headers=SPA)
    assert refused.status_code == 409 and isinstance(refused.json["detail"], str)  # yourself: shown in a toast
    gone = c.delete(f"/api/users/employees/{created.json['id']}", headers=SPA)
    assert gone.status_code == 200


def _request(spa, **extra):
    c, city = spa["client"], spa["city"]
    rt = spa["db"].scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    body = {"client_phone": "+7 (999) 123-45-67", "client_name": "Иван", "city_id": city.id, "request_type_id": rt,
            "address": "", "problem": "", "meeting_date": "2025-07-21T14:30"}
    body.update(extra)
    response = c.post("/api/requests/", json=body, headers=SPA)
    assert response.status_code in (200, 201), response.json
    return response.json


def test_4_6_requests_list_read_set(spa):
    c = spa["client"]
    created = _request(spa)
    rows = c.get("/api/requests/", query_string={"search": ""}).json
    row = next(r for r in rows if r["id"] == created["id"])
    assert row["status"] == "Новая"
    assert "T" in row["created_at"] and row["created_at"][:4].isdigit()
    for field in ("updated_at", "meeting_date", "address", "problem", "result", "master_id", "advertising_campaign_id",
                  "call_center_name", "call_center_notes", "direction", "master", "advertising_campaign"):
        assert field in row, field
    assert isinstance(row["client_name"], str) and isinstance(row["client_phone"], str)
    assert is_int(row["city_id"])
    assert row["city"]["name"] == "Москва" and row["request_type"]["name"] == "Впервые"
    filtered = c.get("/api/requests/", query_string={"search": "", "status": "Новая", "city_id": spa["city"].id}).json
    assert [r["id"] for r in filtered] == [created["id"]]


def test_5_7_request_view_page_save(spa, make_user):
    c, city = spa["client"], spa["city"]
    master = make_user("master", city_id=city.id, full_name="Сидоров")
    created = _request(spa)
    detail = c.get(f"/api/requests/{created['id']}/").json
    for field in ("id", "status", "master_id", "city_id", "request_type_id", "direction_id", "advertising_campaign_id",
                  "net_amount", "expenses", "result", "client_name", "client_phone", "address", "problem",
                  "meeting_date", "bso_file_path", "expense_file_path", "recording_file_path"):
        assert field in detail, field
    local = detail["meeting_date"][:19]
    assert local == "2025-07-21T14:30:00"
    saved = c.put(f"/api/requests/{created['id']}/", headers=SPA, json={
        "status": "Готово", "master_id": master.id, "net_amount": detail["net_amount"], "expenses": 500,
        "result": "3500", "client_name": "Иван", "client_phone": "+7 (999) 123-45-67", "address": "", "problem": "",
        "city_id": city.id, "request_type_id": detail["request_type_id"],
        "meeting_date": "2025-07-21T11:30:00.000Z"})
    assert saved.status_code == 200, saved.json
    body = saved.json
    assert body["meeting_date"][:19] == local  # no drift by the UTC offset
    assert is_number(body["net_amount"]) and body["net_amount"] == 3000
    assert is_number(body["master_handover"]) and body["master_handover"] == 1500
    assert body["master"]["full_name"] == "Сидоров"
    txs = c.get("/api/transactions/").json
    income = [t for t in txs if t.get("request_id") == created["id"]]
    assert len(income) == 1 and income[0]["amount"] == 1500


def test_7c_incoming_edit_page_quirks(spa):
    c = spa["client"]
    created = _request(spa)
    saved = c.put(f"/api/requests/{created['id']}/", headers=SPA, json={
        "client_name": "", "client_phone": "", "city_id": 0, "request_type_id": 0, "address": "", "problem": "",
        "meeting_date": "", "status": "new", "ats_number": "", "call_center_name": "Оля", "call_center_notes": ""})
    assert saved.status_code == 200, saved.json
    assert saved.json["status"] == "Новая" and saved.json["call_center_name"] == "Оля"
    assert saved.json["client_name"] == "Иван"


def test_19_22_transactions_all_three_post_shapes(spa, db):
    c, city = spa["client"], spa["city"]
    income_type = db.scalar(select(TransactionType.id).where(TransactionType.name == "Приход"))
    expense_type = db.scalar(select(TransactionType.id).where(TransactionType.name == "Расход"))
    create_page = c.post("/api/transactions/", headers=SPA,
                         json={"city_id": city.id, "type_id": income_type, "amount": 1500, "description": "касса"})
    expense_page = c.post("/api/transactions/", headers=SPA, json={
        "city_id": city.id, "transaction_type_id": expense_type, "amount": "-1500", "specified_date": "2026-11-01",
        "notes": "бензин"})
    income_page = c.post("/api/transactions/", headers=SPA, json={
        "city_id": city.id, "transaction_type_id": income_type, "amount": "2500", "specified_date": "2026-11-02",
        "notes": "сдача"})
    for response in (create_page, expense_page, income_page):
        assert response.status_code in (200, 201), response.json
        assert is_int(response.json["id"])
    rows = {t["id"]: t for t in c.get("/api/transactions/").json}
    expense = rows[expense_page.json["id"]]
    assert expense["amount"] == -1500 and is_number(expense["amount"])
    assert rows[income_page.json["id"]]["amount"] == 2500
    assert rows[create_page.json["id"]]["specified_date"]  # defaulted to today
    for t in rows.values():
        assert t["transaction_type"] == t["type"] and t["transaction_type_id"] == t["type_id"]
        assert t["notes"] == t["description"] and t["city"]["id"] == t["city_id"] == city.id
        assert "created_at" in t and "payment_reason" in t and "file_path" in t and "expense_receipt_path" in t
    one = c.get(f"/api/transactions/{expense_page.json['id']}").json
    assert one["city"]["name"] == "Москва" and one["transaction_type"]["name"] == "Расход"
    # TransactionEditPage: absolute value edited, sign kept by the page; notes/date/reason really saved.
    edited = c.put(f"/api/transactions/{expense_page.json['id']}", headers=SPA, json={
        "city_id": city.id, "transaction_type_id": expense_type, "amount": -1800, "notes": "бензин и масло",
        "specified_date": "2026-11-03", "payment_reason": "чек 15"})
    assert edited.status_code == 200
    again = c.get(f"/api/transactions/{expense_page.json['id']}").json
    assert (again["amount"], again["notes"], again["specified_date"], again["payment_reason"]) == (
        -1800, "бензин и масло", "2026-11-03", "чек 15")


def test_errors_carry_detail(spa):
    c = spa["client"]
    response = c.post("/api/requests/", json={"client_name": "без телефона"}, headers=SPA)
    assert response.status_code == 422 and isinstance(response.json["detail"], str)
    assert c.get("/api/requests/999999/").json["detail"] == "Заявка не найдена"


def test_lists_are_complete_beyond_the_old_100_cap(spa, db):
    from models import Request

    rt = db.scalar(select(RequestType.id))
    db.add_all(Request(city_id=spa["city"].id, request_type_id=rt, client_phone=f"7900{i:07d}", client_name=str(i))
               for i in range(250))
    db.commit()
    assert len(spa["client"].get("/api/requests/").json) == 250
