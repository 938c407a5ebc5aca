"""The daily rollups behind the reports (models/reports/rollups.py): exact after every kind of write, and every
report the same whether it reads them or the tables."""
from __future__ import annotations

import random
import threading
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select, text, update

from models import AdvertisingCampaign, Request, RequestType, Transaction, TransactionType, User
from models.core.business_time import business_tz
from models.core.enums import REQUEST_STATUSES
from models.reports import queries as reports
from models.reports import rollups
from tests.support import wait_for
from tests.telephony_support import overridden

TODAY = date(2025, 6, 30)
OPERATORS = ["Анна", "Борис", "", None]
REPORTS = ("dashboard", "callcenter", "cities", "masters", "advertising", "cash")


def _local(day: date, minutes: int, zone=None) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=zone or business_tz()) + timedelta(minutes=minutes)


def _random_minutes(rng: random.Random) -> int:
    """Often close to midnight, where a local day and a UTC day differ."""
    return rng.choice([0, 5, 23 * 60 + 55, 60 * 23 + 59, rng.randrange(24 * 60)])


@pytest.fixture()
def book(db, make_city, make_user):
    """Three cities, six masters, campaigns, 150 requests over three months and a cash book."""
    rng = random.Random(20251127)
    cities = [make_city(f"Город {letter}") for letter in "АБВ"]
    masters = [make_user("master", city_id=city.id, full_name=f"Мастер {city.name} {n}")
               for city in cities for n in (1, 2)]
    campaigns = [AdvertisingCampaign(city_id=city.id, name=f"Кампания {city.name} {n}",
                                     phone_number=f"+7 900 000-0{n}-{i:02d}", phone=f"790000{n}00{i:02d}")
                 for i, city in enumerate(cities) for n in (1, 2)]
    db.add_all(campaigns)
    db.flush()
    first = db.scalar(select(RequestType).where(RequestType.name == "Впервые"))
    types = list(db.scalars(select(TransactionType)))
    for number in range(150):
        city = rng.choice(cities)
        status = rng.choice(REQUEST_STATUSES)
        created = _local(TODAY - timedelta(days=rng.randrange(90)), _random_minutes(rng))
        done = status == "Готово"
        db.add(Request(
            city_id=city.id, request_type_id=first.id, status=status,
            master_id=rng.choice([None, *(m.id for m in masters if m.city_id == city.id)]),
            advertising_campaign_id=rng.choice([None, *(c.id for c in campaigns if c.city_id == city.id)]),
            call_center_name=rng.choice(OPERATORS), client_phone=f"7912{number:07d}",
            result=Decimal(rng.randrange(1000, 20000)) if done else rng.choice([None, Decimal(500)]),
            net_amount=Decimal(rng.randrange(0, 5000)), master_handover=Decimal(rng.randrange(0, 3000)),
            created_at=created, updated_at=created + timedelta(hours=rng.randrange(1, 500)),
        ))
    db.flush()
    incomes_of = iter(rng.sample(list(db.scalars(select(Request.id))), 40))  # one income per request at most
    for number in range(120):
        db.add(Transaction(
            city_id=rng.choice(cities).id, transaction_type_id=rng.choice(types).id,
            amount=Decimal(rng.choice([-1, 1]) * rng.randrange(0, 50000)) / 100,
            specified_date=TODAY - timedelta(days=rng.randrange(-10, 120)),
            request_id=next(incomes_of) if number % 3 == 0 else None,
        ))
    db.flush()
    return {"rng": rng, "cities": cities, "masters": masters, "campaigns": campaigns, "types": types}


def mutate(db, book) -> None:
    """Every kind of write the application and the database make."""
    rng, cities, masters, campaigns, types = (book[k] for k in ("rng", "cities", "masters", "campaigns", "types"))
    requests = list(db.scalars(select(Request).order_by(Request.id)))
    for row in rng.sample(requests, 40):  # one at a time, as the API does
        change = rng.randrange(7)
        if change == 0:
            row.status = rng.choice(REQUEST_STATUSES)
        elif change == 1:
            row.master_id = rng.choice([None, *(m.id for m in masters)])
        elif change == 2:
            row.advertising_campaign_id = rng.choice([None, *(c.id for c in campaigns)])
        elif change == 3:
            row.city_id = rng.choice(cities).id
        elif change == 4:
            row.call_center_name = rng.choice(OPERATORS)
        elif change == 5:  # across a local midnight
            row.created_at = row.created_at + timedelta(minutes=rng.choice([-10, 10, 60 * 24]))
        else:
            row.result, row.master_handover = Decimal(rng.randrange(100, 9000)), Decimal(rng.randrange(0, 900))
        db.flush()
    for row in rng.sample(requests, 5):
        row.client_name = "Без влияния на отчёты"  # a change the rollups ignore
    db.flush()
    # Statements over many rows at once, and what foreign keys do by themselves.
    db.execute(update(Request).where(Request.status == "Новая").values(status="Перезвонить"))
    db.execute(update(Request).where(Request.id % 7 == 0).values(net_amount=Request.net_amount + 1))
    db.execute(delete(Request).where(Request.id.in_([r.id for r in rng.sample(requests, 15)])))  # incomes cascade
    db.execute(delete(AdvertisingCampaign).where(AdvertisingCampaign.id == campaigns[0].id))  # SET NULL
    db.execute(update(Request).where(Request.master_id == masters[1].id).values(master_id=masters[0].id))
    db.execute(delete(User).where(User.id == masters[2].id))  # SET NULL
    transactions = list(db.scalars(select(Transaction).order_by(Transaction.id)))
    for row in rng.sample(transactions, 25):
        change = rng.randrange(4)
        if change == 0:
            row.amount = -row.amount  # income becomes expense
        elif change == 1:
            row.specified_date = row.specified_date + timedelta(days=rng.randrange(-40, 40))
        elif change == 2:
            row.city_id = rng.choice(cities).id
        else:
            row.transaction_type_id = rng.choice(types).id
        db.flush()
    db.execute(delete(Transaction).where(Transaction.id.in_([t.id for t in rng.sample(transactions, 10)])))
    db.execute(update(Transaction).where(Transaction.amount < -100).values(amount=Transaction.amount / 2))
    db.expire_all()


def expected_rows(db, zone: str) -> tuple[list, list]:
    """The rollups recomputed from the tables."""
    requests = db.execute(text(rollups.REQUEST_DELTA.format(zone=":zone", changed="SELECT 1 AS sign, * FROM requests")),
                          {"zone": zone}).all()
    transactions = db.execute(text(rollups.TRANSACTION_DELTA.format(
        changed="SELECT 1 AS sign, * FROM transactions"))).all()
    return [tuple(r) for r in requests], [tuple(r) for r in transactions]


def stored_rows(db) -> tuple[list, list]:
    requests = db.execute(text("SELECT dimension, day, city_id, status, key_id, key_text, requests, result, "
                               "handover, net FROM request_day_stats ORDER BY 1, 2, 3, 4, 5, 6")).all()
    transactions = db.execute(text("SELECT day, city_id, transaction_type_id, transactions, income, expense "
                                   "FROM transaction_day_stats ORDER BY 1, 2, 3")).all()
    return [tuple(r) for r in requests], [tuple(r) for r in transactions]


def run_report(name: str, filters: reports.Filters, scope: reports.Scope, use_rollups: bool, monkeypatch):
    monkeypatch.setattr(reports, "USE_ROLLUPS", use_rollups)
    kwargs = {"today": TODAY} if name == "dashboard" else {}
    return getattr(reports, name)(filters, scope, **kwargs)


def scopes(db, book) -> dict[str, reports.Scope]:
    from tests.factories import create_user

    director = create_user("director", city_id=book["cities"][0].id)
    manager = create_user("manager")
    return {"everything": reports.Scope.everything(), "manager": reports.Scope.of(manager),
            "director": reports.Scope.of(director), "master": reports.Scope.of(book["masters"][0])}


FILTERS = [
    reports.Filters(),
    reports.Filters(date_from=TODAY - timedelta(days=29), date_to=TODAY),
    reports.Filters(date_from=TODAY - timedelta(days=60), date_to=TODAY - timedelta(days=20)),
    reports.Filters(date_from=TODAY - timedelta(days=364), date_to=TODAY, status="Готово"),
    reports.Filters(date_to=TODAY - timedelta(days=45)),
]


def test_the_rollups_stay_exact_through_every_kind_of_write(db, book):
    zone = business_tz().key
    assert stored_rows(db) == expected_rows(db, zone)  # after the inserts
    mutate(db, book)
    stored = stored_rows(db)
    assert stored == expected_rows(db, zone)
    assert all(row[6] > 0 for row in stored[0]) and all(row[3] > 0 for row in stored[1])  # no empty rows kept
    assert len(stored[0]) > 100 and len(stored[1]) > 50  # the data set reaches every dimension


def test_every_report_reads_the_same_from_the_rollups_as_from_the_tables(db, book, monkeypatch):
    mutate(db, book)
    readers = scopes(db, book)
    city_id = book["cities"][1].id
    assert reports.Requests(reports.Filters(), readers["everything"]).rollup
    assert reports.Requests(reports.Filters(), readers["director"]).rollup
    assert not reports.Requests(reports.Filters(), readers["master"]).rollup  # a master's own requests
    compared = 0
    for scope_name, scope in readers.items():
        for filters in [*FILTERS, reports.Filters(date_from=TODAY - timedelta(days=89), city_id=city_id)]:
            for name in REPORTS:
                from_rollups = run_report(name, filters, scope, True, monkeypatch)
                from_tables = run_report(name, filters, scope, False, monkeypatch)
                assert from_rollups == from_tables, (scope_name, filters, name)
                compared += 1
    assert compared == 4 * 6 * 6
    totals = run_report("dashboard", reports.Filters(), readers["everything"], True, monkeypatch)
    assert totals["requests_total"] == db.scalar(select(text("count(*)")).select_from(Request))


def test_a_text_search_reads_the_tables(db, book, monkeypatch):
    filters = reports.Filters(search="Анна")
    assert not reports.Requests(filters, reports.Scope.everything(), narrowed=True).rollup
    assert (run_report("callcenter", filters, reports.Scope.everything(), True, monkeypatch)
            == run_report("callcenter", filters, reports.Scope.everything(), False, monkeypatch))


@contextmanager
def _zone_cache_cleared():
    try:
        yield
    finally:
        business_tz.cache_clear()


def test_another_zone_reads_the_tables_until_the_rollups_are_rebuilt_in_it(db, book, monkeypatch):
    from zoneinfo import ZoneInfo

    mutate(db, book)
    filters = reports.Filters(date_from=TODAY - timedelta(days=30), date_to=TODAY)
    business_tz.cache_clear()
    with overridden(BUSINESS_TZ="Asia/Vladivostok"), _zone_cache_cleared():
        assert business_tz().key == "Asia/Vladivostok"
        assert not reports.Requests(filters, reports.Scope.everything()).rollup  # days of another zone
        rollups.rebuild(db.connection())
        assert reports.Requests(filters, reports.Scope.everything()).rollup
        assert stored_rows(db) == expected_rows(db, "Asia/Vladivostok")
        row = db.scalar(select(Request).order_by(Request.id).limit(1))
        row.created_at = _local(TODAY, 5, ZoneInfo("Asia/Vladivostok"))  # the triggers use the new zone
        db.flush()
        assert stored_rows(db) == expected_rows(db, "Asia/Vladivostok")
        for name in REPORTS:
            assert (run_report(name, filters, reports.Scope.everything(), True, monkeypatch)
                    == run_report(name, filters, reports.Scope.everything(), False, monkeypatch)), name


def test_truncating_the_tables_empties_the_rollups(db, book):
    db.execute(text("TRUNCATE requests, transactions CASCADE"))
    assert stored_rows(db) == ([], [])


def test_two_writers_of_one_day_and_city_both_count(committed):
    """Concurrent requests of the same city, day and status: the second waits for the first's row of
    the rollup and adds to it; neither is lost."""
    from models import City, get_engine

    city = City(name="Параллельск")
    committed.add(city)
    committed.commit()
    request_type = committed.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    insert = text("INSERT INTO requests (city_id, request_type_id, client_phone, status, created_at, updated_at, "
                  "version) VALUES (:city, :type, :phone, 'Новая', now(), now(), 1)")
    engine = get_engine()
    first, second, observer = engine.connect(), engine.connect(), engine.connect()
    try:
        first.begin()
        first.execute(insert, {"city": city.id, "type": request_type, "phone": "79990000001"})
        second_pid = second.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        second.commit()
        done = threading.Event()

        def other_writer():
            with second.begin():
                second.execute(insert, {"city": city.id, "type": request_type, "phone": "79990000002"})
            done.set()

        thread = threading.Thread(target=other_writer)
        thread.start()

        def waiting_for_a_lock() -> bool:
            observer.rollback()  # a fresh snapshot of pg_stat_activity each time
            return observer.execute(text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                                    {"pid": second_pid}).scalar()

        wait_for(waiting_for_a_lock, timeout=10)  # held by the first writer's row of the rollup
        assert not done.is_set()
        first.commit()
        thread.join(10)
        assert done.is_set()
    finally:
        for connection in (first, second, observer):
            connection.close()
    count = committed.execute(text("SELECT requests FROM request_day_stats WHERE dimension = 0 AND city_id = :city"),
                              {"city": city.id}).scalar()
    assert count == 2


def test_the_rebuild_command_restores_the_rollups(app, committed):
    from models import City

    city = City(name="Восстановск")
    committed.add(city)
    committed.flush()
    request_type = committed.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    committed.add(Request(city_id=city.id, request_type_id=request_type, client_phone="79990000003"))
    committed.commit()
    before = stored_rows(committed)
    committed.execute(text("DELETE FROM request_day_stats"))  # lost, as after a load without triggers
    committed.commit()
    result = app.test_cli_runner().invoke(args=["rebuild-rollups"])
    assert result.exit_code == 0, result.output
    assert "rollups: rebuilt in Europe/Moscow (4 request rows" in result.output
    assert stored_rows(committed) == before and len(before[0]) == 4
