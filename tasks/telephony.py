"""Mango Office: the inbox worker and the sweeper.

`telephony.fold_inbox` (queue light) folds the inbox: it claims the oldest pending rows, up to
MANGO_FOLD_BATCH of them with every other pending row of the same calls (`FOR UPDATE SKIP LOCKED`:
rows another run holds are left to it), marks them processed and folds them into calls and requests
in the order they arrived (row id), in one transaction: the effects and the marks are committed
together, so a worker killed in the middle leaves the rows `pending` and nothing applied, and the
redelivered message (late ack) or the sweeper applies them exactly once. It goes on batch after batch
until none is pending. The webhook queues a run only when none is queued yet (tasks/queue.py,
`fold_inbox_soon`), so a busy hour costs a message per burst, not per delivery; a run that claims a
full batch asks for another run, so idle worker threads join in while a backlog lasts.

Batches hold each call whole and lock their calls (sorted by entry id), then every client number
they may touch (sorted), before folding anything: two runs never wait for each other in opposite
orders. When anything in a batch fails the whole batch is rolled back and its rows are folded one by
one, each in its own transaction, so a bad row is marked `failed` alone and never takes the others
with it; retries with backoff (`telephony.process_event`, one row) are for transient errors only
(database or broker unreachable, deadlocks). MANGO_FOLD_BATCH=1 folds one row a transaction.

`telephony.sweep_inbox` (beat) queues a run when rows are still pending after
MANGO_SWEEP_AFTER_SECONDS, so deliveries accepted while the broker was down are processed once it is
back, and closes calls whose summary never came.

A recording announced by `events/record/added` is fetched by `recordings.download_mango`
(tasks/recordings.py), queued with the event's folding.
"""
from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import func, select, text, update

from models.core.db import Session, prepared_statements, unit_of_work
from models.core.redis import get_redis, key
from models.reports import rollups
from models.telephony import rules
from models.telephony.tables import Call, MangoEvent
from settings import settings
from tasks.celery_app import celery_app
from tasks.queue import FOLD_QUEUED_KEY, LATER, enqueue, fold_inbox_soon, match_recordings_soon
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


# The oldest pending rows and, with :together, every other pending row of their calls (a call's
# deliveries arrive within minutes, so a batch holds it whole and two runs rarely share one). The
# partial index on pending rows' received_at and the entry_id index find them however large the
# inbox grows. A pending row with an error failed before: its retries (`process_event`, with backoff)
# fold it, not a run that would claim it again at once, batch after batch.
CLAIM_NEXT = text("""
    WITH picked AS (
        SELECT id, entry_id FROM mango_events WHERE status = 'pending' AND last_error IS NULL
        ORDER BY received_at, id LIMIT :size
        FOR UPDATE SKIP LOCKED
    ), same_call AS (
        SELECT id FROM mango_events
        WHERE :together AND status = 'pending' AND last_error IS NULL
          AND entry_id IN (SELECT entry_id FROM picked WHERE entry_id IS NOT NULL)
          AND id NOT IN (SELECT id FROM picked)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE mango_events
    SET status = 'processed', processed_at = clock_timestamp(), last_error = NULL, attempts = attempts + 1
    WHERE id IN (SELECT id FROM picked UNION ALL SELECT id FROM same_call)
    RETURNING id, event_type, payload, raw_body
""")

FOLD_SECONDS = 20.0
"""A run folds for about this long, then leaves the rest to a run it queues: well inside the task's
time limits, and a redelivered message (worker killed) has little to do again."""


def fold_next_batch(size: int) -> int:
    """Claim the next batch (`CLAIM_NEXT`) and fold it in one unit of work; how many rows it claimed.

    Any error rolls the whole batch back (nothing of it is applied, no row marked) and its rows are
    folded one by one instead (`fold_one_by_one`). An error of the claim itself is raised."""
    rows = []
    try:
        with unit_of_work(), prepared_statements():
            rows = Session.execute(CLAIM_NEXT, {"size": size, "together": size > 1}).all()
            if rows:
                fold_claimed(rows)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        if not rows:
            raise  # the claim itself failed: the task retries
        if len(rows) > 1:
            log.warning("mango batch of %s events rolled back (%s): folding them one by one", len(rows),
                        type(getattr(exc, "orig", None) or exc).__name__)
        fold_one_by_one(sorted(row.id for row in rows))
    if any(row.event_type in (rules.CALL, rules.SUMMARY) for row in rows):
        match_recordings_soon()  # a call or request folded now may be what an unmatched recording waits for
    return len(rows)


def drain_inbox(size: int, seconds: float = FOLD_SECONDS) -> dict:
    """Fold batches until none is pending or `seconds` have passed (then a new run is queued)."""
    deadline = time.monotonic() + seconds
    folded = batches = 0
    while True:
        claimed = fold_next_batch(size)
        if not claimed:
            break
        folded += claimed
        batches += 1
        if claimed >= size:
            fold_inbox_soon()  # more is pending: a free worker thread may fold it alongside this one
        if time.monotonic() >= deadline:
            fold_inbox_soon()
            break
    return {"folded": folded, "batches": batches}


def fold_claimed(rows) -> None:
    """Fold claimed inbox rows in the order they arrived, inside the caller's transaction."""
    rows = sorted(rows, key=lambda row: row.id)
    payloads = [row.payload if row.payload is not None else rules.parse_payload(row.raw_body or "")
                for row in rows]
    if len(rows) == 1:
        fold_one(rows[0], payloads[0])
        return
    with rules.folding_batch(), rollups.deferred(Session):
        rules.lock_batch(list(zip((row.event_type for row in rows), payloads)))
        for row, payload in zip(rows, payloads):
            fold_one(row, payload)


def fold_one(row, payload) -> None:
    for follow_up in rules.apply_event(row.event_type, payload):
        if follow_up.kind == "download_recording":
            enqueue("recordings.download_mango", row.id)  # queued before the commit: a failure leaves it pending


def fold_one_by_one(event_ids: list[int]) -> None:
    """The rows of a failed batch, each in its own unit of work: a payload that cannot be folded is
    marked `failed` alone, another error is recorded on its row, and a transient one queues it again."""
    for event_id in event_ids:
        try:
            process_inbox_row(event_id)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on its row
            transient = is_transient(exc)
            log.warning("mango event %s failed after its batch: %s", event_id, type(exc).__name__)
            try:
                _finish(event_id, "pending" if transient else "failed", describe(exc), count_attempt=True)
            except Exception:  # noqa: BLE001 - the database is away: the row is pending for the sweeper
                pass
            if transient:
                enqueue("telephony.process_event", event_id, countdown=backoff(0), if_down=LATER)


# Neither task sends task events: three Redis publishes per task would flood Flower for nothing; their
# state is the inbox, and the queue length and inbox lag are what alerts watch.
@celery_app.task(name="telephony.fold_inbox", bind=True, max_retries=PROCESS_MAX_RETRIES,
                 soft_time_limit=FOLD_SECONDS + 40, time_limit=FOLD_SECONDS + 70, send_events=False)
def fold_inbox(self) -> dict:
    """Fold the pending inbox rows, batch after batch (`drain_inbox`)."""
    try:
        get_redis().delete(FOLD_QUEUED_KEY)  # from now on a new delivery queues another run
    except Exception:  # noqa: BLE001 - the key expires by itself
        pass
    try:
        return drain_inbox(settings.MANGO_FOLD_BATCH)
    except Exception as exc:
        reason = describe(exc)
        if is_transient(exc) and self.request.retries < self.max_retries:
            log.warning("mango inbox: transient error, retrying: %s", type(exc).__name__)
            raise self.retry(exc=TransientFailure(reason), countdown=backoff(self.request.retries))
        raise


@celery_app.task(name="telephony.process_event", bind=True, max_retries=PROCESS_MAX_RETRIES,
                 soft_time_limit=30, time_limit=60, send_events=False)
def process_event(self, event_id: int) -> str:
    """Fold one inbox row (a row whose batch failed on a transient error, queued again with backoff)."""
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


@celery_app.task(name="telephony.sweep_inbox", soft_time_limit=120, time_limit=180)
def sweep_inbox() -> dict:
    """Queue a run for inbox rows left pending (the broker was down, a message was lost); close calls
    whose summary never came. One sweep at a time."""
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
        stale = Session.execute(
            select(MangoEvent.id, MangoEvent.last_error.is_not(None))
            .where(MangoEvent.status == "pending", MangoEvent.received_at < cutoff)
            .order_by(MangoEvent.received_at).limit(SWEEP_BATCH)
        ).all()
    # Rows that failed before are folded alone (runs leave them to their retries); for the others a run
    # is queued whatever FOLD_QUEUED_KEY says: the message it stands for may have been lost.
    retrying = [event_id for event_id, failed_before in stale if failed_before]
    enqueued = 1 if len(retrying) < len(stale) and fold_inbox_soon(force=True) else 0
    for event_id in retrying:
        enqueued += enqueue("telephony.process_event", event_id, if_down=LATER)
    closed = 0
    with unit_of_work(read_only=True):
        unsummarised = rules.stale_unsummarised_calls(timedelta(minutes=settings.MANGO_CLOSE_WITHOUT_SUMMARY_MIN))
    for call_pk in unsummarised:
        with unit_of_work():
            if Session.scalar(select(Call.id).where(Call.id == call_pk).with_for_update()) is not None:
                rules.close_without_summary(call_pk)
                closed += 1
    if enqueued or closed:
        log.info("mango sweep: %s pending events, a run queued: %s; %s calls closed without summary", len(stale),
                 bool(enqueued), closed)
    return {"stale": len(stale), "enqueued": enqueued, "closed": closed}
