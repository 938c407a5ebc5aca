"""Every role saves a request as the SPA's pages send it: the body is built from a GET of a real
request, the way each page builds it (docs/spa-contract.md, bodies B and C), and sent back unchanged and with
one field changed.

- unchanged: 200, nothing written to the history, the version unchanged;
- changed within the role's rights: 200, the change in the history;
- changed outside them: 403 naming only the fields really changed.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from models import AdvertisingCampaign, Direction, RequestEvent
from models.directories.tables import RequestType
from tests.factories import create_user, record_request
from tests.support import SPA, login

BROWSER_ZONE = ZoneInfo("Europe/Moscow")  # the browser of a user in the business time zone
# Phones as operators typed them (seen in the SPA), and one as Mango stores it (digits only).
PHONES = ("8(961)283-94-40", "+79050500444", "+7 (951) 268-70-06", "79161234567")


def js_number(value) -> str:
    """String(x) of a JavaScript number: 3500, not 3500.0."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def spa_meeting(value: str | None) -> str | None:
    """RequestViewPage reads the first 19 characters as the browser's wall-clock time and sends it
    back as UTC with milliseconds and Z."""
    if not value:
        return None
    local = datetime.fromisoformat(value[:19]).replace(tzinfo=BROWSER_ZONE)
    return local.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def view_page_body(detail: dict) -> dict:
    """PUT body of RequestViewPage's Save (body B): the whole form, ids omitted when 0, result as a
    string, net_amount as loaded, master_handover never."""
    body = {
        "status": detail["status"],
        "net_amount": detail["net_amount"],
        "expenses": detail["expenses"],
        "result": "" if detail["result"] is None else js_number(detail["result"]),
        "client_name": detail["client_name"] or "",
        "client_phone": detail["client_phone"] or "",
        "address": detail["address"] or "",
        "problem": detail["problem"] or "",
    }
    for name in ("master_id", "advertising_campaign_id", "request_type_id", "direction_id", "city_id"):
        if detail[name]:
            body[name] = detail[name]
    if detail["meeting_date"]:
        body["meeting_date"] = spa_meeting(detail["meeting_date"])
    return body


def incoming_edit_body(detail: dict) -> dict:
    """PUT body of IncomingRequestEditPage (body C), its form filled from the request."""
    body = {
        "client_name": detail["client_name"] or "",
        "client_phone": detail["client_phone"] or "",
        "city_id": detail["city_id"] or 0,
        "request_type_id": detail["request_type_id"] or 0,
        "address": detail["address"] or "",
        "problem": detail["problem"] or "",
        "meeting_date": spa_meeting(detail["meeting_date"]) or "",
        "status": detail["status"],
        "ats_number": detail["ats_number"] or "",
        "call_center_name": detail["call_center_name"] or "",
        "call_center_notes": detail["call_center_notes"] or "",
    }
    if detail["advertising_campaign_id"]:
        body["advertising_campaign_id"] = detail["advertising_campaign_id"]
    return body


PAGES = {"view": view_page_body, "incoming": incoming_edit_body}
# The pages each role can save from (docs/spa-contract.md: a director only from the view page).
ROLE_PAGES = {
    "director": ("view",),
    "master": ("view", "incoming"),
    "callcentr": ("view", "incoming"),
    "manager": ("view", "incoming"),
    "admin": ("view", "incoming"),
}


@pytest.fixture()
def world(make_city, db):
    city = make_city("Ростов")
    rt = db.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    direction = Direction(name="Стиральные машины")
    campaign = AdvertisingCampaign(city_id=city.id, name="Авито Ростов", phone_number="+7 (863) 000-00-01",
                                   phone="78630000001")
    db.add_all([direction, campaign])
    db.commit()
    users = {role: create_user(role, city_id=city.id if role in ("director", "master") else None)
             for role in ROLE_PAGES}
    other_master = create_user("master", city_id=city.id)
    return {"city": city.id, "type": rt, "direction": direction.id, "campaign": campaign.id, "users": users,
            "other_master": other_master.id}


def request_as_held(world, *, phone: str, status: str = "В работе", **extra) -> int:
    """A request as the system holds it, created through the domain rule: the phone typed by an
    operator (kept as typed, stored normalised), a meeting time with seconds and microseconds, money,
    notes, call-centre fields."""
    return record_request({
        "client_phone": phone, "client_name": "Пётр", "city_id": world["city"], "request_type_id": world["type"],
        "direction_id": world["direction"], "advertising_campaign_id": world["campaign"],
        "address": "ул. Садовая, 1", "problem": "не сливает воду", "status": status,
        "meeting_date": datetime(2026, 12, 7, 11, 30, 27, 123456, tzinfo=timezone.utc),
        "master_id": world["users"]["master"].id, "result": Decimal("3500"), "expenses": Decimal("500.50"),
        "master_notes": "заменил насос", "ats_number": "101", "call_center_name": "Анна",
        "call_center_notes": "перезвонить вечером", **extra,
    }, created_by_id=world["users"]["callcentr"].id).id


def history_count(db, request_id: int) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(RequestEvent).where(RequestEvent.request_id == request_id))


def save(client, request_id: int, body: dict):
    return client.put(f"/api/requests/{request_id}/", json=body, headers=SPA)


def read(client, request_id: int) -> dict:
    response = client.get(f"/api/requests/{request_id}/")
    assert response.status_code == 200, response.json
    return response.json


def assert_unchanged_save_succeeds(client, db, request_id: int, page: str) -> None:
    before = read(client, request_id)
    events = history_count(db, request_id)
    response = save(client, request_id, PAGES[page](before))
    assert response.status_code == 200, (page, response.json)
    assert history_count(db, request_id) == events  # nothing written
    after = read(client, request_id)
    assert after["version"] == before["version"]
    assert after == before


# What each role may change, as the page would send it.
ALLOWED_CHANGE = {
    "director": ("view", "status", "В пути"),
    "master": ("view", "status", "В пути"),
    "callcentr": ("incoming", "call_center_notes", "клиент ждёт с 18:00"),
    "manager": ("view", "address", "ул. Садовая, 3"),
    "admin": ("incoming", "client_name", "Пётр Иванович"),
}
# A change outside the role's rights (admin and manager may change everything).
FORBIDDEN_CHANGE = {
    "director": ("view", "client_name", "Другой клиент"),
    "master": ("view", "address", "другой адрес"),
}


@pytest.mark.parametrize("phone", PHONES)
@pytest.mark.parametrize("role", sorted(ROLE_PAGES))
def test_unchanged_save_from_every_page_succeeds_and_writes_nothing(client, db, world, role, phone):
    request_id = request_as_held(world, phone=phone)
    login(client, world["users"][role])
    for page in ROLE_PAGES[role]:
        assert_unchanged_save_succeeds(client, db, request_id, page)


@pytest.mark.parametrize("role", sorted(ROLE_PAGES))
def test_a_change_within_the_role_s_rights_is_saved(client, db, world, role):
    request_id = request_as_held(world, phone=PHONES[0])
    login(client, world["users"][role])
    page, field, value = ALLOWED_CHANGE[role]
    body = PAGES[page](read(client, request_id))
    body[field] = value
    events = history_count(db, request_id)
    response = save(client, request_id, body)
    assert response.status_code == 200, response.json
    assert response.json[field] == value
    assert history_count(db, request_id) == events + 1  # the one field, nothing else
    event = db.scalars(select(RequestEvent).where(RequestEvent.request_id == request_id)
                       .order_by(RequestEvent.id.desc())).first()
    assert event.field == field and event.user_id == world["users"][role].id


@pytest.mark.parametrize("role", sorted(FORBIDDEN_CHANGE))
def test_a_change_outside_the_role_s_rights_names_only_that_field(client, db, world, role):
    request_id = request_as_held(world, phone=PHONES[2])
    login(client, world["users"][role])
    page, field, value = FORBIDDEN_CHANGE[role]
    before = read(client, request_id)
    body = PAGES[page](before)
    body[field] = value
    response = save(client, request_id, body)
    assert response.status_code == 403, response.json
    assert response.json["code"] == "field_forbidden"
    assert response.json["detail"] == f"Недостаточно прав для изменения полей: {field}"
    assert set(response.json["errors"]) == {field}
    assert read(client, request_id) == before


def test_director_assigns_a_master_and_moves_the_status_from_the_page(client, db, world):
    """The director's daily work: open the request, pick a master and a status, save."""
    request_id = request_as_held(world, phone="8(961)283-94-40", status="Ожидает", master_id=None, result=None,
                                 expenses=Decimal(0))
    login(client, world["users"]["director"])
    body = view_page_body(read(client, request_id))
    body.update(master_id=world["other_master"], status="Принял")
    response = save(client, request_id, body)
    assert response.status_code == 200, response.json
    assert response.json["master_id"] == world["other_master"] and response.json["status"] == "Принял"
    fields = set(db.scalars(select(RequestEvent.field).where(RequestEvent.request_id == request_id,
                                                             RequestEvent.action == "updated")))
    assert fields == {"master_id", "status"}


@pytest.mark.parametrize("role", sorted(ROLE_PAGES))
def test_a_finished_request_saved_unchanged_succeeds_for_every_role(client, db, world, role):
    request_id = request_as_held(world, phone=PHONES[1], status="Готово")
    login(client, world["users"][role])
    for page in ROLE_PAGES[role]:
        assert_unchanged_save_succeeds(client, db, request_id, page)


@pytest.mark.parametrize("role, field, value, code", [
    ("director", "status", "В работе", "final_status"),
    ("director", "master_notes", "другое", "final_status"),
    ("master", "status", "Отказ", "final_status"),
    ("master", "result", "9000", "final_status"),
    ("callcentr", "status", "В работе", "final_status"),
])
def test_a_finished_request_is_locked_for_all_but_the_office(client, db, world, role, field, value, code):
    request_id = request_as_held(world, phone=PHONES[1], status="Готово")
    login(client, world["users"][role])
    before = read(client, request_id)
    body = view_page_body(before)
    body[field] = value
    response = save(client, request_id, body)
    assert response.status_code == 403, response.json
    assert response.json["code"] == code and "Готово" in response.json["detail"]
    assert read(client, request_id) == before


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_the_office_reopens_a_finished_request(client, db, world, role):
    request_id = request_as_held(world, phone=PHONES[1], status="Готово")
    login(client, world["users"][role])
    body = view_page_body(read(client, request_id))
    body["status"] = "В работе"
    response = save(client, request_id, body)
    assert response.status_code == 200 and response.json["status"] == "В работе"


def test_the_call_centre_edits_client_data_of_a_finished_request(client, db, world):
    request_id = request_as_held(world, phone=PHONES[1], status="Готово")
    login(client, world["users"]["callcentr"])
    body = incoming_edit_body(read(client, request_id))
    body["call_center_notes"] = "клиент доволен"
    response = save(client, request_id, body)
    assert response.status_code == 200 and response.json["call_center_notes"] == "клиент доволен"


def test_a_phone_sent_in_another_form_is_not_a_change(client, db, world):
    """The same number typed differently is the same number: no 403 for a director, no history."""
    request_id = request_as_held(world, phone="+7 (951) 268-70-06")
    login(client, world["users"]["director"])
    events = history_count(db, request_id)
    for form in ("89512687006", "+79512687006", "8 951 268 70 06", " 7(951)2687006 "):
        response = save(client, request_id, {"client_phone": form, "status": "В работе"})
        assert response.status_code == 200, (form, response.json)
    assert history_count(db, request_id) == events
    assert read(client, request_id)["client_phone"] == "+7 (951) 268-70-06"  # as first typed
    other = save(client, request_id, {"client_phone": "+7 (951) 268-70-07"})
    assert other.status_code == 403 and set(other.json["errors"]) == {"client_phone"}
