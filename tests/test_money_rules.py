"""The money rules hold for every role and every path: the API, the model layer a task or an import
writes through, and the database itself.

- result, expenses and an explicit handover: non-negative, two decimals, at most MAX_REQUEST_AMOUNT;
- a master may not enter expenses above the result; the office may record a loss, which books no
  income (nor does a handover of zero);
- a final request's status, money and master: admin and manager only;
- every change of money in the history (who, before, after);
- a cash-book amount's sign follows its type's direction; zero is refused;
- a master reads the cash rows of their own requests, and only reads them.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from models import City, Request, RequestEvent, Transaction
from models.core.errors import Invalid
from models.directories.tables import RequestType, TransactionType
from models.requests.money import entered_amount
from models.requests.rules import apply_changes
from settings import settings as app_settings
from tests.factories import create_user, record_request
from tests.support import SPA, at_once, login

MAX = app_settings.MAX_REQUEST_AMOUNT


def type_id(db, name: str) -> int:
    return db.scalar(select(TransactionType.id).where(TransactionType.name == name))


@pytest.fixture()
def world(make_city, db):
    city = make_city("Самара")
    master = create_user("master", city_id=city.id)
    users = {role: create_user(role, city_id=city.id if role == "director" else None)
             for role in ("admin", "manager", "director", "callcentr")}
    users["master"] = master
    rt = db.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    return {"city": city.id, "type": rt, "users": users, "master": master}


def new_request(world, **fields) -> int:
    """A request of the world's master, in progress, created through the domain rule with `fields`."""
    return record_request({"city_id": world["city"], "request_type_id": world["type"], "client_phone": "79170000001",
                           "client_name": "Клиент", "master_id": world["master"].id, "status": "В работе",
                           **fields}).id


def incomes(db, request_id: int) -> list[Transaction]:
    db.expire_all()
    return db.scalars(select(Transaction).where(Transaction.request_id == request_id)).all()


def put(client, request_id, body):
    return client.put(f"/api/requests/{request_id}", json=body, headers=SPA)


# ---- amounts entered on a request -----------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("result", -1, "сумма не может быть отрицательной"),
    ("expenses", "-0.01", "сумма не может быть отрицательной"),
    ("master_handover", -100, "сумма не может быть отрицательной"),
    ("result", "10000000.01", "сумма не может быть больше 10 000 000 ₽"),
    ("expenses", 999999999, "сумма не может быть больше 10 000 000 ₽"),
    ("result", "12.345", "Не более двух знаков после запятой"),
    ("result", "NaN", "Сумма должна быть числом"),
    ("expenses", "Infinity", "Сумма должна быть числом"),
    ("result", "много", "Сумма должна быть числом"),
    ("result", True, "Сумма должна быть числом"),
])
def test_bad_amounts_are_422_naming_the_field(client, db, world, field, value, message):
    rid = new_request(world)
    login(client, world["users"]["manager"])
    response = put(client, rid, {field: value})
    assert response.status_code == 422, response.json
    assert response.json["errors"][field] == [message]
    assert response.json["detail"]
    assert db.get(Request, rid).version == 1  # nothing written


def test_the_attack_seen_a_master_booking_a_negative_income(client, db, world):
    rid = new_request(world)
    login(client, world["master"])
    response = put(client, rid, {"status": "Готово", "result": 0, "expenses": 999999999})
    assert response.status_code == 422 and "expenses" in response.json["errors"]
    response = put(client, rid, {"status": "Готово", "result": 1000, "expenses": 5000})
    assert response.status_code == 422, response.json
    assert response.json["code"] == "expenses_above_result"
    assert response.json["errors"] == {"expenses": ["расходы мастера не могут быть больше итога"]}
    assert incomes(db, rid) == []
    assert db.get(Request, rid).status == "В работе"
    # Expenses equal to the result: allowed, and nothing to hand over books nothing.
    assert put(client, rid, {"status": "Готово", "result": 1000, "expenses": 1000}).status_code == 200
    assert incomes(db, rid) == []


@pytest.mark.parametrize("role", ["manager", "admin"])
def test_the_office_records_a_loss_which_books_no_income(client, db, world, role):
    rid = new_request(world)
    login(client, world["users"][role])
    response = put(client, rid, {"status": "Готово", "result": "1000", "expenses": "3000"})
    assert response.status_code == 200, response.json
    assert response.json["net_amount"] == -2000 and response.json["master_handover"] == -1000
    assert incomes(db, rid) == []
    # Back to a profit: the income is booked; to a loss again: it goes.
    assert put(client, rid, {"expenses": "200"}).status_code == 200
    assert [row.amount for row in incomes(db, rid)] == [Decimal("400.00")]
    assert put(client, rid, {"master_handover": 0}).status_code == 200
    assert incomes(db, rid) == []


def test_a_master_s_own_job_books_its_income(client, db, world):
    rid = new_request(world)
    login(client, world["master"])
    response = put(client, rid, {"status": "Готово", "result": "5000", "expenses": "1000.50"})
    assert response.status_code == 200, response.json
    assert response.json["master_handover"] == 1999.75
    assert [row.amount for row in incomes(db, rid)] == [Decimal("1999.75")]


@pytest.mark.parametrize("body", [
    {"result": "9000"}, {"expenses": "1"}, {"status": "Отказ"}, {"status": "В работе"},
    {"master_id": None}, {"master_notes": "переписал"},
])
def test_a_master_cannot_rewrite_a_finished_request(client, db, world, body):
    rid = new_request(world, status="Готово", result=Decimal(5000))
    login(client, world["master"])
    response = put(client, rid, body)
    assert response.status_code == 403, response.json
    assert response.json["code"] == "final_status"
    assert response.json["detail"] == "Заявка в статусе «Готово»: мастер не может её изменять"
    assert [row.amount for row in incomes(db, rid)] == [Decimal("2500.00")]


def test_every_change_of_money_is_in_the_history(client, db, world):
    rid = new_request(world)
    manager = world["users"]["manager"]
    login(client, manager)
    put(client, rid, {"status": "Готово", "result": "4000", "expenses": "1000"})
    put(client, rid, {"result": "6000"})
    put(client, rid, {"master_handover": "2000"})
    events = db.execute(select(RequestEvent.field, RequestEvent.old_value, RequestEvent.new_value,
                               RequestEvent.user_id)
                        .where(RequestEvent.request_id == rid, RequestEvent.action == "updated")
                        .order_by(RequestEvent.id)).all()
    money_fields = ("result", "expenses", "net_amount", "master_handover")
    money = [(f, old, new) for f, old, new, _user in events if f in money_fields]
    assert money == [
        ("result", None, "4000.00"), ("expenses", "0.00", "1000.00"), ("net_amount", "0.00", "3000.00"),
        ("master_handover", "0.00", "1500.00"),
        ("result", "4000.00", "6000.00"), ("net_amount", "3000.00", "5000.00"),
        ("master_handover", "1500.00", "2500.00"),
        ("master_handover", "2500.00", "2000.00"),
    ]
    assert {user for *_, user in events} == {manager.id}


amounts = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-1, max_value=MAX + 1, places=2),
    st.decimals(min_value=0, max_value=100, places=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10 ** 12), max_value=10 ** 12),
    st.text(max_size=12),
    st.sampled_from(["1 500,50", "-0", "0.00", "1e3", "1e-3", "10000000", "10000000.00", "10000000.01", ""]),
)


def _json_amount(value):
    return str(value) if isinstance(value, Decimal) else value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=amounts, field=st.sampled_from(["result", "expenses", "master_handover"]))
def test_any_amount_is_stored_exactly_or_refused_with_422(client, db, world, value, field):
    """Through the API: never a 5xx; an accepted amount is stored as sent, within the bounds."""
    rid = new_request(world)
    login(client, world["users"]["manager"])
    response = put(client, rid, {field: _json_amount(value)})
    assert response.status_code in (200, 422), response.get_data(as_text=True)
    db.expire_all()
    stored = getattr(db.get(Request, rid), field)
    if response.status_code == 422:
        assert field in response.json["errors"] and response.json["detail"]
        assert db.get(Request, rid).version == 1
        return
    if value in ("", None):
        return  # "not set": no result, no expenses, the handover computed
    assert Decimal(0) <= stored <= MAX and stored == stored.quantize(Decimal("0.01"))
    sent = Decimal(str(value).replace(" ", "").replace(",", "."))
    assert stored == sent


@given(value=amounts, field=st.sampled_from(["result", "expenses", "master_handover"]))
def test_the_model_rule_accepts_only_sound_amounts(value, field):
    try:
        amount = entered_amount(field, value)
    except Invalid as refused:
        assert list(refused.errors) == [field] and refused.status == 422
        return
    assert amount is None or (Decimal(0) <= amount <= MAX and amount == amount.quantize(Decimal("0.01")))
    assert amount is None or amount == Decimal(str(value).strip())


# ---- the model layer and the database: no path around the rules ------------------------------------------

@pytest.mark.parametrize("field, value", [("result", Decimal("-5")), ("expenses", Decimal("1e9")),
                                          ("result", Decimal("0.001")), ("expenses", float("nan"))])
def test_a_task_or_import_setting_an_amount_is_refused(db, world, field, value):
    rid = new_request(world)
    request = db.get(Request, rid)
    with pytest.raises(Invalid):
        setattr(request, field, value)  # an import writing the model directly
    with pytest.raises(Invalid):
        apply_changes(request, {field: value}, user_id=None, source="mango")  # a task through the rules


@pytest.mark.parametrize("statement", [
    "UPDATE requests SET result = -1 WHERE id = :id",
    "UPDATE requests SET expenses = -0.01 WHERE id = :id",
])
def test_the_database_refuses_negative_amounts(db, world, statement):
    rid = new_request(world)
    with pytest.raises(IntegrityError):
        with db.begin_nested():
            db.execute(text(statement), {"id": rid})


def test_two_masters_racing_to_finish_a_request_book_one_income(app, committed):
    """Two sessions of the master save Готово at the same moment on two connections: the second one
    finds the request final and unchanged by its body (200), or changed (403); one income either way."""
    city = City(name="Пенза")
    committed.add(city)
    committed.commit()
    master = create_user("master", city_id=city.id)
    committed.commit()
    rt = committed.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    request = Request(city_id=city.id, request_type_id=rt, client_phone="79170000002", master_id=master.id,
                      status="В пути")
    committed.add(request)
    committed.commit()
    rid = request.id
    clients = [app.test_client(), app.test_client()]
    for c in clients:
        login(c, master)
    body = {"status": "Готово", "result": "3000", "expenses": "0"}
    responses = at_once(*(lambda c=c: put(c, rid, body) for c in clients))  # c bound now, not at the call
    assert [response.status_code for response in responses] == [200, 200]
    committed.remove()
    rows = committed.scalars(select(Transaction.amount).where(Transaction.request_id == rid)).all()
    assert rows == [Decimal("1500.00")]


# ---- the cash book ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, sent, stored", [
    ("Расход", "500", -500), ("Расход", "-500", -500), ("Приход", "-300", 300), ("Приход", 300, 300),
])
def test_the_sign_follows_the_type(client, db, world, kind, sent, stored):
    login(client, world["users"]["director"])
    response = client.post("/api/transactions/", json={"city_id": world["city"], "transaction_type_id":
                                                       type_id(db, kind), "amount": sent}, headers=SPA)
    assert response.status_code == 201, response.json
    assert response.json["amount"] == stored
    assert db.get(Transaction, response.json["id"]).amount == Decimal(stored)


@pytest.mark.parametrize("amount", [0, "0", "0.00", "-0", "0.001"])
def test_a_zero_operation_is_422(client, db, world, amount):
    login(client, world["users"]["manager"])
    response = client.post("/api/transactions/", json={"city_id": world["city"], "transaction_type_id":
                                                       type_id(db, "Расход"), "amount": amount}, headers=SPA)
    assert response.status_code == 422 and "amount" in response.json["errors"]


def test_changing_the_type_changes_the_sign_and_the_balance_stays_exact(client, db, world):
    login(client, world["users"]["manager"])
    income, expense = type_id(db, "Приход"), type_id(db, "Расход")
    ids = [client.post("/api/transactions/", json={"city_id": world["city"], "transaction_type_id": kind,
                                                   "amount": amount, "specified_date": "2026-03-01"},
                       headers=SPA).json["id"]
           for kind, amount in ((income, "1000"), (expense, "250.50"), (expense, "-100"))]
    moved = client.put(f"/api/transactions/{ids[2]}", json={"transaction_type_id": income}, headers=SPA)
    assert moved.status_code == 200 and moved.json["amount"] == 100
    balance = client.get(f"/api/transactions/balance?city_id={world['city']}").json["total"]
    assert balance == {"income": 1100.0, "expense": -250.5, "balance": 849.5, "count": 3}
    assert db.scalar(select(func.sum(Transaction.amount)).where(Transaction.city_id == world["city"])) \
        == Decimal("849.50")


def test_the_database_sets_the_sign_whatever_path_writes(db, world):
    """An import or a statement typed by hand cannot book an expense as income."""
    expense = type_id(db, "Расход")
    row_id = db.execute(text("INSERT INTO transactions (city_id, transaction_type_id, amount, specified_date) "
                             "VALUES (:city, :kind, 700, '2026-03-02') RETURNING id"),
                        {"city": world["city"], "kind": expense}).scalar()
    assert db.execute(text("SELECT amount FROM transactions WHERE id = :id"), {"id": row_id}).scalar() == -700
    db.execute(text("UPDATE transactions SET amount = 900 WHERE id = :id"), {"id": row_id})
    assert db.execute(text("SELECT amount FROM transactions WHERE id = :id"), {"id": row_id}).scalar() == -900
    with pytest.raises(IntegrityError):
        with db.begin_nested():
            db.execute(text("UPDATE transactions SET amount = 0 WHERE id = :id"), {"id": row_id})


def test_types_carry_their_direction(client, db, world):
    login(client, world["users"]["admin"])
    types = {row["name"]: row["is_income"] for row in client.get("/api/transactions/transaction-types/").json}
    assert types["Приход"] is True and types["Расход"] is False
    created = client.post("/api/transaction-types", json={"name": "Доход от рекламы", "is_income": True},
                          headers=SPA)
    assert created.status_code == 201 and created.json["is_income"] is True
    kind = created.json["id"]
    booked = client.post("/api/transactions/", json={"city_id": world["city"], "transaction_type_id": kind,
                                                     "amount": "-40"}, headers=SPA)
    assert booked.json["amount"] == 40
    # The direction of a type in use, or of a system type, cannot change: rows were written by it.
    in_use = client.put(f"/api/transaction-types/{kind}", json={"name": "Доход от рекламы", "is_income": False},
                        headers=SPA)
    assert in_use.status_code == 409 and in_use.json["code"] == "in_use"
    system = client.put(f"/api/transaction-types/{type_id(db, 'Расход')}",
                        json={"name": "Расход", "is_income": True}, headers=SPA)
    assert system.status_code == 409 and system.json["code"] == "protected"
    spare = client.post("/api/transaction-types", json={"name": "Аренда"}, headers=SPA).json
    assert spare["is_income"] is False  # an expense unless said otherwise
    flipped = client.put(f"/api/transaction-types/{spare['id']}", json={"name": "Аренда", "is_income": True},
                         headers=SPA)
    assert flipped.status_code == 200 and flipped.json["is_income"] is True


# ---- a master's cash ------------------------------------------------------------------------------

def test_a_master_reads_the_income_of_their_own_requests_only(client, db, world):
    own = new_request(world, status="Готово", result=Decimal(4000))
    other_master = create_user("master", city_id=world["city"])
    other = new_request(world, master_id=other_master.id, status="Готово", result=Decimal(9000))
    manual = Transaction(city_id=world["city"], transaction_type_id=type_id(db, "Расход"), amount=Decimal(-50),
                         specified_date="2026-03-03")
    db.add(manual)
    db.commit()
    own_income, other_income, manual_id = incomes(db, own)[0].id, incomes(db, other)[0].id, manual.id
    login(client, world["master"])
    listed = client.get("/api/transactions/")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json] == [own_income]
    assert listed.json[0]["amount"] == 2000 and listed.json[0]["request_id"] == own
    assert client.get(f"/api/transactions/{own_income}").status_code == 200
    assert client.get(f"/api/transactions/{other_income}").status_code == 404
    assert client.get(f"/api/transactions/{manual_id}").status_code == 404
    balance = client.get("/api/transactions/balance").json
    assert balance["total"] == {"income": 2000.0, "expense": 0.0, "balance": 2000.0, "count": 1}
    assert [city["city_id"] for city in balance["cities"]] == [world["city"]]
    # Read-only.
    for response in (
        client.post("/api/transactions/", json={"city_id": world["city"], "transaction_type_id":
                                                type_id(db, "Приход"), "amount": 1}, headers=SPA),
        client.put(f"/api/transactions/{own_income}", json={"amount": 1}, headers=SPA),
        client.delete(f"/api/transactions/{own_income}", headers=SPA),
    ):
        assert response.status_code == 403 and response.json["code"] == "forbidden"
