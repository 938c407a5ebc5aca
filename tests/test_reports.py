"""Reports on a small known data set: exact figures, date edges, scoping, CSV, bad filters."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from models import AdvertisingCampaign, Request, RequestType, Transaction, TransactionType
from models.core.business_time import business_tz
from models.core.enums import REQUEST_STATUSES
from tests.support import login

RANGE = {"date_from": "2025-03-01", "date_to": "2025-03-31"}
ZERO_STATUSES = {status: 0 for status in REQUEST_STATUSES}


def local(text: str) -> datetime:
    """A business-local wall-clock time."""
    return datetime.fromisoformat(text).replace(tzinfo=business_tz())


@pytest.fixture()
def data(db, make_city, make_user):
    """Two cities, three masters, three campaigns, requests around the edges of March 2025 and a
    cash book with history before and after it.

    In range (2025-03-01 .. 2025-03-31, Moscow time):
      city A: r1 Готово 10000/2000, r2 Готово 5000/1000, r3 В работе, r4 Новая (00:10 on the 1st),
              r5 Отказ (23:30 on the 31st)
      city B: r8 Готово 3000/500, r9 Принял, r10 НеЗаказ, r11 Модерн
    Outside: r6 Ожидает at 00:10 on April 1st, r7 Готово at 23:50 on February 28th, and one
    request created now (city B).
    """
    a, b = make_city("Альфа"), make_city("Бета")
    m_a1 = make_user("master", city_id=a.id, full_name="Мастер Альфа-1")
    m_a2 = make_user("master", city_id=a.id, full_name="Мастер Альфа-2", status="inactive")
    m_b1 = make_user("master", city_id=b.id, full_name="Мастер Бета-1")
    c_a = AdvertisingCampaign(city_id=a.id, name="Авито Альфа", phone_number="+7 900 000-00-01", phone="79000000001")
    c_a2 = AdvertisingCampaign(city_id=a.id, name="Листовки Альфа", phone_number="+7 900 000-00-03",
                               phone="79000000003")
    c_b = AdvertisingCampaign(city_id=b.id, name="Сайт Бета", phone_number="+7 900 000-00-02", phone="79000000002")
    db.add_all([c_a, c_a2, c_b])
    db.flush()
    first = db.scalar(select(RequestType).where(RequestType.name == "Впервые"))

    def request(number, city, status, created, *, master=None, campaign=None, operator=None, money=None):
        result, expenses, net, handover = money or (None, 0, 0, 0)
        created_at = local(created)
        row = Request(
            city_id=city.id, request_type_id=first.id, status=status, master_id=master and master.id,
            advertising_campaign_id=campaign and campaign.id, call_center_name=operator,
            client_phone=f"79120000{number:03d}", client_name=f"Клиент {number}",
            result=result, expenses=Decimal(expenses), net_amount=Decimal(net), master_handover=Decimal(handover),
            created_at=created_at, updated_at=created_at + timedelta(hours=1),
        )
        db.add(row)
        return row

    request(1, a, "Готово", "2025-03-02T10:00", master=m_a1, campaign=c_a, operator="Анна",
            money=(Decimal(10000), 2000, 8000, 4000))
    request(2, a, "Готово", "2025-03-05T12:00", master=m_a1, campaign=c_a, operator="Анна",
            money=(Decimal(5000), 1000, 4000, 2000))
    request(3, a, "В работе", "2025-03-05T13:00", master=m_a1, campaign=c_a, operator="Борис")
    request(4, a, "Новая", "2025-03-01T00:10", operator="Анна")
    request(5, a, "Отказ", "2025-03-31T23:30", master=m_a1, campaign=c_a, operator="Борис")
    request(6, a, "Ожидает", "2025-04-01T00:10", master=m_a1, campaign=c_a, operator="Анна")
    request(7, a, "Готово", "2025-02-28T23:50", master=m_a1, campaign=c_a, operator="Анна",
            money=(Decimal(7000), 0, 7000, 3500))
    request(8, b, "Готово", "2025-03-03T08:00", master=m_b1, campaign=c_b, operator="Анна",
            money=(Decimal(3000), 500, 2500, 1250))
    request(9, b, "Принял", "2025-03-04T12:00", master=m_b1, campaign=c_b)
    request(10, b, "НеЗаказ", "2025-03-04T12:30", campaign=c_b)
    request(11, b, "Модерн", "2025-03-15T18:00")
    db.add(Request(city_id=b.id, request_type_id=first.id, client_phone="79120000099"))  # created now

    types = {t.name: t for t in db.scalars(select(TransactionType))}
    for city, amount, day in [
        (a, 15000, "2025-03-05"), (a, -3000, "2025-03-10"), (a, -500, "2025-03-31"),
        (a, 7000, "2025-02-28"), (a, 999, "2025-04-01"),
        (b, 3000, "2025-03-03"), (b, -4000, "2025-03-20"), (b, -100, "2025-01-15"),
    ]:
        kind = types["Приход" if amount > 0 else "Расход"]
        db.add(Transaction(city_id=city.id, transaction_type_id=kind.id, amount=Decimal(amount),
                           specified_date=date.fromisoformat(day)))
    db.commit()
    return {"a": a, "b": b, "m_a1": m_a1, "m_a2": m_a2, "m_b1": m_b1, "c_a": c_a, "c_a2": c_a2, "c_b": c_b,
            "types": types}


@pytest.fixture()
def as_role(client, make_user):
    def sign_in(role, city_id=None):
        login(client, make_user(role, city_id=city_id))
        return client

    return sign_in


def get(client, report, **params):
    response = client.get(f"/api/reports/{report}", query_string=params)
    assert response.status_code == 200, response.json
    return response.json


# ---- dashboard ----------------------------------------------------------------------------------

def test_dashboard_all_cities(data, as_role):
    body = get(as_role("admin"), "dashboard", **RANGE)
    assert body == {
        "requests_total": 9,
        "created_today": 1,
        "completed": 3,
        "in_progress": 2,
        "waiting": 1,
        "new": 1,
        "cancelled": 2,
        "income": 18000.0,
        "expense": 7500.0,
        "balance": 10500.0,
        "active_masters": 2,
        "cities": 2,
        "completion_rate": 33.3,
        "revenue": 18000.0,
        "handover": 7250.0,
    }
    assert all(isinstance(body[key], int) for key in ("requests_total", "completed", "cities"))
    assert all(isinstance(body[key], float) for key in ("income", "expense", "balance", "revenue"))


def test_dashboard_director_sees_their_city(data, as_role):
    body = get(as_role("director", data["a"].id), "dashboard", **RANGE)
    assert body == {
        "requests_total": 5, "created_today": 0, "completed": 2, "in_progress": 1, "waiting": 1, "new": 1,
        "cancelled": 1, "income": 15000.0, "expense": 3500.0, "balance": 11500.0, "active_masters": 1,
        "cities": 1, "completion_rate": 40.0, "revenue": 15000.0, "handover": 6000.0,
    }


def test_dashboard_city_filter_and_empty_range(data, as_role):
    client = as_role("manager")
    body = get(client, "dashboard", city_id=data["b"].id, **RANGE)
    assert (body["requests_total"], body["created_today"], body["completed"], body["cities"]) == (4, 1, 1, 1)
    assert (body["income"], body["expense"], body["balance"]) == (3000.0, 4000.0, -1000.0)
    empty = get(client, "dashboard", date_from="2024-01-01", date_to="2024-01-31")
    assert empty["requests_total"] == 0 and empty["completion_rate"] == 0.0 and empty["revenue"] == 0.0
    assert empty["created_today"] == 1  # today does not depend on the range


def test_date_range_edges(data, as_role):
    client = as_role("admin")
    assert get(client, "dashboard", date_from="2025-03-31", date_to="2025-03-31")["requests_total"] == 1  # 23:30
    assert get(client, "dashboard", date_from="2025-04-01", date_to="2025-04-01")["requests_total"] == 1  # 00:10
    assert get(client, "dashboard", date_from="2025-03-01", date_to="2025-03-01")["requests_total"] == 1  # 00:10
    assert get(client, "dashboard", date_from="2025-02-28", date_to="2025-02-28")["requests_total"] == 1  # 23:50
    # Unset bounds: everything, including the request created now.
    assert get(client, "dashboard")["requests_total"] == 12
    assert get(client, "dashboard", date_from="", date_to="", city_id="")["requests_total"] == 12
    assert get(client, "dashboard", date_to="2025-03-31")["requests_total"] == 10
    assert get(client, "dashboard", date_from="2025-03-01")["requests_total"] == 11


# ---- call centre --------------------------------------------------------------------------------

def test_callcenter(data, as_role):
    body = get(as_role("callcentr"), "callcenter", **RANGE)
    assert body["totals"] == {
        "requests": 9, "completed": 3, "in_progress": 2, "waiting": 1, "cancelled": 2, "conversion": 33.3,
        "by_status": {**ZERO_STATUSES, "Готово": 3, "В работе": 1, "Принял": 1, "Новая": 1, "Отказ": 1,
                      "НеЗаказ": 1, "Модерн": 1},
    }
    assert list(body["totals"]["by_status"]) == list(REQUEST_STATUSES)
    cities = {row["city_name"]: row for row in body["cities"]}
    assert [row["city_name"] for row in body["cities"]] == ["Альфа", "Бета"]
    assert cities["Альфа"]["city_id"] == data["a"].id
    keys = ("requests", "completed", "in_progress", "waiting", "cancelled", "conversion")
    assert {key: cities["Альфа"][key] for key in keys} == {
        "requests": 5, "completed": 2, "in_progress": 1, "waiting": 1, "cancelled": 1, "conversion": 40.0}
    assert cities["Бета"]["by_status"] == {**ZERO_STATUSES, "Готово": 1, "Принял": 1, "НеЗаказ": 1, "Модерн": 1}
    assert [(r["call_center_name"], r["requests"], r["completed"], r["conversion"]) for r in body["operators"]] == [
        ("Анна", 4, 3, 75.0), (None, 3, 0, 0.0), ("Борис", 2, 0, 0.0)]
    assert [(r["date"], r["requests"], r["completed"]) for r in body["days"]] == [
        ("2025-03-01", 1, 0), ("2025-03-02", 1, 1), ("2025-03-03", 1, 1), ("2025-03-04", 2, 0),
        ("2025-03-05", 2, 1), ("2025-03-15", 1, 0), ("2025-03-31", 1, 0)]


def test_callcenter_filters(data, as_role):
    client = as_role("manager")
    done = get(client, "callcenter", status="Готово", **RANGE)
    assert done["totals"]["requests"] == 3 and done["totals"]["conversion"] == 100.0
    assert [r["call_center_name"] for r in done["operators"]] == ["Анна"]
    by_name = get(client, "callcenter", search="клиент 1", **RANGE)  # Клиент 1, 10, 11
    assert by_name["totals"]["requests"] == 3
    by_phone = get(client, "callcenter", search="8 (912) 000-00-02", **RANGE)
    assert by_phone["totals"]["requests"] == 1 and by_phone["totals"]["completed"] == 1
    by_digits = get(client, "callcenter", search="0000008", **RANGE)
    assert by_digits["totals"]["requests"] == 1
    nothing = get(client, "callcenter", search="%", **RANGE)
    assert nothing["totals"]["requests"] == 0 and nothing["cities"] == [] and nothing["days"] == []
    assert nothing["totals"]["by_status"] == ZERO_STATUSES
    city_b = get(client, "callcenter", city_id=data["b"].id, **RANGE)
    assert city_b["totals"]["requests"] == 4 and [r["city_name"] for r in city_b["cities"]] == ["Бета"]


# ---- cities -------------------------------------------------------------------------------------

CITY_A = {
    "requests": 5, "completed": 2, "in_progress": 1, "waiting": 1, "cancelled": 1, "income": 15000.0,
    "expense": 3500.0, "balance": 11500.0, "active_masters": 1, "revenue": 15000.0, "average_check": 7500.0,
    "completion_rate": 40.0,
}
CITY_B = {
    "requests": 4, "completed": 1, "in_progress": 1, "waiting": 0, "cancelled": 1, "income": 3000.0,
    "expense": 4000.0, "balance": -1000.0, "active_masters": 1, "revenue": 3000.0, "average_check": 3000.0,
    "completion_rate": 25.0,
}


def test_cities(data, as_role):
    body = get(as_role("admin"), "cities", **RANGE)
    assert body["rows"] == [
        {"city_id": data["a"].id, "city_name": "Альфа", **CITY_A},
        {"city_id": data["b"].id, "city_name": "Бета", **CITY_B},
    ]
    assert body["summary"] == {
        "requests": 9, "completed": 3, "in_progress": 2, "waiting": 1, "cancelled": 2, "income": 18000.0,
        "expense": 7500.0, "balance": 10500.0, "active_masters": 2, "revenue": 18000.0, "average_check": 6000.0,
        "completion_rate": 33.3, "cities": 2,
    }


def test_cities_director(data, as_role):
    body = get(as_role("director", data["b"].id), "cities", **RANGE)
    assert body["rows"] == [{"city_id": data["b"].id, "city_name": "Бета", **CITY_B}]
    assert body["summary"]["requests"] == 4 and body["summary"]["cities"] == 1


def test_cities_city_without_activity_is_listed_with_zeros(data, as_role, make_city):
    empty = make_city("Гамма")
    body = get(as_role("admin"), "cities", **RANGE)
    assert [row["city_name"] for row in body["rows"]] == ["Альфа", "Гамма", "Бета"]  # by balance: 11500, 0, -1000
    row = body["rows"][1]
    assert row["city_id"] == empty.id and row["requests"] == 0 and row["average_check"] == 0.0
    assert row["completion_rate"] == 0.0


# ---- masters ------------------------------------------------------------------------------------

def test_masters(data, as_role):
    body = get(as_role("manager"), "masters", **RANGE)
    a, b = data["a"], data["b"]
    assert body["rows"] == [
        {"id": data["m_a1"].id, "full_name": "Мастер Альфа-1", "city_id": a.id, "city_name": "Альфа",
         "status": "active", "requests": 4, "completed": 2, "in_progress": 1, "waiting": 0, "cancelled": 1,
         "revenue": 15000.0, "handover": 6000.0, "net": 12000.0, "completion_rate": 50.0,
         "last_activity": "2025-04-01T00:30:00+03:00"},
        {"id": data["m_b1"].id, "full_name": "Мастер Бета-1", "city_id": b.id, "city_name": "Бета",
         "status": "active", "requests": 2, "completed": 1, "in_progress": 1, "waiting": 0, "cancelled": 0,
         "revenue": 3000.0, "handover": 1250.0, "net": 2500.0, "completion_rate": 50.0,
         "last_activity": "2025-03-04T13:00:00+03:00"},
        {"id": data["m_a2"].id, "full_name": "Мастер Альфа-2", "city_id": a.id, "city_name": "Альфа",
         "status": "inactive", "requests": 0, "completed": 0, "in_progress": 0, "waiting": 0, "cancelled": 0,
         "revenue": 0.0, "handover": 0.0, "net": 0.0, "completion_rate": 0.0, "last_activity": None},
    ]
    assert body["summary"] == {
        "masters": 3, "active_masters": 2, "requests": 6, "completed": 3, "in_progress": 2, "waiting": 0,
        "cancelled": 1, "revenue": 18000.0, "handover": 7250.0, "net": 14500.0, "completion_rate": 50.0,
    }


def test_masters_director_and_wider_range(data, as_role):
    body = get(as_role("director", data["a"].id), "masters", date_from="2025-02-01", date_to="2025-04-30")
    assert [row["full_name"] for row in body["rows"]] == ["Мастер Альфа-1", "Мастер Альфа-2"]
    first = body["rows"][0]
    assert (first["requests"], first["completed"], first["waiting"]) == (6, 3, 1)
    assert (first["revenue"], first["handover"], first["net"]) == (22000.0, 9500.0, 19000.0)
    assert first["completion_rate"] == 50.0


# ---- advertising --------------------------------------------------------------------------------

def test_advertising(data, as_role):
    body = get(as_role("admin"), "advertising", **RANGE)
    a, b = data["a"], data["b"]
    assert body["rows"] == [
        {"id": data["c_a"].id, "name": "Авито Альфа", "city_id": a.id, "city_name": "Альфа",
         "phone_number": "+7 900 000-00-01", "is_active": True,
         "requests": 4, "completed": 2, "conversion": 50.0, "revenue": 15000.0},
        {"id": data["c_b"].id, "name": "Сайт Бета", "city_id": b.id, "city_name": "Бета",
         "phone_number": "+7 900 000-00-02", "is_active": True,
         "requests": 3, "completed": 1, "conversion": 33.3, "revenue": 3000.0},
        {"id": None, "name": "Без рекламной кампании", "city_id": None, "city_name": None, "phone_number": None,
         "is_active": None, "requests": 2, "completed": 0, "conversion": 0.0, "revenue": 0.0},
        {"id": data["c_a2"].id, "name": "Листовки Альфа", "city_id": a.id, "city_name": "Альфа",
         "phone_number": "+7 900 000-00-03", "is_active": True,
         "requests": 0, "completed": 0, "conversion": 0.0, "revenue": 0.0},
    ]
    assert body["summary"] == {"campaigns": 3, "requests": 9, "completed": 3, "conversion": 33.3,
                               "revenue": 18000.0}


def test_advertising_director(data, as_role):
    body = get(as_role("director", data["a"].id), "advertising", **RANGE)
    assert [(r["name"], r["requests"], r["completed"]) for r in body["rows"]] == [
        ("Авито Альфа", 4, 2), ("Без рекламной кампании", 1, 0), ("Листовки Альфа", 0, 0)]


# ---- cash ---------------------------------------------------------------------------------------

def test_cash(data, as_role):
    body = get(as_role("admin"), "cash", **RANGE)
    assert body["cities"] == [
        {"city_id": data["a"].id, "city_name": "Альфа", "opening_balance": 7000.0, "income": 15000.0,
         "expense": 3500.0, "balance": 11500.0, "closing_balance": 18500.0, "count": 3},
        {"city_id": data["b"].id, "city_name": "Бета", "opening_balance": -100.0, "income": 3000.0,
         "expense": 4000.0, "balance": -1000.0, "closing_balance": -1100.0, "count": 2},
    ]
    types = data["types"]
    assert body["types"] == [
        {"transaction_type_id": types["Приход"].id, "name": "Приход", "income": 18000.0, "expense": 0.0,
         "balance": 18000.0, "count": 2},
        {"transaction_type_id": types["Расход"].id, "name": "Расход", "income": 0.0, "expense": 7500.0,
         "balance": -7500.0, "count": 3},
    ]
    assert body["summary"] == {"opening_balance": 6900.0, "income": 18000.0, "expense": 7500.0,
                               "balance": 10500.0, "closing_balance": 17400.0, "count": 5}


def test_cash_director_and_open_ranges(data, as_role):
    client = as_role("director", data["b"].id)
    body = get(client, "cash", **RANGE)
    assert [row["city_name"] for row in body["cities"]] == ["Бета"]
    assert body["summary"]["closing_balance"] == -1100.0
    everything = get(client, "cash")
    assert everything["summary"] == {"opening_balance": 0.0, "income": 3000.0, "expense": 4100.0,
                                     "balance": -1100.0, "closing_balance": -1100.0, "count": 3}


# ---- scoping ------------------------------------------------------------------------------------

REPORTS = ("dashboard", "callcenter", "cities", "masters", "advertising", "cash")


@pytest.mark.parametrize("report", REPORTS)
def test_director_cannot_ask_for_another_city(data, as_role, report):
    client = as_role("director", data["a"].id)
    response = client.get(f"/api/reports/{report}", query_string={"city_id": data["b"].id})
    assert response.status_code == 403
    assert response.json["code"] == "other_city" and response.json["detail"]
    assert client.get(f"/api/reports/{report}", query_string={"city_id": data["a"].id}).status_code == 200


def test_director_without_city_sees_every_city(data, as_role):
    client = as_role("director")
    assert get(client, "dashboard", **RANGE)["requests_total"] == 9
    assert get(client, "cities", city_id=data["b"].id, **RANGE)["summary"]["requests"] == 4


def test_callcentr_gets_only_the_callcenter_report(data, as_role):
    client = as_role("callcentr")
    assert get(client, "callcenter", city_id=data["b"].id, **RANGE)["totals"]["requests"] == 4
    for report in REPORTS[:1] + REPORTS[2:]:
        response = client.get(f"/api/reports/{report}")
        assert response.status_code == 403 and response.json["code"] == "forbidden", report


@pytest.mark.parametrize("role", ["master", "avitolog"])
def test_other_roles_get_nothing(data, as_role, role):
    client = as_role(role, data["a"].id)
    for report in REPORTS:
        response = client.get(f"/api/reports/{report}", query_string=RANGE)
        assert response.status_code == 403, report
        assert response.json["code"] == "forbidden"


def test_anonymous_is_refused(client):
    for report in REPORTS:
        assert client.get(f"/api/reports/{report}").status_code == 401


# ---- CSV ----------------------------------------------------------------------------------------

def read_csv(response):
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))


def test_cities_csv(data, as_role):
    client = as_role("admin")
    response = client.get("/api/reports/cities", query_string={**RANGE, "format": "csv"})
    rows = read_csv(response)
    assert response.headers["Content-Disposition"] == 'attachment; filename="report-cities-2025-03-01-2025-03-31.csv"'
    assert rows[0] == ["Город", "Заявок", "Выполнено", "В работе", "Ожидают", "Отменено", "Приход", "Расход",
                       "Баланс", "Активных мастеров", "Выручка", "Средний чек", "Выполнение, %"]
    assert rows[1:] == [
        ["Альфа", "5", "2", "1", "1", "1", "15000,00", "3500,00", "11500,00", "1", "15000,00", "7500,00", "40,0"],
        ["Бета", "4", "1", "1", "0", "1", "3000,00", "4000,00", "-1000,00", "1", "3000,00", "3000,00", "25,0"],
        ["Итого", "9", "3", "2", "1", "2", "18000,00", "7500,00", "10500,00", "2", "18000,00", "6000,00", "33,3"],
    ]
    # The same figures as the JSON answer.
    json_rows = get(client, "cities", **RANGE)["rows"]
    for line, row in zip(rows[1:], json_rows):
        assert float(line[6].replace(",", ".")) == row["income"]
        assert int(line[1]) == row["requests"]


@pytest.mark.parametrize("report, lines", [
    ("dashboard", 2), ("callcenter", 1 + 1 + 2 + 3 + 7), ("masters", 1 + 3 + 1), ("advertising", 1 + 4 + 1),
    ("cash", 1 + 1 + 2 + 2),
])
def test_every_report_has_csv(data, as_role, report, lines):
    response = as_role("admin").get(f"/api/reports/{report}", query_string={**RANGE, "format": "csv"})
    rows = read_csv(response)
    assert len(rows) == lines
    assert len({len(row) for row in rows}) == 1
    assert f'filename="report-{report}-2025-03-01-2025-03-31.csv"' in response.headers["Content-Disposition"]


def test_csv_details(data, as_role):
    client = as_role("admin")
    dashboard = read_csv(client.get("/api/reports/dashboard", query_string={**RANGE, "format": "csv"}))
    assert dict(zip(dashboard[0], dashboard[1]))["Баланс"] == "10500,00"
    callcenter = read_csv(client.get("/api/reports/callcenter", query_string={**RANGE, "format": "csv"}))
    header = callcenter[0]
    assert header[:2] == ["Раздел", "Значение"] and header[-len(REQUEST_STATUSES):] == list(REQUEST_STATUSES)
    totals = dict(zip(header, callcenter[1]))
    assert (totals["Раздел"], totals["Заявок"], totals["Готово"], totals["Конверсия, %"]) == ("Итого", "9", "3", "33,3")
    assert ["Оператор", "Не указан"] in [row[:2] for row in callcenter]
    masters = read_csv(client.get("/api/reports/masters", query_string={**RANGE, "format": "csv"}))
    assert masters[1][masters[0].index("Последняя активность")] == "2025-04-01 00:30"
    cash = read_csv(client.get("/api/reports/cash", query_string={**RANGE, "format": "csv"}))
    assert cash[1] == ["Итого", "Все города", "6900,00", "18000,00", "7500,00", "10500,00", "17400,00", "5"]
    unbounded = client.get("/api/reports/cash", query_string={"format": "csv"})
    assert 'filename="report-cash.csv"' in unbounded.headers["Content-Disposition"]
    from_only = client.get("/api/reports/cash", query_string={"format": "csv", "date_from": "2025-03-01"})
    assert 'filename="report-cash-from-2025-03-01.csv"' in from_only.headers["Content-Disposition"]


def test_csv_text_cannot_become_a_formula(data, as_role, db):
    db.get(AdvertisingCampaign, data["c_a2"].id).name = "=HYPERLINK(\"http://x\")"
    db.commit()
    rows = read_csv(as_role("admin").get("/api/reports/advertising", query_string={**RANGE, "format": "csv"}))
    assert "'=HYPERLINK(\"http://x\")" in [row[1] for row in rows]


# ---- bad filters --------------------------------------------------------------------------------

@pytest.mark.parametrize("params, field", [
    ({"date_from": "2025-13-01"}, "date_from"),
    ({"date_to": "31.03.2025"}, "date_to"),
    ({"date_from": "2025-03-31", "date_to": "2025-03-01"}, "date_to"),
    ({"city_id": "abc"}, "city_id"),
    ({"city_id": "-3"}, "city_id"),
    ({"city_id": "99999999999"}, "city_id"),
    ({"format": "xml"}, "format"),
])
def test_invalid_filters(data, as_role, params, field):
    response = as_role("admin").get("/api/reports/cities", query_string=params)
    assert response.status_code == 422
    body = response.json
    assert body["code"] == "validation_error" and body["detail"].startswith("Ошибка в данных запроса")
    assert field in body["detail"]
    assert list(body["errors"]) == [field]
    message = body["errors"][field][0]
    assert any("а" <= ch <= "я" for ch in message.lower()), message


def test_invalid_callcenter_filters(data, as_role):
    client = as_role("callcentr")
    bad_status = client.get("/api/reports/callcenter", query_string={"status": "done"})
    assert bad_status.status_code == 422 and bad_status.json["errors"] == {"status": ["Неизвестный статус заявки"]}
    long_search = client.get("/api/reports/callcenter", query_string={"search": "x" * 101})
    assert long_search.status_code == 422 and list(long_search.json["errors"]) == ["search"]
    assert get(client, "callcenter", status="", search="")["totals"]["requests"] == 12


def test_unknown_city_gives_empty_figures(data, as_role):
    body = get(as_role("admin"), "cities", city_id=2_000_000_000)
    assert body["rows"] == [] and body["summary"]["requests"] == 0


def test_reports_are_in_openapi(client):
    paths = client.get("/api/openapi.json").json["paths"]
    for report in REPORTS:
        assert f"/api/reports/{report}" in paths
