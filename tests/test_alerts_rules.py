"""The pure alert logic: thresholds, missing readings, the life of one alert, the Telegram text."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from models.ops.alerts import RULES, Current, Decision, decide, evaluate, format_message, is_disabled
from settings import settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
COOLDOWN = timedelta(minutes=30)
S = dataclasses.replace(settings, ALERT_RULES_DISABLED=None)


def by_rule(snapshot, s=S):
    return {f.rule: f for f in evaluate(snapshot, s)}


@pytest.mark.parametrize("snapshot, rule, firing", [
    ({"http": (100, 6)}, "api_5xx_ratio", True),
    ({"http": (100, 5)}, "api_5xx_ratio", False),  # exactly the ratio: not above it
    ({"http": (10, 10)}, "api_5xx_ratio", False),  # too few calls to judge
    ({"queue_depths": {"light": 501, "heavy": 0}}, "queue_backlog.light", True),
    ({"queue_depths": {"light": 501, "heavy": 0}}, "queue_backlog.heavy", False),
    ({"queue_ages": {"light": None, "heavy": 301.0}}, "queue_age.heavy", True),
    ({"queue_ages": {"light": None, "heavy": 301.0}}, "queue_age.light", False),
    ({"workers": {"light": None, "heavy": []}}, "workers_down.heavy", True),
    ({"workers": {"light": None, "heavy": []}}, "workers_down.light", False),
    ({"workers": {"light": ["light@a"], "heavy": ["heavy@b"]}}, "workers_down.heavy", False),
    ({"beat_age": None}, "beat_silent", True),
    ({"beat_age": 181.0}, "beat_silent", True),
    ({"beat_age": 30.0}, "beat_silent", False),
    ({"inbox_lag": None}, "inbox_lag", False),
    ({"inbox_lag": 121.0}, "inbox_lag", True),
    ({"imap": (3, "timeout")}, "imap_failures", True),
    ({"imap": (2, "timeout")}, "imap_failures", False),
    ({"db_connections": (81, 100)}, "db_connections", True),
    ({"db_connections": (80, 100)}, "db_connections", False),
    ({"redis_memory": {"used_memory": 90, "maxmemory": 100}}, "redis_memory", True),
    ({"redis_memory": {"used_memory": 90, "maxmemory": 0}}, "redis_memory", False),  # no limit set
    ({"host_cpu": 95.0}, "host_cpu", True),
    ({"host_memory": 50.0}, "host_memory", False),
    ({"disk": {"media": (5.0, "/data/media")}}, "disk_media", True),
    ({"disk": {"media": (50.0, "/data/media"), "db": (9.9, "/pg")}}, "disk_db", True),
])
def test_thresholds(snapshot, rule, firing):
    assert by_rule(snapshot)[rule].firing is firing


def test_a_missing_reading_says_nothing():
    """A probe that failed leaves its rules out: neither fired nor resolved on a guess."""
    assert evaluate({}, S) == []
    assert set(by_rule({"queue_depths": {"light": 1, "heavy": 2}})) == {"queue_backlog.light", "queue_backlog.heavy"}


def test_disabled_rules_and_prefixes():
    s = dataclasses.replace(settings, ALERT_RULES_DISABLED=["queue_age", "host_cpu"])
    findings = by_rule({"queue_ages": {"light": 999.0, "heavy": 999.0}, "host_cpu": 99.0, "host_memory": 99.0}, s)
    assert set(findings) == {"host_memory"}
    assert is_disabled("queue_age.light", ["queue_age"]) and not is_disabled("queue_age_x", ["queue_age"])


def current(notified_minutes_ago=None, acknowledged=False):
    notified = None if notified_minutes_ago is None else NOW - timedelta(minutes=notified_minutes_ago)
    return Current(fired_at=NOW - timedelta(hours=2), last_notified_at=notified, acknowledged=acknowledged)


@pytest.mark.parametrize("firing, state, silenced, expected", [
    (True, None, False, Decision(open=True, send="fire")),
    (True, None, True, Decision(open=True)),
    (True, current(5), False, Decision()),  # within the cooldown
    (True, current(30), False, Decision(send="repeat")),
    (True, current(90, acknowledged=True), False, Decision()),  # someone is on it
    (True, current(None), False, Decision(send="fire")),  # the first notice was silenced or failed
    (True, current(None), True, Decision()),
    (False, current(10), False, Decision(close=True, send="resolve")),
    (False, current(10, acknowledged=True), False, Decision(close=True, send="resolve")),
    (False, current(None), False, Decision(close=True)),  # never announced: no resolve either
    (False, current(10), True, Decision(close=True)),
    (False, None, False, Decision()),
    (None, current(10), False, Decision()),  # unknown: the alert stays as it is
])
def test_the_life_of_an_alert(firing, state, silenced, expected):
    assert decide(firing, state, now=NOW, cooldown=COOLDOWN, silenced=silenced) == expected


def test_messages_escape_every_value_and_say_what_happened():
    fired = format_message("fire", "imap_failures", "ошибка <b>&</b>", instance="prod <1>")
    assert fired.startswith("🟠 <b>Импорт записей звонков не удаётся</b>\n")
    assert "ошибка &lt;b&gt;&amp;&lt;/b&gt;" in fired and "prod &lt;1&gt;" in fired
    repeat = format_message("repeat", "beat_silent", "x", instance="p", fired_at=NOW - timedelta(minutes=45),
                            now=NOW)
    assert repeat.startswith("🔁 <b>Всё ещё: Планировщик (beat) молчит</b> (уже 45 мин)")
    resolved = format_message("resolve", "beat_silent", "x", instance="p", fired_at=NOW - timedelta(hours=3),
                              now=NOW)
    assert resolved.startswith("✅ <b>Устранено: Планировщик (beat) молчит</b> (длилось 3 ч 0 мин)")
    long = format_message("fire", "inbox_lag", "я" * 5000, instance="p")
    assert len(long) < 4096


def test_every_rule_has_a_russian_title_and_a_severity():
    for info in RULES.values():
        assert info.severity in ("info", "warning", "critical")
        assert any("а" <= ch <= "я" for ch in info.title.lower())
        assert len(info.name) <= 50  # alerts.rule is VARCHAR(50)
