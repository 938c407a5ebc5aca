"""The daily digest: real PostgreSQL, Redis, Celery worker and (for the once-a-day rule) a real beat;
Telegram is the local Bot API server. Its figures are compared with what the reports answer for the
same day, through the API, and its chart must open as a PNG.
"""
from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

import tasks.telegram as telegram_task
from models import Call
from models.core.business_time import business_tz, today_local
from models.core.db import Session, unit_of_work
from models.reports import digest
from models.reports.digest import DigestRun
from settings import settings
from tests import telegram_server
from tests.factories import create_user, make_city, make_request
from tests.support import at_once, bearer, stop_process_group, wait_for

pytestmark = pytest.mark.worker

REPO = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
DIGEST_CHAT = "-100777000"


@pytest.fixture()
def telegram():
    fake = telegram_server.start()
    yield fake
    fake.close()


@pytest.fixture()
def digest_settings(monkeypatch, telegram):
    replaced = dataclasses.replace(settings, TELEGRAM_BOT_TOKEN=telegram_server.TOKEN, TELEGRAM_API_URL=telegram.url,
                                   TELEGRAM_CHAT_ID=telegram_server.CHAT_ID, DIGEST_CHAT_ID=DIGEST_CHAT, DIGEST_HOUR=0)
    monkeypatch.setattr(telegram_task, "settings", replaced)
    return replaced


def local(day, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=business_tz()).astimezone(timezone.utc)


def call(entry: str, phone: str, at: datetime, *, direction: str, missed: bool, answered: bool) -> None:
    with unit_of_work():
        Session.add(Call(entry_id=entry, direction=direction, client_phone=phone, started_at=at, missed=missed,
                         answered_at=at + timedelta(seconds=5) if answered else None))


def a_day_of_work():
    """Yesterday (the day the digest tells about) in two cities, a day before it and today around it."""
    day = today_local() - timedelta(days=1)
    north, south = make_city("Архангельск"), make_city("Сочи")
    done = dict(status="Готово", result=Decimal("12000.50"), expenses=Decimal("2000.50"),
                net_amount=Decimal("10000.00"), master_handover=Decimal("5000.00"))
    make_request(north.id, created_at=local(day, 9), **done)
    make_request(north.id, created_at=local(day, 23, 30), status="Новая")
    cheaper = {**done, "result": Decimal("3000"), "master_handover": Decimal("1234.56")}
    make_request(south.id, created_at=local(day, 0, 10), **cheaper)
    make_request(south.id, created_at=local(day, 12), status="Отказ")
    make_request(south.id, created_at=local(day - timedelta(days=3), 15), **done)  # in the chart only
    make_request(north.id, created_at=local(day + timedelta(days=1), 0, 5), **done)  # today: not in the digest
    # Two missed calls: one called back within 15 minutes, one after an hour; a missed call of the day before.
    call("m1", "79110000001", local(day, 10), direction="in", missed=True, answered=False)
    call("b1", "79110000001", local(day, 10, 12), direction="out", missed=False, answered=True)
    call("m2", "79110000002", local(day, 11), direction="in", missed=True, answered=False)
    call("b2", "79110000002", local(day, 12), direction="out", missed=False, answered=True)
    call("m0", "79110000003", local(day - timedelta(days=1), 18), direction="in", missed=True, answered=False)
    return day, north, south


def report(client, headers, day, **extra) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"date_from": day, "date_to": day, **extra}.items())
    answer = client.get(f"/api/reports/dashboard?{query}", headers=headers)
    assert answer.status_code == 200, answer.json
    return answer.json


def digest_row(day) -> DigestRun:
    with unit_of_work(read_only=True):
        row = Session.scalar(select(DigestRun).where(DigestRun.day == day))
        Session.expunge_all()
    return row


def test_digest_goes_once_with_the_reports_figures_and_a_png_chart(
        committed, celery_worker_thread, client, telegram, digest_settings):
    day, north, south = a_day_of_work()
    for _ in range(3):  # three checks in a row (a beat that restarted): one digest
        telegram_task.send_digest.apply_async()
    wait_for(lambda: (row := digest_row(day)) is not None and row.status == "sent", timeout=60)
    time.sleep(0.5)
    [message] = telegram.sent("sendMessage")
    [photo] = telegram.sent("sendPhoto")
    assert message["chat_id"] == DIGEST_CHAT and photo["chat_id"] == DIGEST_CHAT

    # The chart is a real PNG, of the last 14 days.
    png = photo["photo"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert image.format == "PNG" and image.size == (800, 400)
    assert day.strftime("%d.%m.%Y") in photo["caption"]

    # The figures are the dashboard report's for the same day, in total and per city.
    manager = create_user("manager")
    signed_in = client.post("/api/auth/login", json={"login": manager.login, "password": "correct-horse-42"})
    headers = bearer(signed_in.json["access_token"])
    row = digest_row(day)
    total = report(client, headers, day)
    assert row.figures["total"] == {"requests": total["requests_total"], "completed": total["completed"],
                                    "revenue": f"{total['revenue']:.2f}", "income": f"{total['handover']:.2f}"}
    assert (total["requests_total"], total["completed"]) == (4, 2)
    for city in (north, south):
        figures = report(client, headers, day, city_id=city.id)
        [shown] = [c for c in row.figures["cities"] if c["city_id"] == city.id]
        assert (shown["requests"], shown["completed"]) == (figures["requests_total"], figures["completed"])
        assert Decimal(shown["revenue"]) == Decimal(str(figures["revenue"]))
        assert Decimal(shown["income"]) == Decimal(str(figures["handover"]))
        assert (f"{city.name}: заявок {figures['requests_total']}, выполнено {figures['completed']}, "
                f"выручка {digest.money(str(figures['revenue']))}, доход {digest.money(str(figures['handover']))}"
                ) in message["text"]
    text = message["text"]
    assert f"Итоги дня {day.strftime('%d.%m.%Y')}" in text
    assert "Заявок: <b>4</b> · выполнено: <b>2</b>" in text
    assert "Выручка: <b>15\u00a0000,50\u00a0₽</b> · доход компании: <b>6\u00a0234,56\u00a0₽</b>" in text
    assert "Пропущенных звонков: <b>2</b> · перезвонили в течение 15 мин: <b>1</b> (50 %)" in text
    assert row.figures["calls"] == {"missed": 2, "called_back": 1, "sla_minutes": 15}

    # The chart's series is the call-centre report's days.
    days = client.get(f"/api/reports/callcenter?date_from={day - timedelta(days=13)}&date_to={day}",
                      headers=headers).json["days"]
    by_day = {d["date"]: (d["requests"], d["completed"]) for d in days}
    assert [(d["requests"], d["completed"]) for d in row.figures["days"]] == [
        by_day.get(d["date"], (0, 0)) for d in row.figures["days"]]
    assert row.figures["days"][-4]["completed"] == 1 and row.figures["days"][-1]["requests"] == 4

    # Asked again (the next check): nothing more.
    assert telegram_task.send_digest()["skipped"] == "уже отправлена"
    assert len(telegram.received) == 2


def test_one_of_three_sends_at_once_claims_the_day_and_a_failed_chart_goes_at_the_next_check(
        committed, telegram, digest_settings):
    day = today_local() - timedelta(days=1)
    telegram.fail_next(400, method="sendPhoto")

    def send():
        try:
            return digest.send(day, digest_settings)
        except digest.DigestNotSent:
            return {"failed": True}

    results = at_once(send, send, send)
    assert sorted(str(r) for r in results).count(str({"day": day.isoformat(), "skipped": "уже отправлена"})) == 2
    assert {"failed": True} in results
    assert digest_row(day).status == "failed" and len(telegram.sent("sendMessage")) == 1
    # The next check sends the chart only: the text went already.
    assert digest.send_due(digest_settings)["sent"].keys() == {"text", "chart"}
    assert len(telegram.sent("sendMessage")) == 1 and len(telegram.sent("sendPhoto")) == 1
    assert digest_row(day).attempts == 2 and digest_row(day).status == "sent"


def test_the_digest_waits_for_its_hour():
    s = dataclasses.replace(settings, DIGEST_HOUR=9)
    morning = local(today_local(), 8, 59)
    assert digest.due_day(s, morning) is None
    assert digest.due_day(s, morning + timedelta(minutes=1)) == today_local() - timedelta(days=1)


def test_cli_prints_the_digest_without_sending(committed, app, telegram, digest_settings, tmp_path):
    day, north, _south = a_day_of_work()
    chart = tmp_path / "chart.png"
    result = app.test_cli_runner().invoke(args=["digest", "--date", day.isoformat(), "--print", "--chart", str(chart)])
    assert result.exit_code == 0, result.output
    assert "Заявок: <b>4</b> · выполнено: <b>2</b>" in result.output and north.name in result.output
    assert Image.open(chart).format == "PNG"
    assert telegram.received == [] and digest_row(day) is None


@pytest.mark.slow
def test_beat_sends_the_digest_once_a_day_even_when_restarted(
        committed, celery_worker_thread, telegram, digest_settings, tmp_path):
    """A real beat (checking every second) started twice: the day's digest goes once."""
    day = today_local() - timedelta(days=1)
    env = dict(os.environ, APP_ENV="test", DIGEST_CHECK_SECONDS="1", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    for run in range(2):
        log = open(tmp_path / f"beat-{run}.log", "wb")
        beat = subprocess.Popen([CELERY, "-A", "tasks.sender", "beat", "--loglevel", "INFO",
                                 "-s", str(tmp_path / "beat-schedule")],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            sent_by = lambda: (tmp_path / f"beat-{run}.log").read_text().count("telegram.send_digest")  # noqa: E731
            wait_for(lambda: sent_by() >= 2, timeout=60, interval=0.2)  # beat asked twice at least
        finally:
            stop_process_group(beat, timeout=20)
            log.close()
        wait_for(lambda: (row := digest_row(day)) is not None and row.status == "sent", timeout=60)
    assert len(telegram.sent("sendMessage")) == 1 and len(telegram.sent("sendPhoto")) == 1


def test_best_and_worst_campaigns_by_romi_never_overlap():
    rows = [{"name": f"К{n}", "romi": romi} for n, romi in enumerate([0.5, -0.2, 2.0, None, 1.0, -1.0, 0.1])]
    best, worst = digest.best_and_worst(rows)
    assert [r["name"] for r in best] == ["К2", "К4", "К0"] and [r["name"] for r in worst] == ["К5", "К1", "К6"]
    best, worst = digest.best_and_worst(rows[:4])
    assert [r["name"] for r in best] == ["К2", "К0", "К1"] and worst == []
    empty_day = {"day": "2026-12-05", "total": {"requests": 0, "completed": 0, "revenue": "0", "income": "0"},
                 "cities": [], "calls": {"missed": 0, "called_back": 0, "sla_minutes": 15}}
    text = digest.render_text({**empty_day, "campaigns": rows})
    assert "<b>Лучшие кампании по ROMI</b>\nК2: +200 %\nК4: +100 %\nК0: +50 %" in text
    assert "<b>Худшие кампании по ROMI</b>\nК5: -100 %\nК1: -20 %\nК6: +10 %" in text


def test_many_cities_still_fit_in_one_message():
    cities = [{"city_name": f"Город номер {n}", "requests": n, "completed": n, "revenue": "123456.78",
               "income": "65432.10"} for n in range(200)]
    day = {"day": "2026-12-05", "total": {"requests": 1, "completed": 1, "revenue": "1", "income": "1"},
           "calls": {"missed": 3, "called_back": 1, "sla_minutes": 15}}
    text = digest.render_text({**day, "cities": cities})
    assert len(text) <= digest.MESSAGE_LIMIT
    assert "Город номер 0:" in text and "…и ещё городов:" in text and "Пропущенных звонков: <b>3</b>" in text
