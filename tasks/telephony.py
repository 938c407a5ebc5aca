"""Mango Office: the inbox worker and the sweeper.

`telephony.process_event(event_id)` (queue light) claims inbox rows with a conditional UPDATE and
folds them into calls and requests in the same transaction, so the effects and the `processed` marks
are committed together: a worker killed in the middle leaves the rows `pending` and nothing applied,
and the redelivered message (late ack) or the sweeper applies them exactly once. Retries with backoff
are for transient errors only (database or broker unreachable, deadlocks); a payload that cannot be
folded is marked `failed` with its reason, for an administrator to look at and replay.

Batches (MANGO_FOLD_BATCH rows; 1, the default, folds one row a task). The task's own row, if it is
still pending and no other transaction holds it, is claimed with up to MANGO_FOLD_BATCH - 1 of the
oldest other pending rows (`FOR UPDATE SKIP LOCKED`: rows another batch holds are left to it), and all
of them are folded in one transaction, in the order they arrived (row id), exactly as one-by-one
folding would, with one commit and far fewer round trips. The tasks queued for rows a batch has taken
find them processed (or held) and end at once (`skipped`). When anything in a batch fails the whole
batch is rolled back and its rows are folded one by one, each in its own transaction, so a bad row is
marked `failed` alone and never takes the others with it.

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

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import func, select, text, update

from models.core import probes
from models.core.db import Session, get_engine, prepared_statements, unit_of_work
from models.core.redis import get_redis, key
from models.telephony import rules
from models.telephony.tables import Call, MangoEvent
from settings import settings
from tasks.celery_app import celery_app
from tasks.queue import LATER, LIGHT, enqueue, match_recordings_soon
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


# A look outside any transaction (one round trip): the row is pending and no transaction holds it.
PENDING_AND_FREE = text("SELECT 1 FROM mango_events WHERE id = :id AND status = 'pending' FOR UPDATE SKIP LOCKED")

# The task's own row, only if it is pending and free, and then the oldest other free pending rows (the
# partial index on pending rows' received_at finds them however large the inbox grows).
CLAIM_BATCH = text("""
    WITH own AS (
        SELECT id FROM mango_events WHERE id = :id AND status = 'pending' FOR UPDATE SKIP LOCKED
    ), others AS (
        SELECT id FROM mango_events
        WHERE status = 'pending' AND id <> :id AND EXISTS (SELECT 1 FROM own)
        ORDER BY received_at LIMIT :others
        FOR UPDATE SKIP LOCKED
    )
    UPDATE mango_events
    SET status = 'processed', processed_at = clock_timestamp(), last_error = NULL, attempts = attempts + 1
    WHERE id IN (SELECT id FROM own UNION ALL SELECT id FROM others)
    RETURNING id, event_type, payload, raw_body
""")


def process_inbox_batch(event_id: int, size: int) -> str:
    """Claim `event_id` with up to `size - 1` other pending rows and fold them in one unit of work;
    `skipped` when `event_id` is not pending or another batch holds it.

    Any error rolls the whole batch back (nothing of it is applied, no row marked) and its rows are
    folded one by one instead (`fold_one_by_one`)."""
    if not pending_and_free(event_id):
        return "skipped"  # folded already, or being folded by a batch that holds it
    rows = []
    try:
        with unit_of_work(), prepared_statements():
            rows = Session.execute(CLAIM_BATCH, {"id": event_id, "others": size - 1}).all()
            if not rows:
                return "skipped"
            fold_claimed(rows)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        if not rows:
            raise  # the claim itself failed: the task retries or fails it
        log.warning("mango batch of %s events rolled back (%s): folding them one by one", len(rows),
                    type(getattr(exc, "orig", None) or exc).__name__)
        return fold_one_by_one(event_id, sorted(row.id for row in rows))
    if any(row.event_type in (rules.CALL, rules.SUMMARY) for row in rows):
        match_recordings_soon()
    return "processed"


def pending_and_free(event_id: int) -> bool:
    """Whether the row may be claimed now; most tasks of a backlog find their row taken by a batch, and
    this answers them without a transaction (the claim checks again)."""
    with get_engine().connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection.execute(PENDING_AND_FREE, {"id": event_id}).first() is not None


def fold_claimed(rows) -> None:
    """Fold claimed inbox rows in the order they arrived, inside the caller's transaction."""
    rows = sorted(rows, key=lambda row: row.id)
    payloads = [row.payload if row.payload is not None else rules.parse_payload(row.raw_body or "")
                for row in rows]
    with rules.folding_batch():
        rules.lock_calls(filter(None, (rules.call_entry_id(row.event_type, payload)
                                       for row, payload in zip(rows, payloads))))
        for row, payload in zip(rows, payloads):
            for follow_up in rules.apply_event(row.event_type, payload):
                if follow_up.kind == "download_recording":
                    enqueue("recordings.download_mango", row.id)  # before the commit, as one by one


def fold_one_by_one(event_id: int, event_ids: list[int]) -> str:
    """The rows of a failed batch, each in its own unit of work. The task's own row's error is raised
    (the task retries or fails it) once the others are done; another row's is recorded on that row,
    and a transient one queues it again."""
    outcome, own_error = "skipped", None
    for other_id in event_ids:
        if other_id == event_id:
            try:
                outcome = process_inbox_row(event_id)
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:  # noqa: BLE001 - raised below, after the others
                own_error = exc
            continue
        try:
            process_inbox_row(other_id)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on its row
            transient = is_transient(exc)
            log.warning("mango event %s failed in a batch's fallback: %s", other_id, type(exc).__name__)
            try:
                _finish(other_id, "pending" if transient else "failed", describe(exc), count_attempt=True)
            except Exception:  # noqa: BLE001 - the database is away: the row is pending for the sweeper
                pass
            if transient:
                enqueue("telephony.process_event", other_id, countdown=backoff(0), if_down=LATER)
    if own_error is not None:
        raise own_error
    return outcome


# process_event, one per delivery, sends no task events: three Redis publishes per task would cost a
# third of the worker's throughput and flood Flower; its state is the inbox row, and the queue length
# and inbox lag are what alerts watch.
@celery_app.task(name="telephony.process_event", bind=True, max_retries=PROCESS_MAX_RETRIES,
                 soft_time_limit=30, time_limit=60, send_events=False)
def process_event(self, event_id: int) -> str:
    try:
        if settings.MANGO_FOLD_BATCH > 1:
            return process_inbox_batch(int(event_id), settings.MANGO_FOLD_BATCH)
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
