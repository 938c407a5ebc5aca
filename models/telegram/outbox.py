"""The outbox: messages are written in the transaction of the change they tell about
(`queue_message`), and sent afterwards by one sender at a time (`deliver_due`, called by the
light-queue task telegram.deliver).

- Sent once: a row is marked sent in its own commit right after Telegram accepted it, and only
  one sender runs per bot (the task holds a lock), so a row is never sent twice while things work.
  A worker killed between Telegram's answer and that commit sends the row again: a duplicate
  message rather than a lost one.
- Retried on network errors, 429 and 5xx: a 429 pauses the bot for Telegram's `retry_after` and
  ends the pass (the task comes back then); otherwise the row waits a growing delay, up to
  MAX_ATTEMPTS. A 400/403 fails the row at once; a 403 (the master blocked the bot) unlinks them.
- In order per request: a row is due only when no older row of the same request is still pending.
- At most TELEGRAM_MAX_PER_SECOND messages a second (models/telegram/bot.Pace).
"""
from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session as OrmSession

from models.core.business_time import now_utc
from models.core.db import Session, unit_of_work
from models.people.tables import User
from models.telegram.bot import Answer, BotApi
from models.telegram.tables import TelegramOutbox

log = logging.getLogger(__name__)

ADDED = "telegram_outbox_added"  # Session.info flag: the transaction queued messages
MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0
BATCH = 50


def queue_message(text_html: str, *, kind: str, user_id: int | None = None, chat_id: str | None = None,
                  request_id: int | None = None) -> None:
    """A message to a user's linked chat (looked up when it is sent) or to a chat, in the caller's
    transaction; the caller commits and then asks for delivery (tasks.queue.deliver_telegram_soon)."""
    Session.add(TelegramOutbox(user_id=user_id, chat_id=chat_id, request_id=request_id, kind=kind,
                               text=text_html))
    Session.info[ADDED] = True


def take_added(session: OrmSession | Any = Session) -> bool:
    """Whether the transaction just committed queued messages (and forget it)."""
    return bool(session.info.pop(ADDED, False))


# Pending rows that no older pending row of the same request holds back.
SENDABLE = """
    o.status = 'pending'
    AND NOT EXISTS (SELECT 1 FROM telegram_outbox p
                    WHERE p.status = 'pending' AND p.request_id = o.request_id AND p.id < o.id)
"""
# The due ones, oldest first, with the chat to use.
DUE = text(f"""
    SELECT o.id, o.user_id, o.chat_id, o.request_id, o.text, o.attempts, u.chat_id AS user_chat
    FROM telegram_outbox o
    LEFT JOIN users u ON u.id = o.user_id
    WHERE {SENDABLE} AND o.next_attempt_at <= now()
    ORDER BY o.id
    LIMIT :limit
""")  # nosec B608 - a module constant; values are bound parameters
NEXT_DUE = text(f"""
    SELECT extract(epoch FROM min(o.next_attempt_at) - now()) FROM telegram_outbox o WHERE {SENDABLE}
""")  # nosec B608 - a module constant


def due_rows(limit: int = BATCH) -> list:
    with unit_of_work(read_only=True):
        return Session.execute(DUE, {"limit": limit}).all()


def seconds_until_next() -> float | None:
    """Seconds until the next pending row is due (0: now); None when nothing is pending."""
    with unit_of_work(read_only=True):
        wait = Session.scalar(NEXT_DUE)
    return None if wait is None else max(0.0, float(wait))


def _finish(row_id: int, **values: Any) -> None:
    with unit_of_work():
        Session.execute(update(TelegramOutbox).where(TelegramOutbox.id == row_id).values(**values))


def _retry_delay(attempts: int) -> float:
    base = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (attempts - 1))
    return base + random.uniform(0, base / 4)  # nosec B311 - jitter, not security


def _record(row, answer: Answer) -> bool:
    """Store what became of one send; True when the pass may go on (not a 429)."""
    attempts = row.attempts + 1
    now = now_utc()
    if answer.ok:
        _finish(row.id, status="sent", attempts=attempts, sent_at=now, message_id=answer.message_id, last_error=None)
        return True
    if answer.retryable and attempts < MAX_ATTEMPTS:
        delay = answer.retry_after if answer.retry_after is not None else _retry_delay(attempts)
        _finish(row.id, attempts=attempts, last_error=answer.error, next_attempt_at=now + timedelta(seconds=delay))
        log.warning("telegram: message %d not sent (%s), again in %.1f s", row.id, answer.error, delay)
        return answer.status != 429
    _finish(row.id, status="failed", attempts=attempts, last_error=answer.error)
    log.error("telegram: message %d failed for good: %s", row.id, answer.error)
    if answer.status == 403 and row.user_id is not None and row.user_chat:
        with unit_of_work():  # the master blocked the bot: stop writing to that chat
            Session.execute(update(User).where(User.id == row.user_id, User.chat_id == row.user_chat)
                            .values(chat_id=None))
    return True


def deliver_due(s: Any, *, budget_seconds: float = 40.0) -> dict[str, Any]:
    """Send what is due, in order, until nothing is due, the bot is paused (a 429: `paused` holds
    the seconds to wait) or the budget is spent (`more`)."""
    bot = BotApi(s)
    summary: dict[str, Any] = {"sent": 0, "retry": 0, "failed": 0, "skipped": 0, "more": False, "paused": 0.0}
    if not bot.configured:
        return summary
    started = time.monotonic()
    while True:
        rows = due_rows()
        if not rows:
            return summary
        blocked: set[int] = set()  # requests whose older message is waiting for a retry
        for row in rows:
            if time.monotonic() - started > budget_seconds:
                summary["more"] = True
                return summary
            if row.request_id is not None and row.request_id in blocked:
                continue
            paused = bot.pace.paused_for()
            if paused:
                summary["paused"] = paused
                return summary
            chat = row.user_chat if row.user_id is not None else row.chat_id
            if not chat:
                _finish(row.id, status="skipped", last_error="Telegram не привязан")
                summary["skipped"] += 1
                continue
            answer = bot.send_message(chat, row.text)
            go_on = _record(row, answer)
            if answer.ok:
                summary["sent"] += 1
            elif answer.retryable and row.attempts + 1 < MAX_ATTEMPTS:
                summary["retry"] += 1
                if row.request_id is not None:
                    blocked.add(row.request_id)
            else:
                summary["failed"] += 1
            if not go_on:
                summary["paused"] = max(bot.pace.paused_for(), answer.retry_after or 0.0, 0.1)
                return summary
