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


SCHEDULE = {
    "beat-heartbeat": {
        "task": "maintenance.heartbeat",
        "schedule": float(settings.BEAT_HEARTBEAT_SECONDS),
        # A heartbeat that waited longer than its interval is worthless: drop it.
        "options": {"queue": "light", "expires": float(settings.BEAT_HEARTBEAT_SECONDS)},
    },
    "files-sweep": {
        "task": "files.sweep",
        # Uploads still pending 10 minutes after upload are queued again (their message was lost).
        "schedule": 300.0,
        "options": {"queue": "heavy", "expires": 300.0},
    },
    "files-cleanup": {
        "task": "files.cleanup",
        # Quarantine leftovers, expired uploads, files of deleted owners after FILES_RETENTION_DAYS.
        "schedule": 3600.0,
        "options": {"queue": "heavy", "expires": 3600.0},
    },
    "alerts-evaluate": {
        "task": "alerts.evaluate",
        # Every minute on the light queue; a late evaluation is worthless, the next one is coming.
        "schedule": 60.0,
        "options": {"queue": "light", "expires": 60.0},
    },
    "alerts-evaluate-fallback": {
        "task": "alerts.evaluate",
        # On the heavy queue: evaluates only when the light queue's evaluation is late (no light worker).
        "schedule": 120.0,
        "kwargs": {"fallback": True},
        "options": {"queue": "heavy", "expires": 120.0},
    },
    **maintenance_entries(),
    "recordings-import": {
        "task": "recordings.import_mailbox",
        # The mailbox import; a run still going holds its lock and the next one returns at once.
        "schedule": float(settings.RECORDINGS_CHECK_INTERVAL),
        "options": {"queue": "heavy", "expires": float(settings.RECORDINGS_CHECK_INTERVAL)},
    },
    "recordings-match-pending": {
        "task": "recordings.match_pending",
        # Unmatched recordings tried again (also queued, debounced, when requests or calls appear).
        "schedule": 900.0,
        "options": {"queue": "heavy", "expires": 900.0},
    },
    "mango-sweep-inbox": {
        "task": "telephony.sweep_inbox",
        # Rows pending longer than MANGO_SWEEP_AFTER_SECONDS are queued again; a lost sweep is harmless.
        "schedule": 30.0,
        "options": {"queue": "light", "expires": 30.0},
    },
}


@beat_init.connect
def announce_start(sender=None, **_kwargs) -> None:
    """Beat has the lock and runs: beat at once rather than after the first interval."""
    sender.app.send_task("maintenance.heartbeat", queue="light",
                         expires=float(settings.BEAT_HEARTBEAT_SECONDS))
