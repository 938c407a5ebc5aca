"""Masters hear about their jobs at once: real PostgreSQL, Redis and Celery worker; Telegram is a
local server speaking the Bot API (tests/telegram_server.py).

A master asks the API for a code, sends it to the bot, the bot's updates are read and the chat is
linked; from then on each change of their request (given to them, moved, re-addressed, cancelled,
taken away) is one message, in order, even when Telegram answers 429 first; `/stop` unlinks.
"""
from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

import api.telegram.routes as telegram_routes
import tasks.telegram as telegram_task
from models.core.db import Session, unit_of_work
from models.people.tables import User
from models.telegram import outbox
from models.telegram.tables import TelegramOutbox
from settings import settings
from tests import telegram_server
from tests.factories import create_user, make_city
from tests.support import bearer, wait_for

pytestmark = pytest.mark.worker

BOT_NAME = "leadline_test_bot"
MASTER_CHAT = 555001
OTHER_CHAT = 555002


@pytest.fixture()
def telegram():
    fake = telegram_server.start()
    yield fake
    fake.close()


@pytest.fixture()
def bot_settings(monkeypatch, telegram):
    """The worker (a thread of this process) and the API talk to the local Telegram."""
    replaced = dataclasses.replace(settings, TELEGRAM_BOT_TOKEN=telegram_server.TOKEN, TELEGRAM_API_URL=telegram.url,
                                   TELEGRAM_BOT_USERNAME=BOT_NAME, TELEGRAM_TIMEOUT_SECONDS=5.0)
    monkeypatch.setattr(telegram_task, "settings", replaced)
    monkeypatch.setattr(telegram_routes, "settings", replaced)
    return replaced


def token_of(client, user) -> dict[str, str]:
    answer = client.post("/api/auth/login", json={"login": user.login, "password": "correct-horse-42"})
    assert answer.status_code == 200, answer.json
    return bearer(answer.json["access_token"])


def chat_of(user_id: int) -> str | None:
    with unit_of_work(read_only=True):
        return Session.scalar(select(User.chat_id).where(User.id == user_id))


def poll_bot() -> None:
    """What beat does every TELEGRAM_POLL_SECONDS: the worker reads the bot's updates."""
    telegram_task.poll_updates.apply_async()


def texts_to(telegram, chat: int) -> list[str]:
    return [body["text"] for body in telegram.sent() if str(body["chat_id"]) == str(chat)]


def link(client, telegram, user, chat: int) -> None:
    headers = token_of(client, user)
    answer = client.post("/api/users/me/telegram-link", headers=headers)
    assert answer.status_code == 201, answer.json
    code = answer.json["code"]
    assert answer.json["deep_link"] == f"https://t.me/{BOT_NAME}?start={code}"
    assert code in answer.json["instruction"] or answer.json["deep_link"] in answer.json["instruction"]
    telegram.user_sends(chat, f"/start {code}")  # what the deep link's «Старт» sends
    poll_bot()
    wait_for(lambda: chat_of(user.id) == str(chat), timeout=20)
    wait_for(lambda: any("Telegram привязан" in t for t in texts_to(telegram, chat)), timeout=20)
    assert client.get("/api/users/me/telegram-link", headers=headers).json == {"linked": True}


def outbox_rows() -> list[TelegramOutbox]:
    with unit_of_work(read_only=True):
        rows = Session.scalars(select(TelegramOutbox).order_by(TelegramOutbox.id)).all()
        Session.expunge_all()
    return rows


def test_master_links_and_gets_one_message_per_change_in_order_through_a_429(
        committed, celery_worker_thread, client, telegram, bot_settings):
    city = make_city("Тверь")
    master = create_user("master", city_id=city.id, full_name="Иван Мастеров")
    manager = create_user("manager")
    office = token_of(client, manager)
    link(client, telegram, master, MASTER_CHAT)
    replies = len(texts_to(telegram, MASTER_CHAT))

    # Telegram is overloaded when the first job goes out (429: every send waits retry_after), then fails
    # it once more (500: that message waits, the bot does not): the request's later messages wait behind it.
    telegram.fail_next(429, retry_after=1, method="sendMessage")
    telegram.fail_next(500, method="sendMessage")
    created = client.post("/api/requests/", headers=office, json={
        "client_phone": "+7 (912) 345-67-89", "client_name": "Анна Клиентова", "city_id": city.id,
        "address": "ул. Ленина, 1 <кв. 5>", "problem": "Не сливает воду", "master_id": master.id,
        "meeting_date": "2026-12-10T11:00:00+00:00"})
    assert created.status_code == 201, created.json
    request_id = created.json["id"]
    for change in ({"meeting_date": "2026-12-10T13:30:00+00:00"}, {"address": "ул. Ленина, 3"},
                   {"status": "Отказ"}):
        answer = client.put(f"/api/requests/{request_id}", headers=office, json=change)
        assert answer.status_code == 200, answer.json

    wait_for(lambda: len(texts_to(telegram, MASTER_CHAT)) >= replies + 4, timeout=30)
    job_messages = texts_to(telegram, MASTER_CHAT)[replies:]
    assert [m.splitlines()[0] for m in job_messages] == [
        f"<b>🆕 Новая заявка №{request_id}</b>",
        f"<b>✏️ Заявка №{request_id}: изменено время</b>",
        f"<b>✏️ Заявка №{request_id}: изменено адрес</b>",
        f"<b>❌ Заявка №{request_id} отменена (статус «Отказ»)</b>",
    ]
    first = job_messages[0]
    # Time in the business zone (Moscow, UTC+3), the client's name and phone, the text escaped for HTML.
    assert "🕒 Время: 10.12.2026 14:00" in first and "Не сливает воду" in first
    assert "Анна Клиентова, +7 (912) 345-67-89" in first and "ул. Ленина, 1 &lt;кв. 5&gt;" in first
    assert "10.12.2026 16:30 (было 10.12.2026 14:00)" in job_messages[1]
    assert "ул. Ленина, 3 (было: ул. Ленина, 1 &lt;кв. 5&gt;)" in job_messages[2]

    # The 429 was honoured: the same message again, no sooner than retry_after; nothing overtook it.
    calls = [r for r in telegram.calls("sendMessage") if str(r.body["chat_id"]) == str(MASTER_CHAT)][replies:]
    assert [r.status for r in calls] == [429, 500, 200, 200, 200, 200]
    assert calls[0].body == calls[1].body == calls[2].body and calls[1].at - calls[0].at >= 1.0
    assert all(body["parse_mode"] == "HTML" for body in telegram.sent())

    # Sent once: the outbox says so, and another pass sends nothing more.
    telegram_task.deliver()
    time.sleep(0.3)
    assert len(texts_to(telegram, MASTER_CHAT)) == replies + 4
    rows = [r for r in outbox_rows() if r.request_id == request_id]
    assert [(r.kind, r.status) for r in rows] == [("assigned", "sent"), ("changed", "sent"), ("changed", "sent"),
                                                  ("cancelled", "sent")]
    assert rows[0].attempts == 3 and all(r.attempts == 1 for r in rows[1:])


def test_reassignment_tells_both_masters_and_a_masters_own_change_tells_nobody(
        committed, celery_worker_thread, client, telegram, bot_settings):
    city = make_city("Псков")
    first = create_user("master", city_id=city.id, full_name="Первый")
    second = create_user("master", city_id=city.id, full_name="Второй")
    unlinked = create_user("master", city_id=city.id, full_name="Без телеграма")
    office = token_of(client, create_user("manager"))
    link(client, telegram, first, MASTER_CHAT)
    link(client, telegram, second, OTHER_CHAT)
    before_first, before_second = len(texts_to(telegram, MASTER_CHAT)), len(texts_to(telegram, OTHER_CHAT))

    request_id = client.post("/api/requests/", headers=office, json={
        "client_phone": "89123456780", "client_name": "Пётр", "city_id": city.id, "address": "пр. Мира, 7",
        "master_id": first.id}).json["id"]
    # The master's own change (status, notes) is not told back to them.
    own = client.put(f"/api/requests/{request_id}", headers=token_of(client, first), json={"status": "В пути"})
    assert own.status_code == 200, own.json
    assert client.put(f"/api/requests/{request_id}", headers=office,
                      json={"master_id": second.id}).status_code == 200
    # Given to a master without Telegram: nothing is queued for them; the second is told it was taken away.
    assert client.put(f"/api/requests/{request_id}", headers=office,
                      json={"master_id": unlinked.id}).status_code == 200

    wait_for(lambda: len(texts_to(telegram, OTHER_CHAT)) >= before_second + 2, timeout=30)
    to_first = texts_to(telegram, MASTER_CHAT)[before_first:]
    to_second = texts_to(telegram, OTHER_CHAT)[before_second:]
    assert [m.splitlines()[0] for m in to_first] == [
        f"<b>🆕 Новая заявка №{request_id}</b>", f"<b>↩️ Заявка №{request_id} передана другому мастеру</b>"]
    assert [m.splitlines()[0] for m in to_second] == [
        f"<b>🆕 Новая заявка №{request_id}</b>", f"<b>↩️ Заявка №{request_id} передана другому мастеру</b>"]
    assert "Пётр" not in to_first[1]  # the client is no longer theirs: no name or phone
    assert {r.user_id for r in outbox_rows() if r.request_id == request_id} == {first.id, second.id}


def test_stop_unlinks_and_a_bad_code_links_nothing(committed, celery_worker_thread, client, telegram, bot_settings):
    city = make_city("Вологда")
    master = create_user("master", city_id=city.id)
    office = token_of(client, create_user("manager"))
    link(client, telegram, master, MASTER_CHAT)

    telegram.user_sends(MASTER_CHAT, "/stop")
    telegram.user_sends(OTHER_CHAT, "ZZZZ2222")  # a code nobody was given
    telegram.user_sends(-100500, "/start ABCD")  # a group the bot sits in: ignored
    poll_bot()
    wait_for(lambda: chat_of(master.id) is None, timeout=20)
    wait_for(lambda: any("Уведомления отключены" in t for t in texts_to(telegram, MASTER_CHAT)), timeout=20)
    wait_for(lambda: any("Код не подошёл" in t for t in texts_to(telegram, OTHER_CHAT)), timeout=20)
    assert texts_to(telegram, -100500) == []
    assert client.get("/api/users/me/telegram-link", headers=token_of(client, master)).json == {"linked": False}

    sent = len(telegram.sent())
    client.post("/api/requests/", headers=office, json={
        "client_phone": "89123450000", "city_id": city.id, "master_id": master.id})
    telegram_task.deliver()
    assert len(telegram.sent()) == sent  # unlinked: nothing queued, nothing sent
    assert [r for r in outbox_rows() if r.kind == "assigned"] == []

    # Each update is acted on once: the offset is stored, asking again hands out nothing new.
    assert telegram_task.poll_updates()["updates"] == 0


def test_a_used_or_replaced_code_no_longer_links(committed, celery_worker_thread, client, telegram, bot_settings):
    master = create_user("master", city_id=make_city().id)
    headers = token_of(client, master)
    old = client.post("/api/users/me/telegram-link", headers=headers).json["code"]
    new = client.post("/api/users/me/telegram-link", headers=headers).json["code"]
    telegram.user_sends(OTHER_CHAT, old)
    telegram_task.poll_updates()
    assert chat_of(master.id) is None
    telegram.user_sends(MASTER_CHAT, new.lower())  # typed by hand, any case
    telegram_task.poll_updates()
    assert chat_of(master.id) == str(MASTER_CHAT)
    telegram.user_sends(OTHER_CHAT, new)  # used already
    telegram_task.poll_updates()
    assert chat_of(master.id) == str(MASTER_CHAT)
    wait_for(lambda: len(texts_to(telegram, OTHER_CHAT)) == 2, timeout=20)  # the worker sends the replies
    assert [t.split(".")[0] for t in texts_to(telegram, OTHER_CHAT)] == ["Код не подошёл или устарел"] * 2


def test_at_most_the_configured_messages_a_second(committed, telegram, bot_settings):
    """40 messages at once leave at TELEGRAM_MAX_PER_SECOND (25): no second holds more."""
    with unit_of_work():
        for n in range(40):
            outbox.queue_message(f"сообщение {n}", kind="reply", chat_id=str(OTHER_CHAT))
    started = time.monotonic()
    summary = outbox.deliver_due(bot_settings)
    assert summary["sent"] == 40 and time.monotonic() - started >= 39 / 25
    times = sorted(r.at for r in telegram.calls("sendMessage"))
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 25
    assert texts_to(telegram, OTHER_CHAT) == [f"сообщение {n}" for n in range(40)]


def test_code_route_is_for_masters_and_needs_no_body(client, db, make_user):
    director = make_user("director")
    answer = client.post("/api/users/me/telegram-link", headers=token_of(client, director))
    assert answer.status_code == 403 and answer.json["detail"] == "Недостаточно прав"
    master = make_user("master")
    headers = token_of(client, master)
    answer = client.post("/api/users/me/telegram-link", headers=headers, json={"junk": [1, 2]})
    assert answer.status_code == 201
    code = answer.json["code"]
    assert len(code) == 8 and code.isalnum()
    expires = datetime.fromisoformat(answer.json["expires_at"])
    assert 590 <= (expires - datetime.now(timezone.utc)).total_seconds() <= 600
    assert client.delete("/api/users/me/telegram-link", headers=headers).json == {
        "message": "Telegram не был привязан"}


def test_a_job_with_very_long_fields_still_fits_in_one_message():
    from models.requests.notices import job_text
    from models.requests.tables import Request

    request = Request(id=7, address="ул. " + "о" * 3000, problem="п" * 5000, client_name="и" * 3000,
                      client_phone="79990000000")
    text = job_text(request, "🆕 Новая заявка №7", {"address": "с" * 3000})
    assert len(text) <= 4096 and "+79990000000" in text and text.count("…") == 4
