"""Every periodic job, in one place. Entries only enqueue; the work runs on the workers.

Single instance: beat runs with redbeat's scheduler (tasks/celery_app.py), which holds a Redis lock
while it runs, so a second beat started by mistake waits instead of duplicating every entry.
"""
from __future__ import annotations

from celery.signals import beat_init

from settings import settings


def maintenance_entries() -> dict:
    """The nightly database maintenance, one task after another from MAINTENANCE_HOUR_UTC (UTC)."""
    from celery.schedules import crontab

    start = settings.MAINTENANCE_HOUR_UTC
    plan = (("purge", 0, 0), ("vacuum", 0, 20), ("analyze", 1, 10), ("index_report", 1, 30))
    return {
        f"maintenance-{name.replace('_', '-')}": {
            "task": f"maintenance.{name}",
            "schedule": crontab(hour=(start + hours) % 24, minute=minute),
            "options": {"queue": "heavy", "expires": 3600.0},
        }
        for name, hours, minute in plan
    }


def every(seconds: float, task: str, queue: str, **kwargs) -> dict:
    """An entry run every `seconds` on `queue`; a run that waited a whole interval is dropped
    (the next one is coming)."""
    entry = {"task": task, "schedule": float(seconds), "options": {"queue": queue, "expires": float(seconds)}}
    if kwargs:
        entry["kwargs"] = kwargs
    return entry


SCHEDULE = {
    "beat-heartbeat": every(settings.BEAT_HEARTBEAT_SECONDS, "maintenance.heartbeat", "light"),
    # Uploads whose message the broker could not take are sent once it answers; uploads still pending
    # 10 minutes after upload are queued again (their message was lost). Light: never behind validations.
    "files-sweep": every(30, "files.sweep", "light"),
    # Quarantine leftovers, expired uploads, files of deleted owners after FILES_RETENTION_DAYS.
    "files-cleanup": every(3600, "files.cleanup", "heavy"),
    # Every minute on the light queue; a late evaluation is worthless, the next one is coming.
    "alerts-evaluate": every(60, "alerts.evaluate", "light"),
    # On the heavy queue: evaluates only when the light queue's evaluation is late (no light worker).
    "alerts-evaluate-fallback": every(120, "alerts.evaluate", "heavy", fallback=True),
    **maintenance_entries(),
    # The mailbox import; a run still going holds its lock and the next one returns at once.
    "recordings-import": every(settings.RECORDINGS_CHECK_INTERVAL, "recordings.import_mailbox", "heavy"),
    # Unmatched recordings tried again (also queued, debounced, when requests or calls appear).
    "recordings-match-pending": every(900, "recordings.match_pending", "heavy"),
    # Rows pending longer than MANGO_SWEEP_AFTER_SECONDS are queued again; a lost sweep is harmless.
    "mango-sweep-inbox": every(30, "telephony.sweep_inbox", "light"),
    # Masters link their chat by sending the bot a code: its updates are read (no public webhook).
    "telegram-poll-updates": every(settings.TELEGRAM_POLL_SECONDS, "telegram.poll_updates", "light"),
    # The outbox is sent after each commit that writes to it; this sends what a broker outage lost.
    "telegram-deliver": every(30, "telegram.deliver", "light"),
    # Yesterday's digest once DIGEST_HOUR (business-local) has come; sent once per day (a row per day).
    "telegram-digest": every(settings.DIGEST_CHECK_SECONDS, "telegram.send_digest", "heavy"),
    # Callbacks still open CALLBACK_EXPIRE_HOURS after their last missed call expire; placed calls whose
    # result/callback never came are failed.
    "callbacks-expire": every(600, "callbacks.expire", "light"),
}


@beat_init.connect
def announce_start(sender=None, **_kwargs) -> None:
    """Beat has the lock and runs: beat at once rather than after the first interval."""
    sender.app.send_task("maintenance.heartbeat", queue="light",
                         expires=float(settings.BEAT_HEARTBEAT_SECONDS))
