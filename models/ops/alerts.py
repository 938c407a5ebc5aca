"""Alert rules as pure logic: a snapshot of probe readings and the settings in, findings out; the
life of one alert (fire, repeat after the cooldown, resolve) decided from its stored state; the
Telegram text. No I/O here: tasks/alerts.py reads the probes, stores alerts and sends messages.

A snapshot is a dict; a reading whose probe failed is simply absent, and a rule whose reading is
absent says nothing (neither fires nor resolves) rather than guess.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

QUEUES = ("light", "heavy")
SEVERITY_MARK = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
MESSAGE_LIMIT = 3500  # Telegram takes 4096 characters per message; room for the frame


@dataclass(frozen=True)
class RuleInfo:
    name: str
    severity: str
    title: str


def _rules() -> dict[str, RuleInfo]:
    rules = [
        RuleInfo("api_5xx_ratio", "critical", "Много ошибок API (5xx)"),
        *[RuleInfo(f"queue_backlog.{q}", "warning", f"Очередь {q}: накопились задачи") for q in QUEUES],
        *[RuleInfo(f"queue_age.{q}", "critical", f"Очередь {q}: задачи ждут слишком долго") for q in QUEUES],
        *[RuleInfo(f"workers_down.{q}", "critical", f"Нет работающих обработчиков очереди {q}") for q in QUEUES],
        RuleInfo("beat_silent", "critical", "Планировщик (beat) молчит"),
        RuleInfo("inbox_lag", "warning", "Вебхуки Mango не обрабатываются"),
        RuleInfo("callbacks_overdue", "warning", "Пропущенным звонкам не перезванивают вовремя"),
        RuleInfo("imap_failures", "warning", "Импорт записей звонков не удаётся"),
        RuleInfo("db_connections", "warning", "Заняты почти все подключения к базе данных"),
        RuleInfo("redis_memory", "warning", "Redis: заканчивается память"),
        RuleInfo("host_cpu", "warning", "Высокая загрузка процессора"),
        RuleInfo("host_memory", "warning", "Заканчивается оперативная память"),
        RuleInfo("disk_media", "critical", "Мало места на диске с файлами"),
        RuleInfo("disk_db", "critical", "Мало места на диске базы данных"),
    ]
    return {rule.name: rule for rule in rules}


RULES: dict[str, RuleInfo] = _rules()


def is_disabled(rule: str, disabled: list[str] | None) -> bool:
    """A rule is off when named, or when a prefix of it is named ('queue_age' covers both queues)."""
    for entry in disabled or ():
        if rule == entry or rule.startswith(entry + "."):
            return True
    return False


@dataclass(frozen=True)
class Finding:
    rule: str
    firing: bool | None  # None: the reading is missing, the rule says nothing
    value: float | None
    text: str  # plain Russian text; escaped when it becomes HTML


def _finding(rule: str, firing: bool | None, value: float | None, text: str) -> Finding:
    return Finding(rule, firing, None if value is None else round(float(value), 3), text)


def _seconds(value: float) -> str:
    value = int(value)
    if value < 120:
        return f"{value} с"
    if value < 7200:
        return f"{value // 60} мин"
    return f"{value // 3600} ч {value % 3600 // 60} мин"


def evaluate(snapshot: dict[str, Any], s: Any) -> list[Finding]:
    """Every enabled rule's finding for this snapshot; `s` carries the ALERT_* thresholds."""
    out: list[Finding] = []
    add = out.append

    if "http" in snapshot:
        total, errors = snapshot["http"]
        ratio = errors / total if total else 0.0
        firing = total >= s.ALERT_API_MIN_REQUESTS and ratio > s.ALERT_API_5XX_RATIO
        add(_finding("api_5xx_ratio", firing, ratio,
                     f"За 5 минут {errors} ответов 5xx из {total} ({ratio:.1%}, порог {s.ALERT_API_5XX_RATIO:.1%})"))

    depths = snapshot.get("queue_depths") or {}
    ages = snapshot.get("queue_ages") if "queue_ages" in snapshot else None
    workers = snapshot.get("workers") if "workers" in snapshot else None
    for q in QUEUES:
        if q in depths:
            depth = depths[q]
            add(_finding(f"queue_backlog.{q}", depth > s.ALERT_QUEUE_BACKLOG, depth,
                         f"Задач в очереди {q}: {depth} (порог {s.ALERT_QUEUE_BACKLOG})"))
        if ages is not None and q in ages:
            age = ages[q]
            if age is None:
                add(_finding(f"queue_age.{q}", False, 0, f"Очередь {q} пуста"))
            else:
                add(_finding(f"queue_age.{q}", age > s.ALERT_QUEUE_AGE_SECONDS, age,
                             f"Самая старая задача в очереди {q} ждёт {_seconds(age)} "
                             f"(порог {_seconds(s.ALERT_QUEUE_AGE_SECONDS)})"))
        if workers is not None and q in workers:
            names = workers[q]
            if names is None:  # the queue the evaluation itself runs on: its worker is alive
                add(_finding(f"workers_down.{q}", False, None, f"Очередь {q} обслуживается"))
                continue
            others = sorted(snapshot.get("other_workers") or [])
            text = (f"Ни один обработчик не отвечает за очередь {q} (ожидание "
                    f"{s.ALERT_WORKER_PING_TIMEOUT:g} с)")
            if others:
                text += ". Отвечают: " + ", ".join(others)
            if depths.get(q):
                text += f". Задач в очереди: {depths[q]}"
            add(_finding(f"workers_down.{q}", not names, len(names),
                         text if not names else f"Очередь {q} обслуживают: {', '.join(sorted(names))}"))

    if "beat_age" in snapshot:
        age = snapshot["beat_age"]
        if age is None:
            add(_finding("beat_silent", True, None, "От планировщика не было ни одного сигнала"))
        else:
            add(_finding("beat_silent", age > s.ALERT_BEAT_SILENT_SECONDS, age,
                         f"Последний сигнал планировщика {_seconds(age)} назад "
                         f"(порог {_seconds(s.ALERT_BEAT_SILENT_SECONDS)})"))

    if "inbox_lag" in snapshot:
        lag = snapshot["inbox_lag"]
        add(_finding("inbox_lag", lag is not None and lag > s.ALERT_INBOX_LAG_SECONDS, lag or 0,
                     "Необработанных вебхуков нет" if lag is None else
                     f"Самый старый необработанный вебхук ждёт {_seconds(lag)} "
                     f"(порог {_seconds(s.ALERT_INBOX_LAG_SECONDS)})"))

    if "callbacks_overdue" in snapshot:
        overdue = snapshot["callbacks_overdue"]
        add(_finding("callbacks_overdue", overdue > s.ALERT_CALLBACKS_OVERDUE, overdue,
                     f"Просроченных перезвонов: {overdue} (порог {s.ALERT_CALLBACKS_OVERDUE}, "
                     f"перезвонить нужно в течение {s.CALLBACK_SLA_MIN} мин)"))

    if "imap" in snapshot:
        failures, last_error = snapshot["imap"]
        text = f"Неудачных импортов записей подряд: {failures} (порог {s.ALERT_IMAP_FAILURES})"
        if last_error:
            text += f". Последняя ошибка: {last_error}"
        add(_finding("imap_failures", failures >= s.ALERT_IMAP_FAILURES, failures, text))

    if "db_connections" in snapshot:
        used, maximum = snapshot["db_connections"]
        percent = 100.0 * used / maximum if maximum else 0.0
        add(_finding("db_connections", percent > s.ALERT_DB_CONNECTIONS_PERCENT, percent,
                     f"Подключений к PostgreSQL {used} из {maximum} ({percent:.0f}%, "
                     f"порог {s.ALERT_DB_CONNECTIONS_PERCENT:g}%)"))

    if "redis_memory" in snapshot:
        memory = snapshot["redis_memory"]
        used, limit = memory.get("used_memory", 0), memory.get("maxmemory", 0)
        if limit:
            percent = 100.0 * used / limit
            add(_finding("redis_memory", percent > s.ALERT_REDIS_MEMORY_PERCENT, percent,
                         f"Redis занимает {used // 2**20} МБ из {limit // 2**20} МБ ({percent:.0f}%, "
                         f"порог {s.ALERT_REDIS_MEMORY_PERCENT:g}%)"))
        else:
            add(_finding("redis_memory", False, None, "У Redis нет предела памяти (maxmemory)"))

    host = snapshot.get("host") or ""
    if "host_cpu" in snapshot:
        cpu = snapshot["host_cpu"]
        add(_finding("host_cpu", cpu > s.ALERT_HOST_CPU_PERCENT, cpu,
                     f"Процессор {host} занят на {cpu:.0f}% (порог {s.ALERT_HOST_CPU_PERCENT:g}%)"))
    if "host_memory" in snapshot:
        mem = snapshot["host_memory"]
        add(_finding("host_memory", mem > s.ALERT_HOST_MEMORY_PERCENT, mem,
                     f"Память {host} занята на {mem:.0f}% (порог {s.ALERT_HOST_MEMORY_PERCENT:g}%)"))

    for name, label in (("media", "файлами (MEDIA_ROOT)"), ("db", "данными PostgreSQL")):
        disk = (snapshot.get("disk") or {}).get(name)
        if disk is None:
            continue
        free_percent, path = disk
        add(_finding(f"disk_{name}", free_percent < s.ALERT_DISK_FREE_PERCENT, free_percent,
                     f"На диске с {label} {path} свободно {free_percent:.1f}% "
                     f"(порог {s.ALERT_DISK_FREE_PERCENT:g}%)"))

    disabled = s.ALERT_RULES_DISABLED
    return [f for f in out if not is_disabled(f.rule, disabled)]


# ---- the life of one alert --------------------------------------------------------------------------

@dataclass(frozen=True)
class Current:
    """What is stored about a rule's firing alert."""

    fired_at: datetime
    last_notified_at: datetime | None
    acknowledged: bool


@dataclass(frozen=True)
class Decision:
    open: bool = False  # store a new firing alert
    close: bool = False  # mark the firing alert resolved
    send: str | None = None  # 'fire', 'repeat' or 'resolve'


def decide(firing: bool | None, current: Current | None, *, now: datetime, cooldown: timedelta,
           silenced: bool) -> Decision:
    """Fire once, repeat only after the cooldown while it still fires (not once someone acknowledged
    it), resolve when it clears. A silenced rule is stored but not sent; a first notice that was
    silenced or failed goes out at the first evaluation that may send it."""
    if firing is None:
        return Decision()
    if firing:
        if current is None:
            return Decision(open=True, send=None if silenced else "fire")
        if silenced:
            return Decision()
        if current.last_notified_at is None:
            return Decision(send="fire")
        if current.acknowledged or now - current.last_notified_at < cooldown:
            return Decision()
        return Decision(send="repeat")
    if current is None:
        return Decision()
    notified = current.last_notified_at is not None
    return Decision(close=True, send="resolve" if notified and not silenced else None)


def _duration(delta: timedelta) -> str:
    return _seconds(max(delta.total_seconds(), 0))


def format_message(kind: str, rule: str, text: str, *, instance: str, fired_at: datetime | None = None,
                   now: datetime | None = None) -> str:
    """Telegram HTML: every interpolated value escaped, tags only from this function."""
    info = RULES.get(rule) or RuleInfo(rule, "warning", rule)
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + "…"
    title = html.escape(info.title)
    if kind == "fire":
        head = f"{SEVERITY_MARK.get(info.severity, '')} <b>{title}</b>"
    elif kind == "repeat":
        since = f" (уже {_duration(now - fired_at)})" if fired_at and now else ""
        head = f"🔁 <b>Всё ещё: {title}</b>{html.escape(since)}"
    else:
        lasted = f" (длилось {_duration(now - fired_at)})" if fired_at and now else ""
        head = f"✅ <b>Устранено: {title}</b>{html.escape(lasted)}"
    return (f"{head}\n{html.escape(text)}\n"
            f"<i>{html.escape(instance)}</i> · <code>{html.escape(rule)}</code>")
