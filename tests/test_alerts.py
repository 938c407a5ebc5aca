"""Alerts end to end: real PostgreSQL, Redis and Celery worker; Telegram is a local server speaking
its Bot API (tests/telegram_server.py). Each test enables only the rules it is about, so the state
of the machine running the tests (its CPU, disks) cannot add messages.
"""
from __future__ import annotations

import dataclasses
import uuid
from html.parser import HTMLParser

import pytest
from sqlalchemy import select, text

import tasks.alerts as alerts_task
from models.core.db import Session
from models.core.probes import queue_depths
from models.core.redis import get_redis
from models.ops.alerts import RULES
from models.ops.tables import Alert, Job
from settings import settings
from tasks.celery_app import celery_app
from tests import telegram_server
from tests.factories import create_user
from tests.support import bearer, wait_for

INSTANCE = "leadline <prod> & co"
BEAT = {"trigger": "beat"}  # how the importer marks its scheduled runs (tasks/recordings.py)


@pytest.fixture()
def telegram():
    fake = telegram_server.start()
    yield fake
    fake.close()


@pytest.fixture()
def configure(monkeypatch, telegram):
    """Point the alerts at the fake Telegram and enable only the given rules (names or prefixes)."""

    def apply(*enabled: str, **overrides):
        disabled = [name for name in RULES if not any(name == e or name.startswith(e + ".") for e in enabled)]
        values = dict(TELEGRAM_BOT_TOKEN=telegram_server.TOKEN, TELEGRAM_CHAT_ID=telegram_server.CHAT_ID,
                      TELEGRAM_API_URL=telegram.url, ALERT_INSTANCE_NAME=INSTANCE, ALERT_RULES_DISABLED=disabled,
                      TELEGRAM_BACKOFF_SECONDS=0.05, ALERT_WORKER_PING_TIMEOUT=2.0)
        values.update(overrides)
        replaced = dataclasses.replace(settings, **values)
        monkeypatch.setattr(alerts_task, "settings", replaced)
        return replaced

    return apply


def alerts_of(rule: str) -> list[Alert]:
    Session.rollback()
    rows = Session.scalars(select(Alert).where(Alert.rule == rule).order_by(Alert.id)).all()
    Session.rollback()
    return rows


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)


def tags_in(message: str) -> set[str]:
    parser = TagCollector()
    parser.feed(message)
    return parser.tags


def assert_escaped(message: str) -> None:
    """The instance name carries <, > and &: escaped as Telegram's HTML mode needs, and the only
    tags are the ones the formatter writes."""
    assert "leadline &lt;prod&gt; &amp; co" in message
    assert "<prod>" not in message and "& co" not in message
    assert tags_in(message) <= {"b", "i", "code"}


# ---- "no worker alive": the heavy worker stops consuming, five evaluations, it comes back ----------

def worker_queues(name: str) -> set[str]:
    replies = celery_app.control.inspect(destination=[name], timeout=2.0).active_queues() or {}
    return {q["name"] for q in replies.get(name, [])}


def test_stopped_heavy_worker_fires_once_and_resolves_once(committed, celery_worker_thread, telegram, configure):
    configure("workers_down")
    name = celery_worker_thread.hostname
    control = celery_app.control
    control.cancel_consumer("heavy", destination=[name], reply=True, timeout=5.0)
    try:
        wait_for(lambda: worker_queues(name) == {"light"}, timeout=15)
        # A heavy message waits with nobody to take it (a read the worker had already begun hands it
        # back: kombu requeues what arrives for a cancelled queue).
        celery_app.send_task("jobs.ping", args=[str(uuid.uuid4())], queue="heavy")
        wait_for(lambda: queue_depths()["heavy"] >= 1, timeout=15)
        for _ in range(5):
            summary = alerts_task.evaluate()
            assert "workers_down.heavy" in summary["firing"] and "workers_down.light" not in summary["firing"]
        assert len(telegram.received) == 1
        [fired] = alerts_of("workers_down.heavy")
        assert fired.status == "firing" and fired.last_notified_at is not None
        assert fired.notifications[0]["kind"] == "fire" and fired.notifications[0]["ok"] is True
        assert alerts_of("workers_down.light") == []
    finally:
        control.add_consumer("heavy", destination=[name], reply=True, timeout=5.0)
    wait_for(lambda: "heavy" in worker_queues(name), timeout=15)
    wait_for(lambda: queue_depths()["heavy"] == 0, timeout=30)  # the worker took the waiting message

    summary = alerts_task.evaluate()
    assert summary["resolved"] == ["workers_down.heavy"]
    alerts_task.evaluate()  # nothing more to say

    bodies = telegram.delivered
    assert len(telegram.received) == 2 and len(bodies) == 2
    fire, resolve = bodies[0]["text"], bodies[1]["text"]
    assert all(b["chat_id"] == telegram_server.CHAT_ID and b["parse_mode"] == "HTML" for b in bodies)
    assert "Нет работающих обработчиков очереди heavy" in fire and "Ни один обработчик" in fire
    assert resolve.startswith("✅") and "Устранено" in resolve and name in resolve
    assert_escaped(fire)
    assert_escaped(resolve)
    [resolved] = alerts_of("workers_down.heavy")
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    assert [n["kind"] for n in resolved.notifications] == ["fire", "resolve"]


# ---- cooldown, acknowledgement, silence --------------------------------------------------------------

def beat_alive() -> None:
    from tasks.maintenance import heartbeat

    heartbeat()


def test_still_firing_alert_is_repeated_only_after_the_cooldown(committed, telegram, configure):
    s = configure("beat_silent", ALERT_COOLDOWN_MINUTES=30)
    alerts_task.evaluate()
    alerts_task.evaluate()
    assert len(telegram.delivered) == 1 and "Планировщик (beat) молчит" in telegram.texts()[0]

    # The last notice was longer ago than the cooldown: the next evaluation repeats it, once.
    Session.execute(text("UPDATE alerts SET last_notified_at = last_notified_at - make_interval(mins => :m)"),
                    {"m": s.ALERT_COOLDOWN_MINUTES + 1})
    Session.commit()
    alerts_task.evaluate()
    alerts_task.evaluate()
    texts = telegram.texts()
    assert len(texts) == 2 and texts[1].startswith("🔁") and "Всё ещё" in texts[1]
    assert_escaped(texts[1])

    beat_alive()
    alerts_task.evaluate()
    texts = telegram.texts()
    assert len(texts) == 3 and texts[2].startswith("✅")
    [alert] = alerts_of("beat_silent")
    assert [n["kind"] for n in alert.notifications] == ["fire", "repeat", "resolve"]


def admin_token(client):
    admin = create_user("admin")
    response = client.post("/api/auth/login", json={"login": admin.login, "password": "correct-horse-42"})
    return admin, bearer(response.json["access_token"])


def test_acknowledged_alert_is_not_repeated_but_its_resolve_is_sent(committed, client, telegram, configure):
    configure("beat_silent", ALERT_COOLDOWN_MINUTES=30)
    admin, auth = admin_token(client)
    alerts_task.evaluate()
    [alert] = alerts_of("beat_silent")

    response = client.post(f"/api/alerts/{alert.id}/acknowledge", headers=auth)
    assert response.status_code == 200
    assert response.json["acknowledged_by_id"] == admin.id and response.json["acknowledged_at"]
    Session.execute(text("UPDATE alerts SET last_notified_at = last_notified_at - interval '2 hours'"))
    Session.commit()
    alerts_task.evaluate()
    assert len(telegram.delivered) == 1

    beat_alive()
    alerts_task.evaluate()
    assert len(telegram.delivered) == 2 and telegram.texts()[1].startswith("✅")
    response = client.post(f"/api/alerts/{alert.id}/acknowledge", headers=auth)
    assert response.status_code == 409 and response.json["code"] == "alert_resolved"


def test_silenced_rule_is_stored_but_not_sent(committed, client, telegram, configure):
    configure("beat_silent")
    _admin, auth = admin_token(client)
    response = client.post("/api/alerts/silences", headers=auth,
                           json={"rule": "beat_silent", "minutes": 60, "reason": "переезд на новый сервер"})
    assert response.status_code == 201 and response.json["rule"] == "beat_silent"

    alerts_task.evaluate()
    alerts_task.evaluate()
    assert telegram.received == []
    listed = client.get("/api/alerts?status=firing", headers=auth).json
    assert [a["rule"] for a in listed] == ["beat_silent"]
    assert listed[0]["last_notified_at"] is None and listed[0]["notifications"][0]["silenced"] is True

    # The silence ends while the alert still fires: its first notice goes out now.
    assert client.delete("/api/alerts/silences/beat_silent", headers=auth).status_code == 200
    assert client.get("/api/alerts/silences", headers=auth).json == []
    alerts_task.evaluate()
    assert len(telegram.delivered) == 1 and "Планировщик" in telegram.texts()[0]


def test_silenced_rule_resolves_quietly(committed, client, telegram, configure):
    configure("beat_silent")
    _admin, auth = admin_token(client)
    client.post("/api/alerts/silences", headers=auth, json={"rule": "beat_silent", "minutes": 5})
    alerts_task.evaluate()
    beat_alive()
    alerts_task.evaluate()
    assert telegram.received == []
    [alert] = alerts_of("beat_silent")
    assert alert.status == "resolved"


def test_resolve_message_survives_a_worker_dying_before_it_is_sent(committed, telegram, configure, monkeypatch):
    """The resolution and an unsent resolve note are committed together: a worker that dies between
    them and the message (fault injected into the send) leaves the message for the next evaluation."""
    configure("beat_silent")
    alerts_task.evaluate()
    beat_alive()

    def worker_dies(self, message):
        raise SystemExit("worker killed")

    with monkeypatch.context() as patched:
        patched.setattr(alerts_task.TelegramSender, "send", worker_dies)
        with pytest.raises(SystemExit):
            alerts_task.evaluate()
    [alert] = alerts_of("beat_silent")
    assert alert.status == "resolved" and alert.notifications[-1]["kind"] == "resolve"
    assert alert.notifications[-1]["ok"] is False and len(telegram.delivered) == 1

    alerts_task.evaluate()
    assert len(telegram.delivered) == 2 and telegram.texts()[1].startswith("✅")
    [alert] = alerts_of("beat_silent")
    assert [n["kind"] for n in alert.notifications] == ["fire", "resolve"] and alert.notifications[-1]["ok"]
    alerts_task.evaluate()
    assert len(telegram.delivered) == 2  # sent once


# ---- Telegram's failures ------------------------------------------------------------------------------

def test_telegram_500_then_success_is_retried(committed, telegram, configure):
    configure("beat_silent")
    telegram.fail_next(500)
    alerts_task.evaluate()
    assert [r.status for r in telegram.received] == [500, 200]
    assert telegram.received[0].body == telegram.received[1].body
    [alert] = alerts_of("beat_silent")
    assert alert.last_notified_at is not None
    assert alert.notifications[-1]["ok"] is True and alert.notifications[-1]["attempts"] == 2


def test_telegram_429_waits_retry_after(committed, telegram, configure):
    configure("beat_silent")
    telegram.fail_next(429, retry_after=1)
    alerts_task.evaluate()
    first, second = telegram.received
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0  # Telegram asked for a second; a shorter backoff would not wait it
    assert len(telegram.delivered) == 1


def test_telegram_down_keeps_the_alert_and_sends_it_at_the_next_evaluation(committed, telegram, configure):
    s = configure("beat_silent", "imap_failures")
    telegram.fail_next(500, times=s.TELEGRAM_MAX_ATTEMPTS)
    for _ in range(3):  # the second alert must not pay for Telegram being down again
        Session.add(Job(kind="recordings.import", status="failed", error="timeout", params=BEAT))
    Session.commit()
    summary = alerts_task.evaluate()
    assert len(summary["failed"]) == 2 and summary["sent"] == []
    assert len(telegram.received) == s.TELEGRAM_MAX_ATTEMPTS
    [alert] = alerts_of("beat_silent")
    assert alert.status == "firing" and alert.last_notified_at is None
    assert alert.notifications[-1]["ok"] is False and "HTTP 500" in alert.notifications[-1]["error"]

    alerts_task.evaluate()
    assert len(telegram.delivered) == 2
    assert alerts_of("beat_silent")[0].last_notified_at is not None


def test_a_refused_message_is_not_retried_and_does_not_hold_back_the_others(committed, telegram, configure):
    configure("beat_silent", "imap_failures")
    for _ in range(3):
        Session.add(Job(kind="recordings.import", status="failed", error="timeout", params=BEAT))
    Session.commit()
    telegram.fail_next(400)
    summary = alerts_task.evaluate()
    assert summary["failed"] == ["fire:beat_silent"] and summary["sent"] == ["fire:imap_failures"]
    assert [r.status for r in telegram.received] == [400, 200]
    [alert] = alerts_of("beat_silent")
    assert alert.notifications[-1]["error"] == "HTTP 400: Bad Request: can't parse entities"
    alerts_task.evaluate()  # not yet announced: tried again
    assert len(telegram.delivered) == 2 and "Планировщик" in telegram.texts()[1]


def test_the_token_never_reaches_logs_or_the_database(committed, telegram, configure, caplog):
    configure("beat_silent", TELEGRAM_API_URL="http://127.0.0.1:9", TELEGRAM_MAX_ATTEMPTS=2)
    with caplog.at_level("DEBUG"):
        alerts_task.evaluate()
    [alert] = alerts_of("beat_silent")
    assert alert.notifications[-1]["ok"] is False and "ConnectionError" in alert.notifications[-1]["error"]
    assert telegram_server.TOKEN not in caplog.text
    assert telegram_server.TOKEN not in str(alert.notifications)
    assert "/bot***/sendMessage" in alert.notifications[-1]["error"]  # the URL is there, its token is not


# ---- other rules with values from outside ---------------------------------------------------------------

def test_imap_failures_fire_with_the_escaped_error_and_clear_after_a_success(committed, telegram, configure):
    configure("imap_failures", ALERT_IMAP_FAILURES=3)
    for _ in range(2):
        Session.add(Job(kind="recordings.import", status="failed", error="login failed", params=BEAT))
    Session.commit()
    alerts_task.evaluate()
    assert telegram.received == []  # two failures: under the threshold

    # A manual run refused because another was running is no mailbox failure: it does not count.
    Session.add(Job(kind="recordings.import", status="failed", error="Импорт записей уже выполняется",
                    params={"days_back": 3}))
    Session.commit()
    alerts_task.evaluate()
    assert telegram.received == []
    Session.add(Job(kind="recordings.import", status="failed", error="LOGIN failed for <calls@example.ru> & co",
                    params=BEAT))
    Session.commit()
    alerts_task.evaluate()
    [message] = telegram.texts()
    assert "Неудачных импортов записей подряд: 3" in message
    assert "&lt;calls@example.ru&gt; &amp; co" in message and "<calls@" not in message

    Session.add(Job(kind="recordings.import", status="succeeded", result={}, params=BEAT))
    Session.commit()
    alerts_task.evaluate()
    assert len(telegram.delivered) == 2 and telegram.texts()[1].startswith("✅")


def test_queue_backlog_of_a_queue_nobody_consumes(committed, celery_worker_thread, telegram, configure):
    configure("queue_backlog.heavy", ALERT_QUEUE_BACKLOG=0)
    name = celery_worker_thread.hostname
    celery_app.control.cancel_consumer("heavy", destination=[name], reply=True, timeout=5.0)
    try:
        wait_for(lambda: worker_queues(name) == {"light"}, timeout=15)
        celery_app.send_task("jobs.ping", args=[str(uuid.uuid4())], queue="heavy")
        wait_for(lambda: queue_depths()["heavy"] >= 1, timeout=15)
        alerts_task.evaluate()
        assert "Задач в очереди heavy: 1 (порог 0)" in telegram.texts()[0]
    finally:
        celery_app.control.add_consumer("heavy", destination=[name], reply=True, timeout=5.0)
    wait_for(lambda: queue_depths()["heavy"] == 0, timeout=30)
    alerts_task.evaluate()
    assert len(telegram.delivered) == 2 and telegram.texts()[1].startswith("✅")


# ---- how the evaluation runs ------------------------------------------------------------------------------

def test_evaluation_runs_on_the_light_worker(committed, celery_worker_thread, telegram, configure):
    configure("beat_silent")
    alerts_task.evaluate.delay()
    wait_for(lambda: telegram.delivered, timeout=30)
    assert "Планировщик" in telegram.texts()[0]
    assert get_redis().get(alerts_task.LAST_EVALUATION_KEY) is not None


def test_only_one_evaluation_at_a_time(committed, telegram, configure):
    configure("beat_silent")
    held = get_redis().lock(alerts_task.LOCK_KEY, timeout=60)
    assert held.acquire(blocking=False)
    try:
        assert alerts_task.evaluate() == {"skipped": "another evaluation is running"}
    finally:
        held.release()
    assert alerts_of("beat_silent") == [] and telegram.received == []


def test_fallback_evaluation_waits_while_the_light_queue_evaluates(committed, telegram, configure):
    configure("beat_silent")
    alerts_task.evaluate()
    assert alerts_task.evaluate(fallback=True) == {"skipped": "the light queue evaluates"}
    get_redis().delete(alerts_task.LAST_EVALUATION_KEY)  # the light queue's evaluations stopped
    assert "beat_silent" in alerts_task.evaluate(fallback=True)["firing"]
    assert "beat_silent" in alerts_task.evaluate(fallback=True)["firing"]  # and again, every time


def test_disabling_a_rule_closes_its_alert_without_a_message(committed, telegram, configure):
    configure("beat_silent")
    alerts_task.evaluate()
    configure("imap_failures")
    alerts_task.evaluate()
    [alert] = alerts_of("beat_silent")
    assert alert.status == "resolved" and len(telegram.received) == 1


# ---- the API -------------------------------------------------------------------------------------------

def test_alert_list_filters_and_pages(committed, client):
    _admin, auth = admin_token(client)
    now = "now()"
    Session.execute(text(
        "INSERT INTO alerts (rule, severity, status, message, fired_at, resolved_at) VALUES "
        f"('beat_silent', 'critical', 'resolved', 'старое', {now} - interval '2 days', {now} - interval '1 day'), "
        f"('beat_silent', 'critical', 'firing', 'новое', {now}, NULL), "
        f"('inbox_lag', 'warning', 'resolved', 'вебхуки', {now} - interval '1 hour', {now})"))
    Session.commit()
    everything = client.get("/api/alerts", headers=auth).json
    assert [a["message"] for a in everything] == ["новое", "вебхуки", "старое"]
    assert everything[0]["title"] == RULES["beat_silent"].title
    assert [a["message"] for a in client.get("/api/alerts?status=resolved", headers=auth).json] == ["вебхуки", "старое"]
    only_old = client.get("/api/alerts?rule=beat_silent&status=resolved", headers=auth).json
    assert [a["message"] for a in only_old] == ["старое"]
    page = client.get("/api/alerts?page=2&page_size=2", headers=auth)
    assert [a["message"] for a in page.json] == ["старое"]
    assert '"total": 3' in page.headers["X-Pagination"]

    bad = client.get("/api/alerts?status=open", headers=auth)
    assert bad.status_code == 422 and bad.json["detail"].startswith("Ошибка в данных запроса")
    assert client.get("/api/alerts?rule=nope", headers=auth).status_code == 422
    assert client.post("/api/alerts/999999/acknowledge", headers=auth).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"rule": "no_such_rule", "minutes": 10}, "rule"),
    ({"rule": "beat_silent", "minutes": 0}, "minutes"),
    ({"rule": "beat_silent", "minutes": 100000}, "minutes"),
    ({"rule": "beat_silent"}, "minutes"),
    ({"minutes": 5}, "rule"),
    ({"rule": "beat_silent", "minutes": "много"}, "minutes"),
])
def test_bad_silences_are_refused_in_russian(committed, client, body, field):
    _admin, auth = admin_token(client)
    response = client.post("/api/alerts/silences", headers=auth, json=body)
    assert response.status_code == 422 and field in response.json["errors"]
    assert response.json["detail"].startswith("Ошибка в данных запроса")
    assert client.get("/api/alerts/silences", headers=auth).json == []


def test_silence_again_replaces_it_and_rules_show_it(committed, client):
    _admin, auth = admin_token(client)
    client.post("/api/alerts/silences", headers=auth, json={"rule": "inbox_lag", "minutes": 5})
    again = client.post("/api/alerts/silences", headers=auth,
                        json={"rule": "inbox_lag", "minutes": 120, "reason": "работы у Mango"})
    assert again.status_code == 201
    [silence] = client.get("/api/alerts/silences", headers=auth).json
    assert silence["reason"] == "работы у Mango" and silence["until"] == again.json["until"]
    rules = {r["rule"]: r for r in client.get("/api/alerts/rules", headers=auth).json}
    assert set(rules) == set(RULES)
    assert rules["inbox_lag"]["silenced_until"] == again.json["until"]
    assert rules["beat_silent"]["silenced_until"] is None
    missing = client.delete("/api/alerts/silences/beat_silent", headers=auth)
    assert missing.status_code == 404 and missing.json["detail"]
