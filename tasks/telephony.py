"""Mango Office: the inbox worker and the sweeper.

`telephony.process_event(event_id)` (queue light) claims one inbox row with a conditional UPDATE and
folds it into calls and requests in the same transaction, so the effects and the `processed` mark
are committed together: a worker killed in the middle leaves the row `pending` and nothing applied,
and the redelivered message (late ack) or the sweeper applies it exactly once. Retries with backoff
are for transient errors only (database or broker unreachable, deadlocks); a payload that cannot be
folded is marked `failed` with its reason, for an administrator to look at and replay.

`telephony.sweep_inbox` (beat) re-enqueues rows still pending after MANGO_SWEEP_AFTER_SECONDS, so
deliveries accepted while the broker was down are processed once it is back, and closes calls whose
summary never came.

A recording announced by `events/record/added` is fetched by `recordings.download_mango`
(tasks/recordings.py), queued with the event's folding.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from sqlalchemy import func, select, text, update

from models.core import probes
from models.core.db import Session, unit_of_work
from models.core.redis import get_redis, key
from models.telephony import rules
from models.telephony.tables import Call, MangoEvent
from settings import settings
from tasks.celery_app import celery_app
from tasks.queue import LIGHT, enqueue, match_recordings_soon
from tasks.retry import TransientFailure, backoff, describe, is_transient

log = logging.getLogger(__name__)

PROCESS_MAX_RETRIES = 8
SWEEP_BATCH = 2000
SWEEP_LOCK = key("lock", "mango-sweep")


# ---- the inbox --------------------------------------------------------------------------------------

def _finish(event_id: int, status: str, error: str | None, *, count_attempt: bool) -> None:
    values = {"last_error": error}
    if status != "pending":
        values.update(status=status, processed_at=func.clock_timestamp())
    if count_attempt:
        values["attempts"] = MangoEvent.attempts + 1
    with unit_of_work():
        Session.execute(update(MangoEvent).where(MangoEvent.id == event_id, MangoEvent.status == "pending")
                        .values(**values))


CLAIM = text("""
    UPDATE mango_events
    SET status = 'processed', processed_at = clock_timestamp(), last_error = NULL, attempts = attempts + 1
    WHERE id = :id AND status = 'pending'
    RETURNING event_type, payload, raw_body
""")


def process_inbox_row(event_id: int) -> str:
    """Claim, fold and mark one inbox row in one unit of work; `skipped` when it is not pending.

    The claim marks the row processed at once: the mark, the attempt and the effects are committed
    together or rolled back together (the row lock makes a second worker wait, then find it done).
    """
    event_type = None
    try:
        with unit_of_work():
            row = Session.execute(CLAIM, {"id": event_id}).first()
            if row is None:
                return "skipped"
            event_type = row.event_type
            payload = row.payload if row.payload is not None else rules.parse_payload(row.raw_body or "")
            follow_ups = rules.apply_event(row.event_type, payload)
            for follow_up in follow_ups:
                if follow_up.kind == "download_recording":
                    # Queued before the row is marked: if this fails the event stays pending and comes back.
                    enqueue("recordings.download_mango", event_id)
    except rules.PayloadError as exc:
        _finish(event_id, "failed", str(exc), count_attempt=True)
        log.warning("mango event %s (%s) failed: %s", event_id, event_type, exc)
        return "failed"
    if event_type in (rules.CALL, rules.SUMMARY):
        match_recordings_soon()  # a call or request folded now may be what an unmatched recording waits for
    return "processed"


# process_event, one per delivery, sends no task events: three Redis publishes per task would cost a
# third of the worker's throughput and flood Flower; its state is the inbox row, and the queue length
# and inbox lag are what alerts watch.
@celery_app.task(name="telephony.process_event", bind=True, max_retries=PROCESS_MAX_RETRIES,
                 soft_time_limit=30, time_limit=60, send_events=False)
def process_event(self, event_id: int) -> str:
    try:
        return process_inbox_row(int(event_id))
    except Exception as exc:
        reason = describe(exc)
        if is_transient(exc) and self.request.retries < self.max_retries:
            try:
                _finish(int(event_id), "pending", reason, count_attempt=True)
            except Exception:  # the database itself is away: the retry will find the row as it was
                pass
            log.warning("mango event %s: transient error, retrying: %s", event_id, type(exc).__name__)
            raise self.retry(exc=TransientFailure(reason), countdown=backoff(self.request.retries))
        # Only the type in the log: messages of data errors may quote numbers; the row keeps the detail.
        log.error("mango event %s failed: %s", event_id, type(exc).__name__)
        _finish(int(event_id), "failed", reason, count_attempt=True)
        return "failed"


def light_queue_length() -> int:
    """Messages waiting in the light queue, on either broker (0 when it cannot be asked)."""
    try:
        return probes.queue_depths((LIGHT,))[LIGHT]
    except Exception:
        return 0


@celery_app.task(name="telephony.sweep_inbox", soft_time_limit=120, time_limit=180)
def sweep_inbox() -> dict:
    """Re-enqueue inbox rows left pending (the broker was down, a message was lost); close calls whose
    summary never came. One sweep at a time."""
    redis = get_redis()
    token = secrets.token_hex(8)
    if not redis.set(SWEEP_LOCK, token, nx=True, ex=150):
        return {"skipped": "another sweep is running"}
    try:
        return sweep_once()
    finally:
        if redis.get(SWEEP_LOCK) == token:
            redis.delete(SWEEP_LOCK)


def sweep_once() -> dict:
    cutoff = func.now() - timedelta(seconds=settings.MANGO_SWEEP_AFTER_SECONDS)
    with unit_of_work(read_only=True):
        stale = Session.scalars(
            select(MangoEvent.id).where(MangoEvent.status == "pending", MangoEvent.received_at < cutoff)
            .order_by(MangoEvent.received_at).limit(SWEEP_BATCH)
        ).all()
    enqueued = 0
    # While the worker drains a backlog the stale rows are still queued: do not queue them twice.
    if stale and light_queue_length() < len(stale):
        for event_id in stale:
            enqueue("telephony.process_event", event_id)
            enqueued += 1
    closed = 0
    with unit_of_work(read_only=True):
        unsummarised = rules.stale_unsummarised_calls(timedelta(minutes=settings.MANGO_CLOSE_WITHOUT_SUMMARY_MIN))
    for call_pk in unsummarised:
        with unit_of_work():
            if Session.scalar(select(Call.id).where(Call.id == call_pk).with_for_update()) is not None:
                rules.close_without_summary(call_pk)
                closed += 1
    if enqueued or closed:
        log.info("mango sweep: %s pending events re-enqueued, %s calls closed without summary", enqueued, closed)
    return {"stale": len(stale), "enqueued": enqueued, "closed": closed}
