"""Requests: the SPA's bodies, filters, server-side money, income on Готово, history, locking, roles."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from models import Request, RequestEvent, Transaction
from models.directories.tables import RequestType
from tests.factories import create_user
from tests.support import SPA, at_once, login


@pytest.fixture()
def city(make_city):
    return make_city("Москва")


@pytest.fixture()
def operator(client, make_user):
    user = make_user("callcentr", full_name="Оператор")
    login(client, user)
    return user


def create(client, **fields):
    body = {"client_phone": "+7 (999) 123-45-67", "client_name": "Иван", **fields}
    response = client.post("/api/requests/", json=body, headers=SPA)
    assert response.status_code == 201, response.json
    return response.json


def income_rows(db, request_id):
    return db.scalars(select(Transaction).where(Transaction.request_id == request_id)).all()


def test_create_with_the_spa_body(client, operator, city, db):
    """IncomingRequestCreatePage: local meeting time without zone, '' strings, ids as numbers."""
    first_time = db.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    body = create(client, city_id=city.id, request_type_id=first_time, address="", problem="",
                  meeting_date="2025-07-21T14:30")
    assert body["status"] == "Новая"
    assert body["client_phone"] == "+7 (999) 123-45-67"
    assert body["client_phone_normalized"] == "79991234567"
    assert body["city"] == {"id": city.id, "name": "Москва"}
    assert body["request_type"]["name"] == "Впервые"
    assert body["address"] is None and body["problem"] is None
    # 14:30 in the business time zone (Moscow, +03:00), sent back with its offset.
    assert body["meeting_date"] == "2025-07-21T14:30:00+03:00"
    assert body["expenses"] == 0 and body["net_amount"] == 0 and body["master_handover"] == 0
    assert isinstance(body["version"], int)


def test_meeting_date_round_trips_without_drift(client, operator, city):
    body = create(client, city_id=city.id, meeting_date="2025-07-21T14:30")
    # RequestViewPage reads the first 19 characters as local time and sends it back as UTC 'Z'.
    sent_back = "2025-07-21T11:30:00.000Z"
    for _ in range(3):
        body = client.put(f"/api/requests/{body['id']}/", json={"meeting_date": sent_back}, headers=SPA).json
        assert body["meeting_date"][:19] == "2025-07-21T14:30:00"


def test_request_type_defaults_by_phone_history(client, operator, city):
    first = create(client, city_id=city.id, client_phone="8 (912) 000-11-22")
    again = create(client, city_id=city.id, client_phone="+79120001122")
    assert first["request_type"]["name"] == "Впервые"
    assert again["request_type"]["name"] == "Повтор"


def test_update_from_request_view_page_computes_money(client, operator, city, make_user):
    master = make_user("master", city_id=city.id)
    body = create(client, city_id=city.id)
    saved = client.put(f"/api/requests/{body['id']}/", headers=SPA, json={
        "status": "В работе", "master_id": master.id, "net_amount": 0, "expenses": 500, "result": "3500",
        "client_name": "Иван", "client_phone": "+7 (999) 123-45-67", "address": "ул. Ленина, 1", "problem": "",
        "city_id": city.id, "meeting_date": "2025-07-21T11:30:00.000Z",
    })
    assert saved.status_code == 200, saved.json
    data = saved.json
    assert data["result"] == 3500 and data["expenses"] == 500
    assert data["net_amount"] == 3000  # the stale 0 sent by the SPA is ignored
    assert data["master_handover"] == 1500  # MASTER_SHARE 0.5
    assert data["master"]["id"] == master.id and data["master"]["full_name"] == master.full_name


def test_incoming_edit_page_untouched_save_loses_nothing(client, operator, city):
    body = create(client, city_id=city.id, address="ул. Мира, 5")
    saved = client.put(f"/api/requests/{body['id']}/", headers=SPA, json={
        "client_name": "", "client_phone": "", "city_id": 0, "request_type_id": 0, "address": "ул. Мира, 5",
        "problem": "", "meeting_date": "", "status": "new", "ats_number": "", "call_center_name": "Анна",
        "call_center_notes": "",
    })
    assert saved.status_code == 200, saved.json
    data = saved.json
    assert data["client_name"] == "Иван" and data["client_phone_normalized"] == "79991234567"
    assert data["city_id"] == city.id
    assert data["status"] == "Новая"
    assert data["call_center_name"] == "Анна"


def test_income_booked_once_kept_in_sync_and_removed(client, make_user, city, db):
    login(client, make_user("manager"))  # a final request's money: admin and manager only
    body = create(client, city_id=city.id)
    rid = body["id"]
    done = client.put(f"/api/requests/{rid}", json={"status": "Готово", "result": 10000, "expenses": 2000},
                      headers=SPA).json
    assert done["master_handover"] == 4000
    rows = income_rows(db, rid)
    assert len(rows) == 1
    income = rows[0]
    assert income.amount == Decimal("4000.00") and income.city_id == city.id
    assert income.transaction_type.name == "Приход"
    booked_on = income.specified_date

    # A later edit keeps the one row in sync and does not move its date.
    db.execute(Transaction.__table__.update().where(Transaction.id == income.id)
               .values(specified_date=booked_on - timedelta(days=3)))
    db.commit()
    client.put(f"/api/requests/{rid}", json={"result": 12000}, headers=SPA)
    db.expire_all()
    rows = income_rows(db, rid)
    assert len(rows) == 1
    assert rows[0].amount == Decimal("5000.00")
    assert rows[0].specified_date == booked_on - timedelta(days=3)

    # Leaving Готово removes it; coming back books it again, once.
    client.put(f"/api/requests/{rid}", json={"status": "В работе"}, headers=SPA)
    assert income_rows(db, rid) == []
    client.put(f"/api/requests/{rid}", json={"status": "Готово"}, headers=SPA)
    client.put(f"/api/requests/{rid}", json={"status": "Готово", "master_notes": "ок"}, headers=SPA)
    assert len(income_rows(db, rid)) == 1


def test_deleting_the_request_removes_its_income_and_keeps_history(client, make_user, city, db):
    manager = make_user("manager")
    login(client, manager)
    rid = create(client, city_id=city.id)["id"]
    client.put(f"/api/requests/{rid}", json={"status": "Готово", "result": 1000}, headers=SPA)
    assert len(income_rows(db, rid)) == 1
    response = client.delete(f"/api/requests/{rid}/", headers=SPA)
    assert response.status_code == 200
    assert income_rows(db, rid) == []
    assert client.get(f"/api/requests/{rid}/").status_code == 404
    actions = db.scalars(select(RequestEvent.action).where(RequestEvent.request_id == rid)).all()
    assert actions[0] == "created" and actions[-1] == "deleted"


def test_concurrent_saves_leave_exactly_one_income(app, committed):
    """Two clients save the same request to Готово at the same time, on two connections."""
    from models import City

    city = City(name="Казань")
    committed.add(city)
    committed.commit()
    operator = create_user("manager")  # may change a request that is already Готово: both saves land
    committed.commit()
    clients = [app.test_client(), app.test_client()]
    for c in clients:
        login(c, operator)
    rid = create(clients[0], city_id=city.id)["id"]

    def saving(c, amount):
        return lambda: c.put(f"/api/requests/{rid}", json={"status": "Готово", "result": amount}, headers=SPA)

    responses = at_once(*(saving(c, amount) for c, amount in zip(clients, (1000, 3000))))
    assert [response.status_code for response in responses] == [200, 200]
    committed.remove()
    count, amount = committed.execute(
        select(func.count(), func.max(Transaction.amount)).where(Transaction.request_id == rid)).one()
    final = committed.get(Request, rid)
    assert count == 1
    assert amount == final.master_handover  # the row matches whichever save came last


def test_version_conflict(client, operator, city):
    body = create(client, city_id=city.id)
    ok = client.put(f"/api/requests/{body['id']}", json={"problem": "течёт", "version": body["version"]},
                    headers=SPA)
    assert ok.status_code == 200
    stale = client.put(f"/api/requests/{body['id']}", json={"problem": "гудит", "version": body["version"]},
                       headers=SPA)
    assert stale.status_code == 409
    assert stale.json["code"] == "version_conflict"
    # The SPA sends no version: last write wins, never a 409.
    assert client.put(f"/api/requests/{body['id']}", json={"problem": "гудит"}, headers=SPA).status_code == 200


def test_history_records_every_change(client, operator, city):
    rid = create(client, city_id=city.id)["id"]
    client.put(f"/api/requests/{rid}", json={"status": "Перезвонить", "problem": "не греет"}, headers=SPA)
    history = client.get(f"/api/requests/{rid}/history/").json
    assert history[0]["action"] == "created"
    changes = {(e["field"], e["old_value"], e["new_value"]) for e in history[1:]}
    assert ("status", "Новая", "Перезвонить") in changes
    assert ("problem", None, "не греет") in changes
    assert all(e["user_id"] == operator.id for e in history)


def test_list_is_complete_and_filtered(client, operator, city, make_city, db):
    other = make_city("Тверь")
    for i in range(130):
        db.add(Request(city_id=city.id if i % 2 else other.id, request_type_id=db.scalar(select(RequestType.id)),
                       client_phone=f"7999000{i:04d}", client_name=f"Клиент {i}", status="Новая" if i % 3 else "Отказ"))
    db.commit()
    everything = client.get("/api/requests/?search=")
    assert everything.status_code == 200
    assert len(everything.json) == 130
    assert "X-Pagination" not in everything.headers
    moscow = client.get(f"/api/requests/?city_id={city.id}&status=%D0%9E%D1%82%D0%BA%D0%B0%D0%B7").json
    assert moscow and all(r["city_id"] == city.id and r["status"] == "Отказ" for r in moscow)
    page = client.get("/api/requests?page=2&page_size=50")
    assert len(page.json) == 50
    import json
    assert json.loads(page.headers["X-Pagination"])["total"] == 130
    by_phone = client.get("/api/requests?search=0000012").json
    assert [r["client_name"] for r in by_phone] == ["Клиент 12"]
    by_name = client.get("/api/requests?search=клиент 10").json
    assert {r["client_name"] for r in by_name} >= {"Клиент 10", "Клиент 100"}


@pytest.mark.parametrize("query", ["city_id=abc", "status=done", "date_from=2025-13-01", "sort=password",
                                   "page=0", "page_size=100000"])
def test_bad_filters_are_422(client, operator, query):
    response = client.get(f"/api/requests?{query}")
    assert response.status_code == 422
    assert response.json["detail"] and response.json["errors"]


def test_date_range_uses_business_days(client, operator, city, db):
    rt = db.scalar(select(RequestType.id))
    late = datetime(2025, 3, 10, 20, 30, tzinfo=timezone.utc)  # 23:30 in Moscow, 10 March
    next_day = datetime(2025, 3, 10, 21, 10, tzinfo=timezone.utc)  # 00:10 in Moscow, 11 March
    for moment, name in ((late, "late"), (next_day, "next")):
        db.add(Request(city_id=city.id, request_type_id=rt, client_phone="79990000000", client_name=name,
                       created_at=moment))
    db.commit()
    names = [r["client_name"] for r in client.get("/api/requests?date_from=2025-03-10&date_to=2025-03-10").json]
    assert names == ["late"]


@pytest.mark.parametrize("body, field", [
    ({"client_name": "Без телефона", "city_id": 1}, "client_phone"),
    ({"client_phone": "abc", "city_id": 1}, "client_phone"),
    ({"client_phone": "79990001122"}, "city_id"),
    ({"client_phone": "79990001122", "city_id": 0}, "city_id"),
    ({"client_phone": "79990001122", "city_id": 999999}, "city_id"),
    ({"client_phone": "79990001122", "city_id": 1, "status": "done"}, "status"),
    ({"client_phone": "79990001122", "city_id": 1, "result": "много"}, "result"),
    ({"client_phone": "79990001122", "city_id": 1, "expenses": -5}, "expenses"),
    ({"client_phone": "79990001122", "city_id": 1, "meeting_date": "завтра"}, "meeting_date"),
    ({"client_phone": "79990001122", "city_id": 1, "master_id": 999999}, "master_id"),
    ({"client_phone": "79990001122", "city_id": 1, "unknown": 1}, "unknown"),
])
def test_invalid_bodies_are_422_with_field(client, operator, body, field, city):
    if body.get("city_id") == 1:
        body["city_id"] = city.id
    response = client.post("/api/requests", json=body, headers=SPA)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert response.json["detail"]


def test_unknown_request_is_404(client, operator):
    for path in ("/api/requests/999999", "/api/requests/999999/history", "/api/requests/0"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json["detail"] == "Заявка не найдена"


# ---- roles -----------------------------------------------------------------------------------------

@pytest.fixture()
def two_cities(make_city, make_user, db):
    a, b = make_city("Омск"), make_city("Томск")
    rt = db.scalar(select(RequestType.id))
    master_a = make_user("master", city_id=a.id)
    req_a = Request(city_id=a.id, request_type_id=rt, client_phone="79990000001", client_name="A",
                    master_id=master_a.id, status="В работе")
    req_b = Request(city_id=b.id, request_type_id=rt, client_phone="79990000002", client_name="B")
    db.add_all([req_a, req_b])
    db.commit()
    return a, b, master_a, req_a, req_b


def test_director_sees_and_edits_only_their_city(client, make_user, two_cities):
    a, b, master_a, req_a, req_b = two_cities
    login(client, make_user("director", city_id=a.id))
    assert [r["id"] for r in client.get("/api/requests/").json] == [req_a.id]
    assert client.get(f"/api/requests/{req_b.id}/").status_code == 404
    assert client.put(f"/api/requests/{req_b.id}/", json={"status": "Ожидает"}, headers=SPA).status_code == 404
    create_other = client.post("/api/requests/", json={"client_phone": "79991112233", "city_id": b.id}, headers=SPA)
    assert create_other.status_code == 403 and create_other.json["code"] == "other_city"
    # Status, master and money yes; client data no (unless sent unchanged, as the SPA does).
    ok = client.put(f"/api/requests/{req_a.id}/", headers=SPA,
                    json={"status": "Готово", "result": "2000", "client_name": "A", "city_id": a.id})
    assert ok.status_code == 200, ok.json
    rename = client.put(f"/api/requests/{req_a.id}/", json={"client_name": "Другой"}, headers=SPA)
    assert rename.status_code == 403


def test_director_locked_out_of_final_statuses(client, make_user, two_cities):
    a, _b, _m, req_a, _ = two_cities
    login(client, make_user("director", city_id=a.id))
    assert client.put(f"/api/requests/{req_a.id}", json={"status": "Отказ"}, headers=SPA).status_code == 200
    locked = client.put(f"/api/requests/{req_a.id}", json={"status": "В работе"}, headers=SPA)
    assert locked.status_code == 403 and locked.json["code"] == "final_status"


def test_master_only_own_requests_and_fields(client, make_user, two_cities):
    a, _b, master_a, req_a, req_b = two_cities
    login(client, master_a)
    assert [r["id"] for r in client.get("/api/requests/").json] == [req_a.id]
    assert client.get(f"/api/requests/{req_b.id}").status_code == 404
    ok = client.put(f"/api/requests/{req_a.id}", json={"status": "Готово", "result": 5000, "expenses": 1000,
                                                       "master_notes": "заменил тэн"}, headers=SPA)
    assert ok.status_code == 200 and ok.json["master_handover"] == 2000
    assert client.put(f"/api/requests/{req_a.id}", json={"client_phone": "79990000009"},
                      headers=SPA).status_code == 403
    assert client.put(f"/api/requests/{req_a.id}", json={"status": "Новая"}, headers=SPA).status_code == 403
    assert client.post("/api/requests", json={"client_phone": "79990000003", "city_id": a.id},
                       headers=SPA).status_code == 403
    assert client.delete(f"/api/requests/{req_a.id}", headers=SPA).status_code == 403


def test_avitolog_reads_and_creates_but_does_not_edit(client, make_user, two_cities):
    a, _b, _m, req_a, _ = two_cities
    login(client, make_user("avitolog"))
    assert len(client.get("/api/requests").json) == 2
    assert client.post("/api/requests", json={"client_phone": "79990000004", "city_id": a.id},
                       headers=SPA).status_code == 201
    assert client.put(f"/api/requests/{req_a.id}", json={"problem": "x"}, headers=SPA).status_code == 403


def test_only_admin_and_manager_delete(client, make_user, two_cities):
    _a, _b, _m, req_a, _ = two_cities
    for role in ("callcentr", "director", "avitolog"):
        client.post("/api/auth/logout", headers=SPA)
        login(client, make_user(role))
        assert client.delete(f"/api/requests/{req_a.id}", headers=SPA).status_code == 403
    client.post("/api/auth/logout", headers=SPA)
    login(client, make_user("admin"))
    assert client.delete(f"/api/requests/{req_a.id}", headers=SPA).status_code == 200


def test_list_rows_built_by_postgresql_match_the_detail_document(client, operator, city, db, make_user):
    """Lists are formatted by PostgreSQL, the detail page in Python: the SPA must not see a difference
    (money as numbers, dates with offsets and fractions, empty and missing references, quotes,
    backslashes and control characters, which the complete list's COPY stream must carry intact)."""
    from models import AdvertisingCampaign, Direction

    rt = db.scalar(select(RequestType.id))
    master = make_user("master", city_id=city.id, full_name='Мастер "Ключ" \\ <b>')
    direction = Direction(name="Окна")
    campaign = AdvertisingCampaign(city_id=city.id, name="Авито", phone_number="+7 (495) 100-00-01",
                                   phone="74951000001")
    db.add_all([direction, campaign])
    db.flush()
    moments = [datetime(2025, 3, 10, 20, 30, tzinfo=timezone.utc),
               datetime(2025, 3, 10, 20, 30, 0, 120000, tzinfo=timezone.utc),
               datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)]
    rows = [
        Request(city_id=city.id, request_type_id=rt, client_phone="79990000001", client_phone_raw="",
                client_name=None, created_at=moments[0], meeting_date=moments[1]),
        Request(city_id=city.id, request_type_id=rt, client_phone="79990000002", client_phone_raw="8 999 000-00-02",
                client_name="Анна\n\"Кавычки\"", address="ул. Мира, 1\t", status="Готово", master_id=master.id,
                direction_id=direction.id, advertising_campaign_id=campaign.id, result=Decimal("12500.50"),
                expenses=Decimal("0.05"), net_amount=Decimal("12500.45"), master_handover=Decimal("-3.10"),
                created_at=moments[1], completed_at=moments[2], meeting_date=moments[2]),
        Request(city_id=city.id, request_type_id=rt, client_phone="79990000003", client_name="",
                problem="C:\\дом\\n \\\\ \x01\x1f\x7f 😀 \\\"", created_at=moments[2], result=Decimal("0")),
    ]
    db.add_all(rows)
    db.commit()
    details = {r.id: client.get(f"/api/requests/{r.id}").json for r in rows}
    for body in details.values():
        for name in ("files", "bso_file_path", "expense_file_path", "recording_file_path"):
            body.pop(name)
    streamed = client.get("/api/requests").json
    paged = client.get("/api/requests?page=1&page_size=2").json + client.get("/api/requests?page=2&page_size=2").json
    assert [r["id"] for r in streamed] == [rows[1].id, rows[0].id, rows[2].id]  # newest first
    assert streamed == paged
    for listed in streamed:
        assert listed == details[listed["id"]]
    assert streamed[0]["result"] == 12500.5 and streamed[0]["master_handover"] == -3.1
    assert streamed[0]["meeting_date"] == "2025-01-01T02:59:59.999999+03:00"
    assert streamed[1]["client_phone"] == "79990000001" and streamed[1]["client_name"] == ""
    assert streamed[1]["created_at"] == "2025-03-10T20:30:00+00:00"
    assert streamed[2]["problem"] == rows[2].problem
