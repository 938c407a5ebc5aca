"""The Celery app with faults injected, for the crash tests' worker processes only:

    celery -A tests.fault_worker worker ...

The product carries no test hooks. This module, loaded only by workers the tests start, wraps the
step after which a test wants a worker to stop, and reads what to do from the environment:

- LEADLINE_FAULT_FILES="<point>:<seconds>": the first validation (files.validate) to reach `point`
  publishes its process id in Redis under leadline:test:files-fault:<point> and sleeps there, so the
  test can SIGKILL the process exactly at that point; later attempts go through. Points:
  `after_claim` (the job claimed, the file not examined yet), `after_promote` (the bytes promoted
  into the media folder, nothing decided yet), `after_commit` (ready, linked and the job's end
  committed; the quarantined bytes not removed yet).
- LEADLINE_FAULT_MANGO_SLEEP seconds and LEADLINE_FAULT_MANGO_MARKER: an inbox event of type
  LEADLINE_FAULT_MANGO_TYPE (any when unset) stops once between its folding and its commit, after
  creating the marker file with its process id.
- LEADLINE_FAULT_LEASE_SECONDS: the worker's lease (tasks/leases.py) in seconds, so that a test waits
  out a killed worker's lease in seconds rather than 40.
- LEADLINE_FAULT_MAINTENANCE="<name>:<seconds>": the first run of maintenance `name` to start its work
  (its job claimed, the maintenance lock taken) publishes its process id in Redis under
  leadline:test:maintenance-fault and sleeps there; later runs go through.
"""
from __future__ import annotations

import functools
import os
import time
from concurrent import futures

import tasks.files
import tasks.maintenance
from models.core.redis import get_redis, key
from models.telephony import rules as telephony_rules
from storage import validation
from tasks import leases
from tasks.celery_app import celery_app as app

__all__ = ["app"]


def _files_pause(point: str) -> None:
    spec = os.environ.get("LEADLINE_FAULT_FILES", "")
    name, _, seconds = spec.partition(":")
    if name != point:
        return
    # Only the first run to get here: the key stays while the test looks at the stopped worker.
    if get_redis().set(key("test", "files-fault", point), str(os.getpid()), nx=True, ex=300):
        time.sleep(float(seconds or 30))


def _validate_after_claim(original):
    @functools.wraps(original)
    def validate(*args, **kwargs):
        _files_pause("after_claim")
        return original(*args, **kwargs)
    return validate


def _mark_ready_around_the_commit(original):
    @functools.wraps(original)
    def mark_ready(*args, **kwargs):
        futures.wait([args[-1]])  # the promotion (S3: a copy running next to the decision) has ended
        _files_pause("after_promote")
        decided = original(*args, **kwargs)
        if decided:
            _files_pause("after_commit")
        return decided
    return mark_ready


def _mango_pause(event_type: str) -> None:
    seconds, marker = os.environ.get("LEADLINE_FAULT_MANGO_SLEEP"), os.environ.get("LEADLINE_FAULT_MANGO_MARKER")
    if not seconds or not marker or os.environ.get("LEADLINE_FAULT_MANGO_TYPE", event_type) != event_type:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(float(seconds))


def _apply_then_pause(original):
    @functools.wraps(original)
    def apply_event(event_type, payload):
        follow_ups = original(event_type, payload)
        _mango_pause(event_type)
        return follow_ups
    return apply_event


def _pause_maintenance(name: str, original):
    @functools.wraps(original)
    def work(*args, **kwargs):
        wanted, _, seconds = os.environ.get("LEADLINE_FAULT_MAINTENANCE", "").partition(":")
        if wanted == name and get_redis().set(key("test", "maintenance-fault"), str(os.getpid()), nx=True, ex=300):
            time.sleep(float(seconds or 30))
        return original(*args, **kwargs)
    return work


# The crash tests wait out a dead worker's lease (tasks/leases.py: 30 s, renewed every 10 s). With
# LEADLINE_FAULT_LEASE_SECONDS their workers keep the same mechanism on a shorter clock, renewing four
# times a lease.
if os.environ.get("LEADLINE_FAULT_LEASE_SECONDS"):
    leases.LEASE_SECONDS = float(os.environ["LEADLINE_FAULT_LEASE_SECONDS"])
    leases.RENEW_SECONDS = leases.LEASE_SECONDS / 4

# Installed at import, in the worker's main process: its pool processes inherit them.
validation.validate = _validate_after_claim(validation.validate)
tasks.files._mark_ready = _mark_ready_around_the_commit(tasks.files._mark_ready)
telephony_rules.apply_event = _apply_then_pause(telephony_rules.apply_event)
tasks.maintenance.MAINTENANCE_WORK.update(
    {name: _pause_maintenance(name, work) for name, work in tasks.maintenance.MAINTENANCE_WORK.items()}
)
