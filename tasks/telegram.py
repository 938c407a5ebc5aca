"""Telegram: the outbox sender, the reader of the bot's updates (masters linking their chat), and
the daily digest.

- `telegram.deliver` (light): sends the outbox's due messages (models/telegram/outbox.py). Queued
  after every commit that wrote messages, by beat every 30 s (what a broker outage lost), and by
  itself when a retry falls due. One sender at a time (a Redis lock), which keeps each message sent
  once and in order; a run that finds the lock taken leaves the work to the holder, which looks
  again after releasing it, so a message committed meanwhile is never left behind.
- `telegram.poll_updates` (light): every TELEGRAM_POLL_SECONDS, one getUpdates from the offset kept
  in PostgreSQL (models/telegram/links.py); one reader at a time.
- `telegram.send_digest` (heavy): every DIGEST_CHECK_SECONDS, sends yesterday's digest once
  DIGEST_HOUR has come (models/reports/digest.py); with a date, that day's (the CLI's path).
"""
from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from models.core.redis import SingleFlight, key
from models.reports import digest
from models.telegram import links, outbox
from settings import settings
from tasks.celery_app import celery_app
from tasks.queue import deliver_telegram_later, deliver_telegram_soon

log = logging.getLogger(__name__)

DELIVER_LOCK = key("lock", "telegram-deliver")
POLL_LOCK = key("lock", "telegram-poll")
LOCK_SECONDS = 90  # longer than either task's hard time limit
DELIVER_BUDGET_SECONDS = 40.0
WAIT_HERE_SECONDS = 5.0  # waits up to this are slept through; longer ones queue a later run


@celery_app.task(name="telegram.deliver", soft_time_limit=60, time_limit=75)
def deliver() -> dict[str, Any]:
    """Send the due outbox messages. A short wait (a 429's retry_after, a retry falling due within
    seconds) is waited out here; a longer one is left to a run queued for then."""
    if not settings.TELEGRAM_BOT_TOKEN:
        return {"skipped": "Telegram не настроен"}
    summary: dict[str, Any] = {}
    deadline = time.monotonic() + DELIVER_BUDGET_SECONDS
    while True:
        lock = SingleFlight(DELIVER_LOCK, LOCK_SECONDS)
        if not lock.acquire():
            return {**summary, "skipped": "another sender is running"}
        try:
            summary = outbox.deliver_due(settings, budget_seconds=max(1.0, deadline - time.monotonic()))
        finally:
            lock.release()
        # Whatever was committed while the lock was being released is seen here: nothing is left behind.
        wait = summary["paused"] or outbox.seconds_until_next()
        if wait is None:
            return summary
        if summary["more"]:
            deliver_telegram_soon()
            return summary
        if wait > WAIT_HERE_SECONDS or time.monotonic() + wait > deadline:
            deliver_telegram_later(wait)
            return summary
        time.sleep(wait)


@celery_app.task(name="telegram.poll_updates", soft_time_limit=30, time_limit=40)
def poll_updates() -> dict[str, Any]:
    """Read the bot's new updates once: codes link chats, /stop unlinks them; the replies go out."""
    lock = SingleFlight(POLL_LOCK, LOCK_SECONDS)
    if not lock.acquire():
        return {"skipped": "another reader is running"}
    try:
        result = links.read_updates(settings)
    finally:
        lock.release()
    if outbox.take_added():
        deliver_telegram_soon()
    return result


@celery_app.task(name="telegram.send_digest", soft_time_limit=240, time_limit=300)
def send_digest(day: str | None = None, force: bool = False) -> dict[str, Any]:
    """Yesterday's digest when it is due and not sent yet; with `day` (ISO), that day's."""
    try:
        if day is None:
            return digest.send_due(settings)
        return digest.send(date.fromisoformat(day), settings, force=force)
    except digest.DigestNotSent as exc:
        return {"error": str(exc)}  # recorded on the digest's row; the next check tries again
