"""Directories (cities, roles, request types, directions, transaction types) and advertising campaigns."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from models import AdvertisingCampaign, Call, Direction, RequestType, Role, Session, Transaction, TransactionType
from tests.factories import create_user, make_request, seeded_id
from tests.support import SPA

ROLES = ("admin", "manager", "director", "callcentr", "avitolog", "master")
SEEDED_ROLES = ("admin", "director", "manager", "callcentr", "avitolog", "master")  # ordered by id

# path, alias paths, name limit, name the code relies on (or None)
LOOKUPS = [
    ("/api/cities", ("/api/users/cities/", "/api/transactions/cities/"), 100, None),
    ("/api/roles", ("/api/users/roles/",), 50, "callcentr"),
    ("/api/request-types", ("/api/requests/request-types/",), 50, "Повтор"),
    ("/api/directions", ("/api/requests/directions/",), 50, None),
    ("/api/transaction-types", ("/api/transactions/transaction-types/",), 50, "Приход"),
]
# Columns a directory has besides id and name, with their value for a row created with a name alone.
FLAGS = {"/api/transaction-types": {"is_income": False}}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert any("а" <= ch.lower() <= "я" for ch in body["detail"]), body["detail"]  # Russian
    return body


# ---- reading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_every_directory_on_every_path(client, signed_in, make_city, role):
    make_city("Тверь")
    signed_in(role)
    for path, aliases, _limit, _protected in LOOKUPS:
        for url in (path, path + "/", path.replace("/api", "/api/v1", 1), *aliases):
            response = client.get(url)
            assert response.status_code == 200, (url, response.json)
            assert isinstance(response.json, list)
            for row in response.json:
                assert set(row) == {"id", "name", *FLAGS.get(path, {})}
                assert isinstance(row["id"], int) and isinstance(row["name"], str)
    assert "Тверь" in [row["name"] for row in client.get("/api/users/cities/").json]
    assert [row["name"] for row in client.get("/api/users/roles/").json] == list(SEEDED_ROLES)
    assert [row["name"] for row in client.get("/api/transactions/transaction-types/").json][:2] == ["Приход", "Расход"]


def test_directories_need_a_session(client):
    for path, aliases, _limit, _protected in LOOKUPS:
        assert_error(client.get(path), 401, "not_authenticated")
        assert_error(client.get(aliases[0]), 401, "not_authenticated")


def test_aliases_are_read_only(client, signed_in):
    signed_in("admin")
    response = client.post("/api/users/cities/", json={"name": "Казань"}, headers=SPA)
    assert response.status_code == 405


def test_cities_and_directions_ordered_by_name(client, signed_in, make_city):
    for name in ("Ярославль", "Абакан", "Москва"):
        make_city(name)
    signed_in("admin")
    for name in ("Сантехника", "Бытовая техника"):
        assert client.post("/api/directions", json={"name": name}, headers=SPA).status_code == 201
    cities = [row["name"] for row in client.get("/api/cities").json]
    assert cities == sorted(cities) and {"Ярославль", "Абакан", "Москва"} <= set(cities)
    directions = [row["name"] for row in client.get("/api/directions").json]
    assert directions == ["Бытовая техника", "Сантехника"]


def test_list_pages_with_header(client, signed_in, make_city):
    for i in range(5):
        make_city(f"Город-{i}")
    signed_in("manager")
    response = client.get("/api/cities?page=1&page_size=2")
    assert response.status_code == 200
    assert len(response.json) == 2
    assert '"total": 5' in response.headers["X-Pagination"]


# ---- writing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, aliases, limit, protected", LOOKUPS)
def test_crud_by_admin(client, signed_in, path, aliases, limit, protected):
    signed_in("admin")
    created = client.post(path + "/", json={"name": "  Новое значение  "}, headers=SPA)
    assert created.status_code == 201, created.json
    row = created.json
    assert row["name"] == "Новое значение" and set(row) == {"id", "name", *FLAGS.get(path, {})}
    item = f"{path}/{row['id']}/"
    assert client.get(item).json == row
    assert row in client.get(aliases[0]).json

    renamed = client.put(item, json={"name": "Другое"}, headers=SPA)
    assert renamed.status_code == 200 and renamed.json == {"id": row["id"], "name": "Другое", **FLAGS.get(path, {})}
    assert client.get(item).json["name"] == "Другое"

    gone = client.delete(item, headers=SPA)
    assert gone.status_code == 200 and gone.json["message"]
    assert_error(client.get(item), 404, "not_found")
    assert_error(client.put(item, json={"name": "X"}, headers=SPA), 404, "not_found")
    assert_error(client.delete(item, headers=SPA), 404, "not_found")


@pytest.mark.parametrize("path, aliases, limit, protected", LOOKUPS)
def test_name_validation(client, signed_in, path, aliases, limit, protected):
    signed_in("manager")
    assert client.post(path, json={"name": "я" * limit}, headers=SPA).status_code == 201
    for body, field in (
        ({"name": "я" * (limit + 1)}, "name"),
        ({"name": "   "}, "name"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": 42}, "name"),
        ({}, "name"),
        ({"name": "x", "extra": 1}, "extra"),
    ):
        error = assert_error(client.post(path, json=body, headers=SPA), 422, "validation_error")
        assert field in error["errors"], (body, error)
        assert "Название" in error["detail"] or field == "extra"
    assert_error(client.post(path, data="[", content_type="application/json", headers=SPA), 400, "bad_request")


@pytest.mark.parametrize("path, aliases, limit, protected", LOOKUPS)
def test_duplicate_names_are_409_case_sensitively(client, signed_in, path, aliases, limit, protected):
    signed_in("admin")
    first = client.post(path, json={"name": "Дубль"}, headers=SPA).json
    body = assert_error(client.post(path, json={"name": " Дубль "}, headers=SPA), 409, "duplicate")
    assert "Дубль" in body["detail"] and "уже существует" in body["detail"]
    other = client.post(path, json={"name": "дубль"}, headers=SPA)  # unique as the database says
    assert other.status_code == 201
    assert_error(client.put(f"{path}/{other.json['id']}", json={"name": "Дубль"}, headers=SPA), 409, "duplicate")
    same = client.put(f"{path}/{first['id']}", json={"name": "Дубль"}, headers=SPA)
    assert same.status_code == 200


@pytest.mark.parametrize("role, create, delete", [
    ("manager", 201, 403), ("director", 403, 403), ("callcentr", 403, 403), ("avitolog", 403, 403),
    ("master", 403, 403),
])
def test_who_may_write(client, signed_in, make_city, role, create, delete):
    city = make_city()
    signed_in(role)
    assert client.post("/api/cities", json={"name": "Новый город"}, headers=SPA).status_code == create
    assert client.put(f"/api/cities/{city.id}", json={"name": "Новое имя"}, headers=SPA).status_code == (
        200 if create == 201 else 403)
    response = client.delete(f"/api/cities/{city.id}", headers=SPA)
    assert_error(response, delete, "forbidden")


def test_protected_names(client, signed_in):
    signed_in("admin")
    protected = [(Role, "/api/roles", name) for name in ROLES] + [
        (RequestType, "/api/request-types", "Впервые"), (RequestType, "/api/request-types", "Повтор"),
        (TransactionType, "/api/transaction-types", "Приход"), (TransactionType, "/api/transaction-types", "Расход"),
    ]
    for model, path, name in protected:
        row_id = seeded_id(model, name)
        body = assert_error(client.put(f"{path}/{row_id}", json={"name": name + "1"}, headers=SPA), 409, "protected")
        assert name in body["detail"]
        assert_error(client.delete(f"{path}/{row_id}/", headers=SPA), 409, "protected")
        assert client.put(f"{path}/{row_id}", json={"name": name}, headers=SPA).status_code == 200  # unchanged
        assert seeded_id(model, name) == row_id


def test_city_in_use(client, signed_in, make_city):
    admin = signed_in("admin")
    city = make_city("Орёл")
    make_request(city.id)
    create_user("master", city_id=city.id)
    body = assert_error(client.delete(f"/api/cities/{city.id}", headers=SPA), 409, "in_use")
    assert body["detail"] == "Город используется: заявки, пользователи"

    other = make_city("Курск")
    Session.add(Transaction(city_id=other.id, transaction_type_id=seeded_id(TransactionType, "Расход"),
                            amount=Decimal("-10"), specified_date=date(2025, 1, 1), created_by_id=admin.id))
    Session.add(AdvertisingCampaign(city_id=other.id, name="РК", phone_number="123456", phone="123456"))
    Session.commit()
    body = assert_error(client.delete(f"/api/cities/{other.id}", headers=SPA), 409, "in_use")
    assert body["detail"] == "Город используется: операции кассы, рекламные кампании"
    assert client.get(f"/api/cities/{other.id}").status_code == 200


def test_other_lookups_in_use(client, signed_in, make_city):
    signed_in("admin")
    city = make_city()

    role_id = client.post("/api/roles", json={"name": "stazher"}, headers=SPA).json["id"]
    user = create_user("master")
    user.role_id = role_id
    Session.commit()
    body = assert_error(client.delete(f"/api/roles/{role_id}", headers=SPA), 409, "in_use")
    assert body["detail"] == "Роль используется: пользователи"

    type_id = client.post("/api/request-types", json={"name": "Гарантия"}, headers=SPA).json["id"]
    direction_id = client.post("/api/directions", json={"name": "Окна"}, headers=SPA).json["id"]
    make_request(city.id, request_type_id=type_id, direction_id=direction_id)
    body = assert_error(client.delete(f"/api/request-types/{type_id}", headers=SPA), 409, "in_use")
    assert body["detail"] == "Тип заявки используется: заявки"
    body = assert_error(client.delete(f"/api/directions/{direction_id}", headers=SPA), 409, "in_use")
    assert body["detail"] == "Направление используется: заявки"
    assert Session.get(Direction, direction_id) is not None

    kind_id = client.post("/api/transaction-types", json={"name": "Инкассация"}, headers=SPA).json["id"]
    Session.add(Transaction(city_id=city.id, transaction_type_id=kind_id, amount=Decimal("5"),
                            specified_date=date(2025, 1, 1)))
    Session.commit()
    body = assert_error(client.delete(f"/api/transaction-types/{kind_id}", headers=SPA), 409, "in_use")
    assert body["detail"] == "Тип операции используется: операции кассы"


# ---- advertising campaigns ------------------------------------------------------------------------

CAMPAIGN_PATHS = ("/api/requests/advertising-campaigns", "/api/advertising-campaigns")


def new_campaign(client, city_id: int, phone: str = "+7 (999) 123-45-67", name: str = "Авито Москва",
                 prefix: str = CAMPAIGN_PATHS[0], **extra):
    return client.post(prefix + "/", json={"city_id": city_id, "name": name, "phone_number": phone, **extra},
                       headers=SPA)


@pytest.mark.parametrize("prefix", CAMPAIGN_PATHS)
def test_campaign_spa_body_and_fields(client, signed_in, make_city, prefix):
    city = make_city("Москва")
    signed_in("manager")
    response = new_campaign(client, city.id, prefix=prefix)
    assert response.status_code == 201, response.json
    body = response.json
    assert body["name"] == "Авито Москва"
    assert body["phone_number"] == "+7 (999) 123-45-67"
    assert body["phone"] == "79991234567"
    assert body["city_id"] == city.id and body["city"] == {"id": city.id, "name": "Москва"}
    assert body["is_active"] is True
    assert body["created_at"]
    assert client.get(f"{prefix}/{body['id']}/").json == body
    assert body in client.get(prefix + "/").json


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_campaigns(client, signed_in, make_city, role):
    city = make_city()
    Session.add(AdvertisingCampaign(city_id=city.id, name="Яндекс", phone_number="8 800 000-00-01",
                                    phone="78000000001"))
    Session.commit()
    signed_in(role, city_id=make_city().id if role in ("director", "master") else None)
    for prefix in CAMPAIGN_PATHS:
        response = client.get(prefix + "/")
        assert response.status_code == 200
        assert [row["name"] for row in response.json] == ["Яндекс"]  # directors see every city's campaigns


@pytest.mark.parametrize("role", ["director", "callcentr", "avitolog", "master"])
def test_only_admin_and_manager_change_campaigns(client, signed_in, make_city, role):
    city = make_city()
    campaign = AdvertisingCampaign(city_id=city.id, name="РК", phone_number="123456", phone="123456")
    Session.add(campaign)
    Session.commit()
    signed_in(role, city_id=city.id if role in ("director", "master") else None)
    assert_error(new_campaign(client, city.id), 403, "forbidden")
    path = f"{CAMPAIGN_PATHS[0]}/{campaign.id}/"
    assert_error(client.put(path, json={"name": "x"}, headers=SPA), 403, "forbidden")
    assert_error(client.delete(path, headers=SPA), 403, "forbidden")


def test_campaign_update_and_delete_with_trailing_slash(client, signed_in, make_city):
    city, other = make_city("Москва"), make_city("Самара")
    signed_in("admin")
    campaign_id = new_campaign(client, city.id).json["id"]
    path = f"/api/requests/advertising-campaigns/{campaign_id}/"
    updated = client.put(path, json={"name": "  Авито Самара ", "city_id": other.id}, headers=SPA)
    assert updated.status_code == 200, updated.json
    assert updated.json["name"] == "Авито Самара"
    assert updated.json["city"] == {"id": other.id, "name": "Самара"}
    assert updated.json["phone_number"] == "+7 (999) 123-45-67"  # not sent, not changed
    updated = client.put(path, json={"phone_number": "8 (912) 345-67-89"}, headers=SPA)
    assert updated.json["phone"] == "79123456789" and updated.json["name"] == "Авито Самара"
    assert client.delete(path, headers=SPA).status_code == 200
    assert_error(client.get(path), 404, "not_found")
    assert_error(client.put(path, json={"name": "x"}, headers=SPA), 404, "not_found")
    assert_error(client.delete(path, headers=SPA), 404, "not_found")


def test_campaign_validation(client, signed_in, make_city):
    city = make_city()
    signed_in("manager")
    cases = [
        ({"name": "РК", "phone_number": "123456"}, "city_id"),
        ({"city_id": 0, "name": "РК", "phone_number": "123456"}, "city_id"),
        ({"city_id": "abc", "name": "РК", "phone_number": "123456"}, "city_id"),
        ({"city_id": city.id, "name": "", "phone_number": "123456"}, "name"),
        ({"city_id": city.id, "name": "я" * 201, "phone_number": "123456"}, "name"),
        ({"city_id": city.id, "name": "РК", "phone_number": "звоните"}, "phone_number"),
        ({"city_id": city.id, "name": "РК"}, "phone_number"),
        ({"city_id": city.id, "name": "РК", "phone_number": "123456", "is_active": "maybe"}, "is_active"),
    ]
    for body, field in cases:
        error = assert_error(client.post(CAMPAIGN_PATHS[0] + "/", json=body, headers=SPA), 422, "validation_error")
        assert field in error["errors"], (body, error)
    error = assert_error(new_campaign(client, 999_999), 422, "validation_error")
    assert error["detail"] == "Город не найден"
    error = assert_error(new_campaign(client, 99_999_999_999), 422, "validation_error")
    assert "city_id" in error["errors"]
    campaign_id = new_campaign(client, city.id).json["id"]
    error = assert_error(client.put(f"{CAMPAIGN_PATHS[0]}/{campaign_id}", json={"name": ""}, headers=SPA),
                         422, "validation_error")
    assert "Название" in error["detail"]
    assert_error(client.put(f"{CAMPAIGN_PATHS[0]}/{campaign_id}", json={"city_id": 999_999}, headers=SPA),
                 422, "validation_error")


def test_one_active_campaign_per_line(client, signed_in, make_city):
    moscow, samara = make_city(), make_city()
    signed_in("admin")
    first = new_campaign(client, moscow.id, phone="+7 (999) 123-45-67").json
    taken = "Этот номер уже используется активной рекламной кампанией"
    body = assert_error(new_campaign(client, samara.id, phone="8 999 123 45 67", name="Другая"), 409, "duplicate")
    assert body["detail"] == taken
    # an inactive campaign may keep the line; reactivating it while the line is taken is refused
    second = new_campaign(client, samara.id, phone="89991234567", name="Архив", is_active=False)
    assert second.status_code == 201 and second.json["is_active"] is False
    path = f"{CAMPAIGN_PATHS[0]}/{second.json['id']}/"
    assert assert_error(client.put(path, json={"is_active": True}, headers=SPA), 409, "duplicate")["detail"] == taken
    other = new_campaign(client, samara.id, phone="+7 999 000-00-00", name="Третья").json
    moved = client.put(f"{CAMPAIGN_PATHS[0]}/{other['id']}", json={"phone_number": "9991234567"}, headers=SPA)
    assert_error(moved, 409, "duplicate")
    # the first one switched off frees the line
    assert client.put(f"{CAMPAIGN_PATHS[0]}/{first['id']}", json={"is_active": False}, headers=SPA).status_code == 200
    assert client.put(path, json={"is_active": True}, headers=SPA).json["is_active"] is True


def test_campaign_in_use_is_not_deleted(client, signed_in, make_city):
    city = make_city()
    signed_in("manager")
    campaign_id = new_campaign(client, city.id).json["id"]
    make_request(city.id, advertising_campaign_id=campaign_id)
    body = assert_error(client.delete(f"{CAMPAIGN_PATHS[0]}/{campaign_id}/", headers=SPA), 409, "in_use")
    assert body["detail"] == "Кампания используется в заявках; отключите её (is_active=false)"
    assert Session.get(AdvertisingCampaign, campaign_id) is not None

    by_call = new_campaign(client, city.id, phone="123456", name="Звонки").json["id"]
    Session.add(Call(entry_id="entry-1", campaign_id=by_call))
    Session.commit()
    body = assert_error(client.delete(f"{CAMPAIGN_PATHS[0]}/{by_call}", headers=SPA), 409, "in_use")
    assert "звонках" in body["detail"]


def test_campaign_filters(client, signed_in, make_city):
    moscow, samara = make_city("Москва"), make_city("Самара")
    signed_in("callcentr")
    for city, name, phone, active in ((moscow, "Авито Москва", "79991112233", True),
                                      (moscow, "Старая", "79994445566", False),
                                      (samara, "Яндекс Самара", "78462223344", True)):
        Session.add(AdvertisingCampaign(city_id=city.id, name=name, phone_number=phone, phone=phone,
                                        is_active=active))
    Session.commit()

    def names(query: str) -> list[str]:
        response = client.get(CAMPAIGN_PATHS[0] + "/" + query)
        assert response.status_code == 200, response.json
        return [row["name"] for row in response.json]

    assert names("") == ["Авито Москва", "Старая", "Яндекс Самара"]
    assert names(f"?city_id={moscow.id}") == ["Авито Москва", "Старая"]
    assert names("?is_active=true") == ["Авито Москва", "Яндекс Самара"]
    assert names("?is_active=false") == ["Старая"]
    assert names("?search=самара") == ["Яндекс Самара"]
    assert names("?search=+7 (999) 444") == ["Старая"]
    assert names("?search=&city_id=&is_active=") == ["Авито Москва", "Старая", "Яндекс Самара"]
    assert names("?search=100%25") == []
    assert "city_id" in assert_error(client.get(CAMPAIGN_PATHS[0] + "?city_id=abc"), 422, "validation_error")["errors"]
