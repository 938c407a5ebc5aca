"""The city cash book: the SPA's bodies, signs, aliases, validation, city scope, lists and balance."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from models import Request, RequestType, Session, Transaction, TransactionType
from models.core.business_time import today_local
from tests.factories import make_transaction, seeded_id
from tests.support import SPA

URL = "/api/transactions/"


@pytest.fixture()
def income_id(db) -> int:
    return seeded_id(TransactionType, "Приход")


@pytest.fixture()
def expense_id(db) -> int:
    return seeded_id(TransactionType, "Расход")


def book(city_id: int, kind_id: int, amount: str, day: date = date(2025, 3, 10), **kwargs) -> Transaction:
    return make_transaction(city_id, transaction_type_id=kind_id, amount=amount, specified_date=day, **kwargs)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == code, body
    assert body["detail"] and any("а" <= ch.lower() <= "я" for ch in body["detail"]), body
    return body


def assert_invalid(response, field: str) -> dict:
    body = assert_error(response, 422, "validation_error")
    assert field in body["errors"], body
    assert all(any("а" <= ch.lower() <= "я" for ch in message) for message in body["errors"][field]), body
    return body


# ---- the SPA's bodies -------------------------------------------------------------------------------

def test_transaction_create_page_body(client, signed_in, make_city, income_id):
    """TransactionCreatePage: type_id, numeric amount, description, no date."""
    city = make_city("Москва")
    user = signed_in("manager")
    response = client.post(URL, json={"city_id": city.id, "type_id": income_id, "amount": 1500,
                                      "description": "Оплата"}, headers=SPA)
    assert response.status_code == 201, response.json
    body = response.json
    assert body["amount"] == 1500 and isinstance(body["amount"], (int, float))
    assert body["specified_date"] == today_local().isoformat()
    assert body["notes"] == body["description"] == "Оплата"
    assert body["city_id"] == city.id and body["city"] == {"id": city.id, "name": "Москва"}
    assert body["transaction_type_id"] == body["type_id"] == income_id
    assert body["transaction_type"] == body["type"] == {"id": income_id, "name": "Приход"}
    assert body["payment_reason"] is None and body["request_id"] is None
    assert body["file_path"] is None and body["expense_receipt_path"] is None
    assert body["created_by_id"] == user.id
    assert body["created_at"] and body["updated_at"]
    assert client.get(f"/api/transactions/{body['id']}").json == body


@pytest.mark.parametrize("amount, stored", [("-1500", -1500), ("2500", -2500), ("-1 234,56", -1234.56),
                                            (-99.99, -99.99), ("0.5", -0.5)])
def test_cash_pages_body(client, signed_in, make_city, expense_id, amount, stored):
    """CashExpenseAddPage / CashIncomeAddPage: transaction_type_id, string amount, date, notes."""
    city = make_city()
    signed_in("admin")
    response = client.post(URL, json={"city_id": city.id, "transaction_type_id": expense_id, "amount": amount,
                                      "specified_date": "2025-07-21", "notes": "Бензин"}, headers=SPA)
    assert response.status_code == 201, response.json
    assert response.json["amount"] == stored  # an expense type: negative, whatever sign was sent
    assert response.json["specified_date"] == "2025-07-21"
    assert response.json["notes"] == "Бензин"
    row = Session.get(Transaction, response.json["id"])
    Session.refresh(row)
    assert row.amount == Decimal(str(stored)).quantize(Decimal("0.01"))


def test_create_with_old_names_payment_reason_and_blank_date(client, signed_in, make_city, income_id):
    city = make_city()
    signed_in("manager")
    response = client.post(URL, json={"city_id": str(city.id), "type_id": income_id, "amount": "100",
                                      "transaction_date": "2025-01-31", "description": "  ",
                                      "payment_reason": "Договор 5"}, headers=SPA)
    assert response.status_code == 201, response.json
    assert response.json["specified_date"] == "2025-01-31"
    assert response.json["notes"] is None and response.json["payment_reason"] == "Договор 5"
    blank = client.post(URL, json={"city_id": city.id, "transaction_type_id": income_id, "amount": 1,
                                   "specified_date": ""}, headers=SPA)
    assert blank.status_code == 201 and blank.json["specified_date"] == today_local().isoformat()


def test_edit_page_body_is_a_partial_update(client, signed_in, make_city, income_id, expense_id):
    """TransactionEditPage: city_id, transaction_type_id, amount, notes, specified_date?, payment_reason?"""
    city, other = make_city(), make_city()
    signed_in("manager")
    created = client.post(URL, json={"city_id": city.id, "transaction_type_id": expense_id, "amount": "-1500",
                                     "specified_date": "2025-07-21", "notes": "Бензин"}, headers=SPA).json
    path = f"/api/transactions/{created['id']}"
    response = client.put(path, json={"city_id": other.id, "transaction_type_id": expense_id, "amount": -1700,
                                      "notes": "Бензин и масло", "payment_reason": "Чек 12"}, headers=SPA)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["city_id"] == other.id and body["amount"] == -1700
    assert body["notes"] == body["description"] == "Бензин и масло"
    assert body["payment_reason"] == "Чек 12"
    assert body["specified_date"] == "2025-07-21"  # not sent, not changed
    # old names; '' date = not given; only what is sent changes
    response = client.put(path + "/", json={"description": "Масло", "type_id": income_id,
                                            "transaction_date": "2025-08-01"}, headers=SPA)
    assert response.status_code == 200
    assert response.json["notes"] == "Масло" and response.json["type"]["name"] == "Приход"
    # an income type now: the same amount, positive
    assert response.json["specified_date"] == "2025-08-01" and response.json["amount"] == 1700
    response = client.put(path, json={"specified_date": "", "payment_reason": ""}, headers=SPA)
    assert response.json["specified_date"] == "2025-08-01" and response.json["payment_reason"] is None
    assert client.put(path, json={}, headers=SPA).status_code == 200


def test_delete(client, signed_in, make_city, income_id):
    city = make_city()
    signed_in("manager")
    transaction = book(city.id, income_id, "10")
    assert client.delete(f"/api/transactions/{transaction.id}/", headers=SPA).status_code == 200
    assert Session.get(Transaction, transaction.id) is None
    for method in ("get", "put", "delete"):
        kwargs = {"json": {"amount": 5}} if method == "put" else {}
        body = assert_error(getattr(client, method)(f"/api/transactions/{transaction.id}", headers=SPA, **kwargs),
                            404, "not_found")
        assert body["detail"] == "Операция не найдена"


def test_income_of_a_request_is_not_changed_here(client, signed_in, make_city, income_id):
    city = make_city()
    signed_in("admin")
    request = Request(city_id=city.id, client_phone="79990000000", status="Готово",
                      request_type_id=Session.scalar(select(RequestType.id).where(RequestType.name == "Впервые")))
    Session.add(request)
    Session.commit()
    transaction = book(city.id, income_id, "2500", request_id=request.id)
    path = f"/api/transactions/{transaction.id}"
    body = assert_error(client.put(path, json={"amount": 1}, headers=SPA), 409, "request_income")
    assert body["detail"] == "Приход по заявке меняется через заявку"
    assert_error(client.delete(path, headers=SPA), 409, "request_income")
    assert client.get(path).json["request_id"] == request.id
    assert [row["id"] for row in client.get(URL + f"?request_id={request.id}").json] == [transaction.id]


# ---- validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    ({"city_id": None}, "city_id"),
    ({"city_id": 0}, "city_id"),
    ({"city_id": "Москва"}, "city_id"),
    ({"city_id": 1.5}, "city_id"),
    ({"city_id": True}, "city_id"),
    ({"city_id": 99_999_999_999}, "city_id"),
    ({"transaction_type_id": None}, "transaction_type_id"),
    ({"transaction_type_id": [1]}, "transaction_type_id"),
    ({"amount": 0}, "amount"),
    ({"amount": "0.00"}, "amount"),
    ({"amount": "0.001"}, "amount"),
    ({"amount": "abc"}, "amount"),
    ({"amount": ""}, "amount"),
    ({"amount": None}, "amount"),
    ({"amount": True}, "amount"),
    ({"amount": "NaN"}, "amount"),
    ({"amount": "1e20"}, "amount"),
    ({"amount": 100_000_000_000}, "amount"),
    ({"specified_date": "2025-13-01"}, "specified_date"),
    ({"specified_date": "вчера"}, "specified_date"),
    ({"specified_date": "1800-01-01"}, "specified_date"),
    ({"specified_date": 20250101}, "specified_date"),
    ({"notes": 5}, "notes"),
    ({"notes": "я" * 5001}, "notes"),
    ({"payment_reason": ["x"]}, "payment_reason"),
    ({"status": "completed"}, "status"),
])
def test_create_validation(client, signed_in, make_city, income_id, change, field):
    city = make_city()
    signed_in("admin")
    payload = {"city_id": city.id, "transaction_type_id": income_id, "amount": "100", "notes": "x"}
    payload.update(change)
    body = assert_invalid(client.post(URL, json=payload, headers=SPA), field)
    assert body["detail"].startswith("Ошибка в данных запроса")
    assert Session.scalar(select(Transaction.id)) is None  # nothing half-written


def test_missing_fields_and_unknown_references(client, signed_in, make_city, income_id):
    city = make_city()
    signed_in("manager")
    body = assert_error(client.post(URL, json={}, headers=SPA), 422, "validation_error")
    assert {"city_id", "amount"} <= set(body["errors"])
    assert_invalid(client.post(URL, json={"city_id": city.id, "amount": 5}, headers=SPA), "transaction_type_id")
    assert_invalid(client.post(URL, json=[1], headers=SPA), "_schema")
    body = assert_invalid(client.post(URL, json={"city_id": 987654, "type_id": income_id, "amount": 5}, headers=SPA),
                          "city_id")
    assert body["detail"] == "Город не найден"
    body = assert_invalid(client.post(URL, json={"city_id": city.id, "type_id": 987654, "amount": 5}, headers=SPA),
                          "transaction_type_id")
    assert body["detail"] == "Тип операции не найден"
    created = client.post(URL, json={"city_id": city.id, "type_id": income_id, "amount": 5}, headers=SPA).json
    path = f"/api/transactions/{created['id']}"
    assert_invalid(client.put(path, json={"amount": 0}, headers=SPA), "amount")
    assert_invalid(client.put(path, json={"amount": None}, headers=SPA), "amount")
    assert_invalid(client.put(path, json={"city_id": 987654}, headers=SPA), "city_id")
    assert_invalid(client.put(path, json={"transaction_type_id": 0}, headers=SPA), "transaction_type_id")
    assert_invalid(client.put(path, json={"specified_date": "31.12.2025"}, headers=SPA), "specified_date")
    assert client.get(path).json["amount"] == 5


def test_huge_amount_at_the_limit(client, signed_in, make_city, expense_id):
    city = make_city()
    signed_in("admin")
    response = client.post(URL, json={"city_id": city.id, "type_id": expense_id, "amount": "-9999999999.99"},
                           headers=SPA)
    assert response.status_code == 201
    assert Decimal(str(response.json["amount"])) == Decimal("-9999999999.99")
    body = assert_invalid(client.post(URL, json={"city_id": city.id, "type_id": expense_id,
                                                 "amount": "10000000000"}, headers=SPA), "amount")
    assert "Сумма" in body["detail"]


# ---- who sees what --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["callcentr", "avitolog"])
def test_other_roles_have_no_cash(client, signed_in, make_city, income_id, role):
    city = make_city()
    transaction = book(city.id, income_id, "10")
    signed_in(role)
    path = f"/api/transactions/{transaction.id}"
    assert_error(client.get(URL), 403, "forbidden")
    assert_error(client.get(path), 403, "forbidden")
    assert_error(client.get("/api/transactions/balance"), 403, "forbidden")
    assert_error(client.post(URL, json={"city_id": city.id, "type_id": income_id, "amount": 1}, headers=SPA),
                 403, "forbidden")
    assert_error(client.put(path, json={"amount": 1}, headers=SPA), 403, "forbidden")
    assert_error(client.delete(path, headers=SPA), 403, "forbidden")
    # the directories the cash pages need are readable by everyone
    assert client.get("/api/transactions/transaction-types/").status_code == 200


def test_cash_needs_a_session(client):
    assert_error(client.get(URL), 401, "not_authenticated")
    assert_error(client.post(URL, json={}), 401, "not_authenticated")


def test_director_is_held_to_their_city(client, signed_in, make_city, income_id, expense_id):
    mine, theirs = make_city("Мой"), make_city("Чужой")
    own = book(mine.id, income_id, "100")
    foreign = book(theirs.id, expense_id, "-50")
    signed_in("director", city_id=mine.id)

    assert [row["id"] for row in client.get(URL).json] == [own.id]
    assert client.get(URL + f"?city_id={theirs.id}").json == []
    assert client.get(f"/api/transactions/{own.id}").status_code == 200
    assert_error(client.get(f"/api/transactions/{foreign.id}"), 404, "not_found")
    assert_error(client.put(f"/api/transactions/{foreign.id}", json={"amount": 1}, headers=SPA), 404, "not_found")
    assert_error(client.delete(f"/api/transactions/{foreign.id}", headers=SPA), 404, "not_found")

    body = assert_error(client.post(URL, json={"city_id": theirs.id, "type_id": income_id, "amount": 1},
                                    headers=SPA), 403, "other_city")
    assert "город" in body["detail"]
    assert_error(client.post(URL, json={"city_id": 987654, "type_id": income_id, "amount": 1}, headers=SPA),
                 403, "other_city")
    assert_error(client.put(f"/api/transactions/{own.id}", json={"city_id": theirs.id}, headers=SPA),
                 403, "other_city")
    assert Session.get(Transaction, own.id).city_id == mine.id

    created = client.post(URL, json={"city_id": mine.id, "type_id": expense_id, "amount": "-20"}, headers=SPA)
    assert created.status_code == 201
    assert client.put(f"/api/transactions/{own.id}", json={"amount": 150}, headers=SPA).json["amount"] == 150
    assert client.delete(f"/api/transactions/{created.json['id']}", headers=SPA).status_code == 200

    balance = client.get("/api/transactions/balance").json
    assert balance["total"]["balance"] == 150
    assert [row["city_id"] for row in balance["cities"]] == [mine.id]


def test_director_without_a_city_sees_every_city(client, signed_in, make_city, income_id):
    first, second = make_city(), make_city()
    book(first.id, income_id, "1")
    book(second.id, income_id, "2")
    signed_in("director", city_id=None)
    assert len(client.get(URL).json) == 2
    assert client.post(URL, json={"city_id": second.id, "type_id": income_id, "amount": 3},
                       headers=SPA).status_code == 201


# ---- lists ------------------------------------------------------------------------------------------------

def test_complete_list_and_pages(client, signed_in, make_city, income_id, expense_id):
    city = make_city()
    rows = [Transaction(city_id=city.id, transaction_type_id=income_id if i % 2 else expense_id,
                        amount=Decimal(i + 1) if i % 2 else -Decimal(i + 1),
                        specified_date=date(2025, 1, 1 + i % 28)) for i in range(250)]
    Session.add_all(rows)
    Session.commit()
    signed_in("manager")

    response = client.get(URL)
    assert response.status_code == 200 and "X-Pagination" not in response.headers
    listed = response.json
    assert len(listed) == 250 and {row["id"] for row in listed} == {row.id for row in rows}
    keys = [(row["specified_date"], row["id"]) for row in listed]
    assert keys == sorted(keys, reverse=True)  # specified_date desc, id desc
    assert all(isinstance(row["amount"], (int, float)) for row in listed)

    page = client.get(URL + "?page=2&page_size=100")
    assert page.status_code == 200
    assert [row["id"] for row in page.json] == [row["id"] for row in listed[100:200]]
    pagination = json.loads(page.headers["X-Pagination"])
    assert pagination["total"] == 250 and pagination["total_pages"] == 3 and pagination["page"] == 2


def test_list_filters(client, signed_in, make_city, income_id, expense_id):
    moscow, samara = make_city(), make_city()
    a = book(moscow.id, income_id, "100", date(2025, 3, 1), notes="Заказ 7", payment_reason="Наличные")
    b = book(moscow.id, expense_id, "-40", date(2025, 3, 15), notes="Бензин")
    c = book(samara.id, expense_id, "-5", date(2025, 3, 31), payment_reason="Безнал 100%")
    signed_in("admin")

    def ids(query: str) -> list[int]:
        response = client.get(URL + query)
        assert response.status_code == 200, response.json
        return [row["id"] for row in response.json]

    assert ids("") == [c.id, b.id, a.id]
    assert ids(f"?city_id={moscow.id}") == [b.id, a.id]
    assert ids(f"?transaction_type_id={expense_id}") == [c.id, b.id]
    assert ids(f"?type_id={income_id}") == [a.id]
    assert ids("?date_from=2025-03-15&date_to=2025-03-31") == [c.id, b.id]
    assert ids("?date_from=2025-03-01&date_to=2025-03-01") == [a.id]
    assert ids("?kind=income") == [a.id]
    assert ids("?kind=expense") == [c.id, b.id]
    assert ids("?search=бензин") == [b.id]
    assert ids("?search=наличн") == [a.id]
    assert ids("?search=100%25") == [c.id]
    assert ids("?city_id=&transaction_type_id=&type_id=&date_from=&date_to=&kind=&request_id=&search=") \
        == [c.id, b.id, a.id]
    assert ids("?_=12345") == [c.id, b.id, a.id]  # unknown query parameters are ignored

    for query, field in (("?date_from=2025-02-30", "date_from"), ("?date_to=abc", "date_to"),
                         ("?kind=gift", "kind"), ("?city_id=abc", "city_id"), ("?city_id=-3", "city_id"),
                         ("?date_from=2025-04-01&date_to=2025-03-01", "date_to"), ("?page=0", "page"),
                         ("?request_id=99999999999", "request_id")):
        assert_invalid(client.get(URL + query), field)


# ---- balance --------------------------------------------------------------------------------------------

def test_balance_sums_by_city_type_and_range(client, signed_in, make_city, income_id, expense_id):
    moscow, samara, empty = make_city("Москва"), make_city("Самара"), make_city("Пустой")
    book(moscow.id, income_id, "1000.10", date(2025, 3, 1))
    book(moscow.id, income_id, "0.20", date(2025, 3, 31))
    book(moscow.id, expense_id, "-300.05", date(2025, 3, 15))
    book(samara.id, expense_id, "-0.10", date(2025, 3, 2))
    book(samara.id, income_id, "0.10", date(2025, 2, 28))  # outside the range
    book(samara.id, income_id, "5", date(2025, 4, 1))  # outside the range
    signed_in("manager")

    response = client.get("/api/transactions/balance/?date_from=2025-03-01&date_to=2025-03-31")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["date_from"] == "2025-03-01" and body["date_to"] == "2025-03-31"

    def money(value) -> Decimal:
        return Decimal(str(value))

    total = body["total"]
    assert money(total["income"]) == Decimal("1000.30")
    assert money(total["expense"]) == Decimal("-300.15")
    assert money(total["balance"]) == Decimal("700.15")
    assert total["count"] == 4

    cities = {row["city_name"]: row for row in body["cities"]}
    assert set(cities) >= {"Москва", "Самара", "Пустой"}
    assert cities["Москва"]["city_id"] == moscow.id
    assert (money(cities["Москва"]["income"]), money(cities["Москва"]["expense"]),
            money(cities["Москва"]["balance"]), cities["Москва"]["count"]) == (
        Decimal("1000.30"), Decimal("-300.05"), Decimal("700.25"), 3)
    assert (money(cities["Самара"]["balance"]), cities["Самара"]["count"]) == (Decimal("-0.10"), 1)
    assert (cities["Пустой"]["balance"], cities["Пустой"]["count"]) == (0, 0)
    assert cities["Пустой"]["city_id"] == empty.id

    types = {row["name"]: row for row in body["types"]}
    assert types["Приход"]["transaction_type_id"] == income_id
    assert (money(types["Приход"]["income"]), types["Приход"]["count"]) == (Decimal("1000.30"), 2)
    assert (money(types["Расход"]["expense"]), types["Расход"]["count"]) == (Decimal("-300.15"), 2)

    everything = client.get("/api/transactions/balance").json
    assert everything["date_from"] is None and everything["total"]["count"] == 6
    assert money(everything["total"]["balance"]) == Decimal("705.25")
    one_city = client.get(f"/api/transactions/balance?city_id={samara.id}&date_from=&date_to=").json
    assert [row["city_id"] for row in one_city["cities"]] == [samara.id]
    assert money(one_city["total"]["balance"]) == Decimal("5.00")
    assert_invalid(client.get("/api/transactions/balance?date_from=2025-04-01&date_to=2025-03-01"), "date_to")
    assert_invalid(client.get("/api/transactions/balance?date_from=01.03.2025"), "date_from")


def test_balance_is_exact_over_many_rows(client, signed_in, make_city, income_id):
    city = make_city()
    Session.add_all([Transaction(city_id=city.id, transaction_type_id=income_id, amount=Decimal("0.10"),
                                 specified_date=date(2025, 1, 1)) for _ in range(1000)])
    Session.commit()
    signed_in("admin")
    body = client.get(f"/api/transactions/balance?city_id={city.id}").json
    assert Decimal(str(body["total"]["income"])) == Decimal("100.00")
    assert body["total"]["count"] == 1000


def test_list_rows_match_the_single_operation(client, signed_in, make_city, income_id, expense_id):
    """The list (streamed and paged, its documents looked up per page) and one operation read the same."""
    from datetime import datetime, timezone

    signed_in("manager")
    city = make_city("Москва")
    rows = [
        book(city.id, expense_id, "-1500.00", date(2025, 1, 31), notes='Чек "№1"\n\\ <b>',
             created_at=datetime(2025, 1, 31, 8, 0, tzinfo=timezone.utc)),
        book(city.id, income_id, "0.05", date(2025, 2, 1), payment_reason="Аванс",
             created_at=datetime(2025, 2, 1, 8, 0, 0, 250000, tzinfo=timezone.utc)),
    ]
    singles = {t.id: client.get(f"{URL}{t.id}").json for t in rows}
    streamed = {t["id"]: t for t in client.get(URL).json}
    paged = {t["id"]: t for t in client.get(f"{URL}?page=1&page_size=1000").json}
    for transaction_id, single in singles.items():
        assert streamed[transaction_id] == single == paged[transaction_id]
    assert streamed[rows[0].id]["amount"] == -1500 and streamed[rows[1].id]["amount"] == 0.05
    assert streamed[rows[1].id]["created_at"] == "2025-02-01T08:00:00.250000+00:00"
    assert streamed[rows[0].id]["specified_date"] == "2025-01-31"
    assert streamed[rows[0].id]["notes"] == 'Чек "№1"\n\\ <b>' == streamed[rows[0].id]["description"]
