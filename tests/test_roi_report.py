"""Campaign spend and the ROI report on a small known data set: every figure computed by hand below,
prorating, the range's edges in the business time zone, «Без кампании», city scoping, CSV, and the
call rollup equal to the calls table after each kind of write."""
from __future__ import annotations

import csv
import io
import threading
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select, text, update

from models import AdvertisingCampaign, Call, CallDayLinks, CallDayStats, Request, RequestType
from models.core.business_time import business_tz
from models.reports import queries, roi
from models.reports.call_rollups import table_rows_sql
from models.reports.queries import Filters, Scope
from models.reports.rollups import rollup_zone_matches
from tests.support import bearer, wait_for

RANGE = {"date_from": "2026-03-10", "date_to": "2026-03-20"}
LINE_NO_CAMPAIGN = "79000000099"
P1, P2, P3, P4, P5 = (f"7911000000{n}" for n in range(1, 6))


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=business_tz())


def token(client, user) -> dict[str, str]:
    from tests.factories import TEST_PASSWORD

    response = client.post("/api/auth/login", json={"login": user.login, "password": TEST_PASSWORD})
    return bearer(response.json["access_token"])


@pytest.fixture()
def world(db, make_city, make_user, client):
    """Moscow time. Range 2026-03-10 .. 2026-03-20 (11 days).

    Campaigns: K1 and K2 in city A, K3 in city B; line 79000000099 has no campaign.
    Spend (entered through the API): K1 March 3100 (11/31 in range = 1100) and 25.02–11.03 1500
    (15 days, 2 in range = 200): 1300.00; K2 15.03–24.03 1000 (6/10 = 600) and April 999 (none):
    600.00; K3 March 620 (11/31 = 220): 220.00.
    Calls (inbound unless said), local times:
      K1: c1 P1 09.03 answered (before the range), c2 P1 10.03 answered, c3 P1 12.03 missed,
          c4 P2 12.03 10:00 missed, c5 outbound to P2 12.03 10:30 answered (calls c4 back),
          c6 P2 20.03 23:30 answered, c7 outbound to P1 21.03 answered (after the range)
          → calls 4, unique 2, missed 2, called back 1 (c4; c3 only on the 21st)
      K2: c8 P3 15.03 missed, c9 P3 16.03 missed, c10 P3 18.03 answered, c11 P1 11.03 answered
          → calls 4, unique 2, missed 2, called back 2
      K3: c12 P4 19.03 missed → calls 1, unique 1, missed 1, called back 0
      line 99: c17 P5 10.03 00:30 (21:30 UTC the day before), c14 P5 11.03, c15 P1 11.03, c16 P5 21.03 00:30
          (outside) → calls 3, unique 2
    Requests in range: K1 r1 Готово 5000 / handover 2000, r2 Новая; K2 r3 Отказ; K3 r4 Готово 3000 / 1200;
    none: r5 Готово 1000 / 400 (city A). Outside: r0 Готово K1 on 09.03.
    """
    a, b = make_city("Альфа"), make_city("Бета")
    k1 = AdvertisingCampaign(city_id=a.id, name="Авито", phone_number="+7 900 000-00-11", phone="79000000011")
    k2 = AdvertisingCampaign(city_id=a.id, name="Яндекс", phone_number="+7 900 000-00-12", phone="79000000012")
    k3 = AdvertisingCampaign(city_id=b.id, name="Сайт", phone_number="+7 900 000-00-21", phone="79000000021")
    db.add_all([k1, k2, k3])
    db.flush()

    calls = [
        ("c1", "in", P1, k1, "2026-03-09 10:00", True), ("c2", "in", P1, k1, "2026-03-10 09:00", True),
        ("c3", "in", P1, k1, "2026-03-12 09:00", False), ("c4", "in", P2, k1, "2026-03-12 10:00", False),
        ("c5", "out", P2, None, "2026-03-12 10:30", True), ("c6", "in", P2, k1, "2026-03-20 23:30", True),
        ("c7", "out", P1, None, "2026-03-21 10:00", True),
        ("c8", "in", P3, k2, "2026-03-15 12:00", False), ("c9", "in", P3, k2, "2026-03-16 12:00", False),
        ("c10", "in", P3, k2, "2026-03-18 09:00", True), ("c11", "in", P1, k2, "2026-03-11 14:00", True),
        ("c12", "in", P4, k3, "2026-03-19 12:00", False),
        ("c14", "in", P5, None, "2026-03-11 12:00", True), ("c15", "in", P1, None, "2026-03-11 13:00", True),
        ("c16", "in", P5, None, "2026-03-21 00:30", True), ("c17", "in", P5, None, "2026-03-10 00:30", True),
    ]
    rows = {}
    for entry, direction, phone, campaign, at, answered in calls:
        started = local(at)
        line = campaign.phone if campaign else (LINE_NO_CAMPAIGN if direction == "in" else "79000000011")
        rows[entry] = Call(entry_id=entry, direction=direction, client_phone=phone, line_number=line,
                           campaign_id=campaign and campaign.id, started_at=started,
                           answered_at=started + timedelta(seconds=5) if answered else None,
                           ended_at=started + timedelta(minutes=2), missed=not answered)
    db.add_all(rows.values())

    first = db.scalar(select(RequestType).where(RequestType.name == "Впервые"))

    def request(number, city, campaign, status, at, result=None, handover=0):
        db.add(Request(city_id=city.id, request_type_id=first.id, status=status,
                       advertising_campaign_id=campaign and campaign.id, client_phone=f"7912000000{number}",
                       result=result and Decimal(result), expenses=Decimal(0),
                       net_amount=Decimal(result or 0), master_handover=Decimal(handover),
                       created_at=local(at), updated_at=local(at)))

    request(0, a, k1, "Готово", "2026-03-09 12:00", 9000, 9000)
    request(1, a, k1, "Готово", "2026-03-10 12:00", 5000, 2000)
    request(2, a, k1, "Новая", "2026-03-20 23:50")
    request(3, a, k2, "Отказ", "2026-03-15 12:00")
    request(4, b, k3, "Готово", "2026-03-19 12:00", 3000, 1200)
    request(5, a, None, "Готово", "2026-03-11 12:00", 1000, 400)
    db.commit()

    manager = make_user("manager")
    headers = token(client, manager)
    for campaign, body in ((k1, {"month": "2026-03", "amount": 3100}),
                           (k1, {"date_from": "2026-02-25", "date_to": "2026-03-11", "amount": "1500.00"}),
                           (k2, {"date_from": "2026-03-15", "date_to": "2026-03-24", "amount": 1000}),
                           (k2, {"month": "2026-04", "amount": "999"}),
                           (k3, {"month": "2026-03", "amount": "620,00"})):
        response = client.post(f"/api/advertising-campaigns/{campaign.id}/spend", json=body, headers=headers)
        assert response.status_code == 201, response.json
    return {"a": a, "b": b, "k1": k1, "k2": k2, "k3": k3, "calls": rows, "headers": headers}


FIGURES = ("calls", "unique_callers", "missed", "called_back", "requests", "completed", "revenue", "income",
           "spend", "cost_per_call", "cost_per_request", "cost_per_completed", "romi")


def figures(*values):
    return dict(zip(FIGURES, values))


def pick(row):
    return {name: row[name] for name in FIGURES}


def test_roi_per_campaign_matches_the_hand_computed_figures(client, world):
    response = client.get("/api/reports/roi", query_string=RANGE, headers=world["headers"])
    assert response.status_code == 200, response.json
    data = response.json
    by_name = {(row["campaign_name"], row["line"]): row for row in data["rows"]}
    assert list(by_name) == [("Авито", "79000000011"), ("Яндекс", "79000000012"), ("Сайт", "79000000021"),
                             ("Без кампании", None), ("Без кампании", LINE_NO_CAMPAIGN)]
    assert pick(by_name["Авито", "79000000011"]) == figures(4, 2, 2, 1, 2, 1, 5000, 2000, 1300, 325, 650, 1300, 53.8)
    assert pick(by_name["Яндекс", "79000000012"]) == figures(4, 2, 2, 2, 1, 0, 0, 0, 600, 150, 600, None, -100.0)
    assert pick(by_name["Сайт", "79000000021"]) == figures(1, 1, 1, 0, 1, 1, 3000, 1200, 220, 220, 220, 220, 445.5)
    assert pick(by_name["Без кампании", None]) == figures(0, 0, 0, 0, 1, 1, 1000, 400, 0, None, 0, 0, None)
    assert pick(by_name["Без кампании", LINE_NO_CAMPAIGN]) == figures(3, 2, 0, 0, 0, 0, 0, 0, 0, 0, None, None,
                                                                      None)
    assert by_name["Авито", "79000000011"]["city_name"] == "Альфа"
    # Unique callers of the whole range are the five numbers, not the sum over the lines (7).
    assert data["summary"] == figures(12, 5, 5, 3, 5, 3, 9000, 3600, 2120, 176.67, 424, 706.67, 69.8)


def test_roi_per_city_and_per_month(client, world):
    response = client.get("/api/reports/roi", query_string={**RANGE, "group": "city"}, headers=world["headers"])
    assert response.status_code == 200, response.json
    rows = {row["city_name"]: pick(row) for row in response.json["rows"]}
    # P1 called K1 and K2 of city A: one caller of the city.
    assert rows == {
        "Альфа": figures(8, 3, 4, 3, 4, 2, 6000, 2400, 1900, 237.5, 475, 950, 26.3),
        "Бета": figures(1, 1, 1, 0, 1, 1, 3000, 1200, 220, 220, 220, 220, 445.5),
        roi.NO_CITY: figures(3, 2, 0, 0, 0, 0, 0, 0, 0, 0, None, None, None),
    }

    # A range that starts inside March: one row, the range's own figures (P1 counts from c2, whose
    # previous call c1 is on the 9th, before the range though inside the month).
    response = client.get("/api/reports/roi", query_string={**RANGE, "group": "month"}, headers=world["headers"])
    assert [row["month"] for row in response.json["rows"]] == ["2026-03"]
    assert pick(response.json["rows"][0]) == pick(response.json["summary"]) == figures(
        12, 5, 5, 3, 5, 3, 9000, 3600, 2120, 176.67, 424, 706.67, 69.8)

    # February and March: K1's 25.02–11.03 splits 4 days (400) / 11 days (1100); c1 (09.03) and c16
    # (21.03) now count; c3 is called back by c7 on the 21st, inside this range.
    response = client.get("/api/reports/roi", query_string={"date_from": "2026-02-20", "date_to": "2026-03-31",
                                                            "group": "month"}, headers=world["headers"])
    months = {row["month"]: row for row in response.json["rows"]}
    assert list(months) == ["2026-02", "2026-03"]
    assert pick(months["2026-02"]) == figures(0, 0, 0, 0, 0, 0, 0, 0, 400, None, None, None, -100.0)
    assert pick(months["2026-03"]) == figures(14, 5, 5, 4, 6, 4, 18000, 12600, 5820, 415.71, 970, 1455, 116.5)


def test_a_director_sees_their_city_only(client, world, make_user):
    director = make_user("director", city_id=world["a"].id)
    headers = token(client, director)
    data = client.get("/api/reports/roi", query_string=RANGE, headers=headers).json
    assert [(row["campaign_name"], row["line"]) for row in data["rows"]] == [
        ("Авито", "79000000011"), ("Яндекс", "79000000012"), ("Без кампании", None)]
    assert data["summary"]["unique_callers"] == 3 and data["summary"]["spend"] == 1900
    other = client.get("/api/reports/roi", query_string={**RANGE, "city_id": world["b"].id}, headers=headers)
    assert other.status_code == 403 and other.json["detail"]
    chosen = client.get("/api/reports/roi", query_string={**RANGE, "city_id": world["b"].id},
                        headers=world["headers"]).json
    assert [row["campaign_name"] for row in chosen["rows"]] == ["Сайт"]


def test_roi_csv(client, world):
    response = client.get("/api/reports/roi", query_string={**RANGE, "format": "csv"}, headers=world["headers"])
    assert response.status_code == 200
    assert 'filename="report-roi-campaign-2026-03-10-2026-03-20.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["ID", "Рекламная кампания", "Линия", "Город"] and rows[0][-1] == "ROMI, %"
    assert rows[1][1:4] == ["Авито", "79000000011", "Альфа"]
    assert rows[1][-5:] == ["1300,00", "325,00", "650,00", "1300,00", "53,8"]
    assert rows[-1][1] == "Итого" and rows[-1][4:6] == ["12", "5"]


@pytest.mark.parametrize("query, field", [
    ({"group": "week"}, "group"),
    ({"date_from": "2026-03-20", "date_to": "2026-03-10"}, "date_to"),
    ({"date_from": "10.03.2026"}, "date_from"),
    ({"format": "xlsx"}, "format"),
])
def test_bad_report_filters_are_a_readable_422(client, world, query, field):
    response = client.get("/api/reports/roi", query_string=query, headers=world["headers"])
    assert response.status_code == 422 and field in response.json["errors"] and response.json["detail"]


def _table_report(group: str, **filters):
    queries.USE_ROLLUPS = False
    try:
        return roi.roi(Filters(**filters), Scope.everything(), group)
    finally:
        queries.USE_ROLLUPS = True


def _same_as_the_table(db):
    db.flush()
    assert rollup_zone_matches(db)  # the report reads call_day_stats, the reference reads calls
    for group in roi.GROUPS:
        for bounds in ({"date_from": RANGE_DATES[0], "date_to": RANGE_DATES[1]}, {"date_to": RANGE_DATES[1]}, {}):
            assert roi.roi(Filters(**bounds), Scope.everything(), group) == _table_report(group, **bounds), group


RANGE_DATES = (datetime(2026, 3, 10).date(), datetime(2026, 3, 20).date())


def test_the_call_rollup_follows_every_write(db, world):
    k1, k2 = world["k1"], world["k2"]
    _same_as_the_table(db)
    # A callback arrives later (c3 called back inside the range), a call changes number and line.
    db.add(Call(entry_id="c18", direction="out", client_phone=P1, line_number="79000000011",
                started_at=local("2026-03-13 10:00"), answered_at=local("2026-03-13 10:01"), missed=False))
    db.execute(update(Call).where(Call.entry_id == "c14").values(client_phone=P4, campaign_id=k2.id))
    _same_as_the_table(db)
    by_campaign = {row["campaign_id"]: row for row in roi.roi(Filters(*RANGE_DATES), Scope.everything())["rows"]}
    assert by_campaign[k1.id]["called_back"] == 2
    # Deletes (the callback of c8/c9 goes), a number removed, a campaign moving city.
    db.execute(delete(Call).where(Call.entry_id.in_(["c10", "c5"])))
    db.execute(update(Call).where(Call.entry_id == "c2").values(client_phone=None))
    db.execute(update(AdvertisingCampaign).where(AdvertisingCampaign.id == k2.id).values(city_id=world["b"].id))
    _same_as_the_table(db)
    by_campaign = {row["campaign_id"]: row for row in roi.roi(Filters(*RANGE_DATES), Scope.everything())["rows"]}
    assert by_campaign[k2.id]["called_back"] == 0 and by_campaign[k2.id]["city_name"] == "Бета"
    db.execute(delete(Call))
    assert db.scalar(select(CallDayStats.day).limit(1)) is None


def test_spend_crud_and_validation(client, world, make_user):
    k1, headers = world["k1"], world["headers"]
    listed = client.get(f"/api/advertising-campaigns/{k1.id}/spend", headers=headers).json
    assert [(row["date_from"], row["date_to"], row["month"], row["amount"]) for row in listed] == [
        ("2026-02-25", "2026-03-11", None, 1500.0), ("2026-03-01", "2026-03-31", "2026-03", 3100.0)]
    avitolog = token(client, make_user("avitolog"))
    spend_id = listed[1]["id"]
    changed = client.put(f"/api/advertising-campaigns/{k1.id}/spend/{spend_id}",
                         json={"date_to": "2026-03-15", "amount": "1234.50"}, headers=avitolog)
    assert changed.status_code == 200, changed.json
    assert (changed.json["date_from"], changed.json["date_to"], changed.json["days"], changed.json["amount"],
            changed.json["month"]) == ("2026-03-01", "2026-03-15", 15, 1234.5, None)
    bad = {
        "amount": {"month": "2026-03", "amount": -1},
        "amount ": {"month": "2026-03", "amount": "10.005"},
        "month": {"month": "2026-13", "amount": 1},
        "month  ": {"month": "2026-03", "date_from": "2026-03-01", "date_to": "2026-03-02", "amount": 1},
        "date_to": {"date_from": "2026-03-02", "date_to": "2026-03-01", "amount": 1},
        "date_to ": {"date_from": "2026-03-02", "amount": 1},
        "date_from": {"date_from": "вчера", "date_to": "2026-03-01", "amount": 1},
    }
    for field, body in bad.items():
        response = client.post(f"/api/advertising-campaigns/{k1.id}/spend", json=body, headers=headers)
        assert response.status_code == 422, (body, response.json)
        assert field.strip() in response.json["errors"] and response.json["detail"].startswith(
            ("Ошибка в данных запроса", "Сумма", "Месяц", "Период")), response.json
    reversed_end = client.put(f"/api/advertising-campaigns/{k1.id}/spend/{spend_id}", json={"date_to": "2026-02-01"},
                              headers=headers)
    assert reversed_end.status_code == 422 and reversed_end.json["detail"] == \
        "Период: Дата начала периода позже даты окончания"
    # Nothing half-written: the row is as the good PUT left it.
    assert client.get(f"/api/advertising-campaigns/{k1.id}/spend/{spend_id}", headers=headers).json["amount"] == 1234.5
    # A spend row of another campaign is not found under this one; a campaign with spend is kept.
    other = client.get(f"/api/advertising-campaigns/{world['k2'].id}/spend/{spend_id}", headers=headers)
    assert other.status_code == 404 and other.json["detail"] == "Запись о расходе не найдена"
    spare = AdvertisingCampaign(city_id=world["a"].id, name="Листовки", phone_number="+7 900 000-00-55",
                                phone="79000000055")
    from models.core.db import Session

    Session.add(spare)
    Session.commit()
    created = client.post(f"/api/advertising-campaigns/{spare.id}/spend", json={"month": "2026-05", "amount": 0},
                          headers=headers)
    assert created.status_code == 201 and created.json["amount"] == 0
    refused = client.delete(f"/api/advertising-campaigns/{spare.id}", headers=headers)
    assert refused.status_code == 409 and "расходах" in refused.json["detail"]
    gone = client.delete(f"/api/advertising-campaigns/{spare.id}/spend/{created.json['id']}", headers=headers)
    assert gone.status_code == 200
    assert client.delete(f"/api/advertising-campaigns/{spare.id}", headers=headers).status_code == 200
    assert client.get(f"/api/advertising-campaigns/{spare.id}/spend", headers=headers).status_code == 404


def _rollup_rows(session) -> tuple[set, set]:
    stats = {tuple(row) for row in session.execute(select(CallDayStats.__table__))}
    links = {tuple(row) for row in session.execute(select(CallDayLinks.__table__))}
    return stats, links


def _rows_from_calls(session) -> tuple[set, set]:
    stats_sql, links_sql = table_rows_sql(f"'{business_tz().key}'")
    return ({tuple(row) for row in session.execute(text(stats_sql))},
            {tuple(row) for row in session.execute(text(links_sql))})


def test_two_writers_of_one_number_are_applied_in_order(committed):
    """The second writer of a number waits for the first (an advisory lock per number), then reads its
    call: the missed call counts as called back and the second call as a repeat, as from the table."""
    from models import get_engine

    insert = text("INSERT INTO calls (entry_id, direction, client_phone, line_number, started_at, answered_at, "
                  "missed, created_at, updated_at) VALUES (:entry, 'in', '79110000077', :line, :at, :answered, "
                  ":missed, now(), now())")
    engine = get_engine()
    first, second, observer = engine.connect(), engine.connect(), engine.connect()
    try:
        first.begin()
        first.execute(insert, {"entry": "race-1", "line": LINE_NO_CAMPAIGN, "at": local("2026-03-12 10:00"),
                               "answered": None, "missed": True})
        second_pid = second.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        second.commit()
        done = threading.Event()

        def other_writer():
            with second.begin():
                second.execute(insert, {"entry": "race-2", "line": LINE_NO_CAMPAIGN, "at": local("2026-03-13 10:00"),
                                        "answered": local("2026-03-13 10:00:05"), "missed": False})
            done.set()

        thread = threading.Thread(target=other_writer)
        thread.start()

        def waiting_for_the_number() -> bool:
            observer.rollback()
            return observer.execute(text("SELECT wait_event = 'advisory' FROM pg_stat_activity WHERE pid = :pid"),
                                    {"pid": second_pid}).scalar()

        wait_for(waiting_for_the_number, timeout=10)
        assert not done.is_set()
        first.commit()
        thread.join(10)
        assert done.is_set()
    finally:
        for connection in (first, second, observer):
            connection.close()
    assert _rollup_rows(committed) == _rows_from_calls(committed)
    data = roi.roi(Filters(*RANGE_DATES), Scope.everything())
    assert (data["summary"]["calls"], data["summary"]["unique_callers"], data["summary"]["missed"],
            data["summary"]["called_back"]) == (2, 1, 1, 1)
