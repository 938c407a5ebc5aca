"""The Celery app of the processes that run no task: `celery -A tasks.sender beat|flower`.

The same app as the workers' (tasks/celery_app.py: broker, routes, schedule, serializers), without
the task modules: beat sends the schedule's tasks by name (routed by `task_routes`, stamped by
tasks/signals.py) and Flower learns task names from the workers' events. Neither needs the task
code, and importing it (SQLAlchemy, the domain models, the file and mail libraries) would double
their resident memory.
"""
from __future__ import annotations

import tasks

tasks.LOAD_TASK_MODULES = False

from tasks.celery_app import celery_app as app  # noqa: E402 - after the switch above

__all__ = ["app"]
