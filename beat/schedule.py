"""Every periodic job, in one place. Entries only enqueue; the work runs on the workers.

Single instance: beat runs with redbeat's scheduler (tasks/celery_app.py), which holds a Redis lock
while it runs, so a second beat started by mistake waits instead of duplicating every entry.
"""
from __future__ import annotations

from celery.signals import beat_init

from settings import settings

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
