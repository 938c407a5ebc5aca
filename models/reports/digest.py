"""The daily digest to the managers' Telegram chat: the day before at a glance.

Figures come from the reports themselves (models/reports/queries.py) for that one day, so they
equal what the reports answer for the same day: requests, completed, revenue and company income
(the masters' handover) in total and per city, from the dashboard report; the last 14 days'
requests and completed per day, from the call-centre report, drawn as a PNG (models/reports/chart.py).
Missed calls of the day and how many of them were called back within the callback SLA (an answered
call with the same number started within it) are read from the calls.

Sent once per day: a row per digest date is claimed with INSERT ... ON CONFLICT, so a beat that
restarts, two checks that overlap or a manual run cannot send it twice. A failed send is tried
again at the next check (up to MAX_ATTEMPTS); the parts already sent (text, chart) are not sent again.
"""
from __future__ import annotations

import html
import logging
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, String, Text, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base
from models.core.business_time import local_day_start, now_utc, to_local
from models.core.db import Session, unit_of_work
from models.directories.tables import City
from models.reports import queries
from models.reports import roi as roi_report
from models.reports.chart import render_png
from models.telegram.bot import Answer, BotApi

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
STALE_CLAIM = timedelta(minutes=15)  # a claim this old died with its worker: it may be taken again
CHART_DAYS = 14
SEND_TRIES = 4
MESSAGE_LIMIT = 4096  # Telegram's, in characters
DEFAULT_CALLBACK_SLA_MIN = 15  # CALLBACK_SLA_MIN comes with the callback queue (issue 19, part 1)


class DigestRun(Base):
    """One row per digest date (the business-local day it tells about)."""

    __tablename__ = "digest_runs"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(10))  # sending, sent, failed
    attempts: Mapped[int] = mapped_column(server_default=text("1"), default=1)
    claimed_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    chat_id: Mapped[str | None] = mapped_column(String(100))
    message_ids: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"), default=dict)
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)


# ---- when ---------------------------------------------------------------------------------------------

def due_day(s: Any, now: datetime | None = None) -> date | None:
    """The day whose digest is due now: yesterday once DIGEST_HOUR (business-local) has come."""
    local = to_local(now or now_utc())
    return local.date() - timedelta(days=1) if local.hour >= s.DIGEST_HOUR else None


# ---- what -----------------------------------------------------------------------------------------------

def missed_calls(day: date, sla_minutes: int) -> dict[str, int]:
    row = Session.execute(text("""
        SELECT count(*) AS missed,
               count(*) FILTER (WHERE EXISTS (
                   SELECT 1 FROM calls b
                   WHERE b.client_phone = c.client_phone AND b.id <> c.id AND b.answered_at IS NOT NULL
                     AND b.started_at > c.started_at
                     AND b.started_at <= c.started_at + make_interval(mins => :sla))) AS called_back
        FROM calls c
        WHERE c.direction = 'in' AND c.missed AND c.started_at >= :start AND c.started_at < :end
    """), {"sla": sla_minutes, "start": local_day_start(day), "end": local_day_start(day + timedelta(days=1))}).one()
    return {"missed": int(row.missed), "called_back": int(row.called_back), "sla_minutes": sla_minutes}


def _day_figures(report: dict[str, Any]) -> dict[str, Any]:
    return {"requests": report["requests_total"], "completed": report["completed"],
            "revenue": str(report["revenue"]), "income": str(report["handover"])}


def figures(day: date, s: Any) -> dict[str, Any]:
    """Everything the digest says about `day`, as JSON-ready values (money as strings)."""
    scope = queries.Scope.everything()
    one_day = queries.Filters(date_from=day, date_to=day)
    cities = []
    for city_id, name in Session.execute(select(City.id, City.name).order_by(City.name, City.id)):
        city = _day_figures(queries.dashboard(queries.Filters(date_from=day, date_to=day, city_id=city_id), scope))
        if city["requests"] or city["completed"] or Decimal(city["income"]):
            cities.append({"city_id": city_id, "city_name": name, **city})
    first = day - timedelta(days=CHART_DAYS - 1)
    per_day = {row["date"]: row for row in queries.callcenter(queries.Filters(date_from=first, date_to=day),
                                                              scope)["days"]}
    days = []
    for offset in range(CHART_DAYS):
        current = first + timedelta(days=offset)
        row = per_day.get(current)
        days.append({"date": current.isoformat(), "requests": row["requests"] if row else 0,
                     "completed": row["completed"] if row else 0})
    return {
        "day": day.isoformat(),
        "total": _day_figures(queries.dashboard(one_day, scope)),
        "cities": cities,
        "calls": missed_calls(day, getattr(s, "CALLBACK_SLA_MIN", DEFAULT_CALLBACK_SLA_MIN)),
        "days": days,
        # {"name", "romi"} per campaign of the day, from the ROI report (romi there in per cent)
        "campaigns": campaigns(one_day, scope),
    }


def campaigns(one_day: queries.Filters, scope: queries.Scope) -> list[dict[str, Any]]:
    """The campaigns of the ROI report for the day (spend prorated to it), ROMI as a fraction."""
    return [{"name": row["campaign_name"], "romi": None if row["romi"] is None else row["romi"] / 100}
            for row in roi_report.roi(one_day, scope, "campaign")["rows"] if row["campaign_id"]]


def best_and_worst(rows: list[dict[str, Any]], count: int = 3) -> tuple[list[dict], list[dict]]:
    """The `count` campaigns with the highest and the lowest ROMI among those with one (spend > 0);
    rows: {"name", "romi"} (romi a number or None). A campaign is never in both lists."""
    rated = sorted((r for r in rows if r.get("romi") is not None), key=lambda r: (-float(r["romi"]), r["name"]))
    best = rated[:count]
    worst = [r for r in reversed(rated[count:])][:count]
    return best, worst


def money(value: str | Decimal) -> str:
    """12 345,5 → "12 345,50 ₽"; whole roubles without kopecks."""
    amount = Decimal(value)
    shown = f"{amount:,.2f}".replace(",", "\u00a0").replace(".", ",")
    return (shown[:-3] if shown.endswith(",00") else shown) + "\u00a0₽"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=False)


def render_text(f: dict[str, Any], instance: str | None = None) -> str:
    """The message (Telegram HTML). Cities are listed by the figures' order; when they would not
    fit in one message (4096 characters), the last ones are summed up in a line."""
    day = date.fromisoformat(f["day"])
    total, calls = f["total"], f["calls"]
    head = [f"📊 <b>Итоги дня {day.strftime('%d.%m.%Y')}</b>" + (f" · {_e(instance)}" if instance else ""),
            "",
            f"Заявок: <b>{total['requests']}</b> · выполнено: <b>{total['completed']}</b>",
            f"Выручка: <b>{money(total['revenue'])}</b> · доход компании: <b>{money(total['income'])}</b>"]
    tail: list[str] = []
    best, worst = best_and_worst(f.get("campaigns") or [])
    for title, rows in (("Лучшие кампании по ROMI", best), ("Худшие кампании по ROMI", worst)):
        if rows:
            tail += ["", f"<b>{title}</b>"]
            tail += [f"{_e(r['name'])}: {float(r['romi']) * 100:+.0f} %" for r in rows]
    share = f" ({round(100 * calls['called_back'] / calls['missed'])} %)" if calls["missed"] else ""
    tail += ["", f"Пропущенных звонков: <b>{calls['missed']}</b> · перезвонили в течение "
                 f"{calls['sla_minutes']} мин: <b>{calls['called_back']}</b>{share}"]
    cities = [f"{_e(c['city_name'])}: заявок {c['requests']}, выполнено {c['completed']}, "
              f"выручка {money(c['revenue'])}, доход {money(c['income'])}" for c in f["cities"]]
    room = MESSAGE_LIMIT - len("\n".join(head + tail)) - 100  # the heading and a closing line
    shown: list[str] = []
    for line in cities:
        if len(line) + 1 > room:
            break
        shown.append(line)
        room -= len(line) + 1
    if len(shown) < len(cities):
        shown.append(f"…и ещё городов: {len(cities) - len(shown)}")
    middle = ["", "<b>По городам</b>", *shown] if cities else []
    return "\n".join(head + middle + tail)


def chart_caption(f: dict[str, Any]) -> str:
    return f"Заявки и выполненные за {CHART_DAYS} дней по {date.fromisoformat(f['day']).strftime('%d.%m.%Y')}"


def build(day: date, s: Any) -> tuple[dict[str, Any], str]:
    with unit_of_work(read_only=True):
        found = figures(day, s)
    return found, render_text(found, s.ALERT_INSTANCE_NAME)


# ---- once per day ---------------------------------------------------------------------------------------

CLAIM = text("""
    INSERT INTO digest_runs (day, status, attempts, claimed_at, message_ids)
    VALUES (:day, 'sending', 1, now(), '{}'::jsonb)
    ON CONFLICT (day) DO UPDATE
       SET status = 'sending', attempts = digest_runs.attempts + 1, claimed_at = now(), error = NULL,
           message_ids = CASE WHEN :force THEN '{}'::jsonb ELSE digest_runs.message_ids END
     WHERE :force
        OR (digest_runs.status = 'failed' AND digest_runs.attempts < :max_attempts)
        OR (digest_runs.status = 'sending' AND digest_runs.claimed_at < now() - make_interval(secs => :stale))
    RETURNING message_ids
""")


def claim(day: date, *, force: bool = False) -> dict[str, Any] | None:
    """The right to send `day`'s digest (with the parts already sent), or None: sent, or being sent."""
    with unit_of_work():
        row = Session.execute(CLAIM, {"day": day, "force": force, "max_attempts": MAX_ATTEMPTS,
                                      "stale": STALE_CLAIM.total_seconds()}).one_or_none()
    return None if row is None else dict(row.message_ids or {})


def _save(day: date, **values: Any) -> None:
    with unit_of_work():
        Session.execute(update(DigestRun).where(DigestRun.day == day).values(**values))


def _with_retries(send) -> Answer:
    """A send tried again on 429 (after retry_after), 5xx and network errors, a few times."""
    answer = send()
    for attempt in range(1, SEND_TRIES):
        if answer.ok or not answer.retryable:
            break
        time.sleep(min(answer.retry_after or 2.0 * attempt, 60.0))
        answer = send()
    return answer


def send(day: date, s: Any, *, force: bool = False) -> dict[str, Any]:
    """Send `day`'s digest unless it was (`force`: again). Returns what happened."""
    chat = s.digest_chat_id
    bot = BotApi(s)
    if not bot.configured or not chat:
        return {"day": day.isoformat(), "skipped": "Telegram не настроен (TELEGRAM_BOT_TOKEN, DIGEST_CHAT_ID)"}
    sent = claim(day, force=force)
    if sent is None:
        return {"day": day.isoformat(), "skipped": "уже отправлена"}
    try:
        found, message = build(day, s)
        _save(day, figures=found, chat_id=chat)
        if "text" not in sent:
            answer = _with_retries(lambda: bot.send_message(chat, message, max_wait=30))
            if not answer.ok:
                raise DigestNotSent(answer.error)
            sent["text"] = answer.message_id
            _save(day, message_ids=dict(sent))
        if "chart" not in sent:
            png = render_png(found["days"], f"Заявки за {CHART_DAYS} дней")
            answer = _with_retries(lambda: bot.send_photo(chat, png, chart_caption(found), max_wait=30))
            if not answer.ok:
                raise DigestNotSent(answer.error)
            sent["chart"] = answer.message_id
        _save(day, status="sent", sent_at=now_utc(), message_ids=dict(sent))
    except Exception as exc:
        _save(day, status="failed", error=s.mask(f"{type(exc).__name__}: {exc}")[:500])
        log.error("digest %s not sent: %s", day, type(exc).__name__)
        raise
    log.info("digest %s sent", day)
    return {"day": day.isoformat(), "sent": dict(sent)}


class DigestNotSent(RuntimeError):
    pass


def send_due(s: Any, now: datetime | None = None) -> dict[str, Any]:
    """The check beat asks for: send yesterday's digest once the hour has come, unless it went."""
    day = due_day(s, now)
    if day is None:
        return {"skipped": f"до {s.DIGEST_HOUR}:00 рано"}
    with unit_of_work(read_only=True):
        done = Session.scalar(select(DigestRun.status).where(DigestRun.day == day)) == "sent"
    if done:
        return {"day": day.isoformat(), "skipped": "уже отправлена"}
    return send(day, s)
