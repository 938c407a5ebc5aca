"""Background work. `celery -A tasks worker|beat|flower` finds the app here.

The app (and with it every task module) is loaded on first use, so that the API importing the
enqueue helper, tasks.queue, loads no task module before it queues something.
"""
from __future__ import annotations

from typing import Any

__all__ = ["app", "celery"]

# Loading the app loads every task module too; tasks/sender.py (beat, Flower) turns this off first.
LOAD_TASK_MODULES = True


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from tasks.celery_app import celery_app

        return celery_app
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
