"""Mango Office: the inbox worker, the sweeper, and the recording download.

`telephony.process_event(event_id)` (queue light) claims one inbox row with a conditional UPDATE and
folds it into calls and requests in the same transaction, so the effects and the `processed` mark
are committed together: a worker killed in the middle leaves the row `pending` and nothing applied,
and the redelivered message (late ack) or the sweeper applies it exactly once. Retries with backoff
are for transient errors only (database or broker unreachable, deadlocks); a payload that cannot be
folded is marked `failed` with its reason, for an administrator to look at and replay.

`telephony.sweep_inbox` (beat) re-enqueues rows still pending after MANGO_SWEEP_AFTER_SECONDS, so
deliveries accepted while the broker was down are processed once it is back, and closes calls whose
summary never came.

`recordings.download_mango(event_id)` (queue heavy) fetches a recording announced by
`events/record/added` through the Mango API (`queries/recording/post`, which answers 302 to a
one-time file URL) into MEDIA_ROOT/zayvka/zapis under a random name and records it in `recordings`
(unique by mango_recording_id and sha256), linked to its call and request.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from urllib.parse import urljoin

import orjson
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from models import telephony_rules as rules
from models.db import Session
from models.kv import get_redis, key
from models.recording_rules import path_referenced
from models.recordings import Recording
from models.telephony import Call, MangoEvent
from settings import settings
from storage.backend import UploadTooLarge
from storage.recordings import AUDIO_EXTENSIONS, NotAudio, StoredRecording, delete_unless_referenced, store_recording
from tasks.celery_app import LIGHT, broker_url, celery_app
from tasks.retry import TransientFailure, backoff, describe, is_transient

log = logging.getLogger(__name__)

PROCESS_MAX_RETRIES = 8
DOWNLOAD_MAX_RETRIES = 6
SWEEP_BATCH = 2000
SWEEP_LOCK = key("lock", "mango-sweep")
MAX_DOWNLOAD_BYTES = 500 * 1024 * 1024  # a long call in MP3 is tens of MB; this only stops a runaway answer
DOWNLOAD_CHUNK = 64 * 1024


# ---- the inbox --------------------------------------------------------------------------------------

def _finish(event_id: int, status: str, error: str | None, *, count_attempt: bool) -> None:
    values = {"last_error": error}
    if status != "pending":
        values.update(status=status, processed_at=func.clock_timestamp())
    if count_attempt:
        values["attempts"] = MangoEvent.attempts + 1
    Session.execute(update(MangoEvent).where(MangoEvent.id == event_id, MangoEvent.status == "pending")
                    .values(**values))
    Session.commit()


CLAIM = text("""
    UPDATE mango_events
    SET status = 'processed', processed_at = clock_timestamp(), last_error = NULL, attempts = attempts + 1
    WHERE id = :id AND status = 'pending'
    RETURNING event_type, payload, raw_body
""")


def process_inbox_row(event_id: int) -> str:
    """Claim, fold and mark one inbox row in one transaction; `skipped` when it is not pending.

    The claim marks the row processed at once: the mark, the attempt and the effects are committed
    together or rolled back together (the row lock makes a second worker wait, then find it done).
    """
    row = Session.execute(CLAIM, {"id": event_id}).first()
    if row is None:
        Session.rollback()
        return "skipped"
    try:
        payload = row.payload if row.payload is not None else rules.parse_payload(row.raw_body or "")
        follow_ups = rules.apply_event(row.event_type, payload)
    except rules.PayloadError as exc:
        Session.rollback()
        _finish(event_id, "failed", str(exc), count_attempt=True)
        log.warning("mango event %s (%s) failed: %s", event_id, row.event_type, exc)
        return "failed"
    for follow_up in follow_ups:
        if follow_up.kind == "download_recording":
            # Queued before the row is marked: if this fails the event stays pending and comes back.
            download_mango.apply_async((event_id,))
    Session.commit()
    if row.event_type in (rules.CALL, rules.SUMMARY):
        from tasks.recordings import match_pending_soon

        match_pending_soon()  # a call or request folded now may be what an unmatched recording waits for
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
        Session.rollback()
        reason = describe(exc)
        if is_transient(exc) and self.request.retries < self.max_retries:
            try:
                _finish(int(event_id), "pending", reason, count_attempt=True)
            except Exception:  # the database itself is away: the retry will find the row as it was
                Session.rollback()
            log.warning("mango event %s: transient error, retrying: %s", event_id, type(exc).__name__)
            raise self.retry(exc=TransientFailure(reason), countdown=backoff(self.request.retries))
        # Only the type in the log: messages of data errors may quote numbers; the row keeps the detail.
        log.error("mango event %s failed: %s", event_id, type(exc).__name__)
        _finish(int(event_id), "failed", reason, count_attempt=True)
        return "failed"


def light_queue_length() -> int:
    """Messages waiting in the light queue (0 when it cannot be asked)."""
    try:
        import redis

        client = redis.Redis.from_url(broker_url(), socket_connect_timeout=1, socket_timeout=2)
        try:
            return int(client.llen(LIGHT))
        finally:
            client.close()
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
    stale = Session.scalars(
        select(MangoEvent.id).where(MangoEvent.status == "pending", MangoEvent.received_at < cutoff)
        .order_by(MangoEvent.received_at).limit(SWEEP_BATCH)
    ).all()
    Session.rollback()
    enqueued = 0
    # While the worker drains a backlog the stale rows are still queued: do not queue them twice.
    if stale and light_queue_length() < len(stale):
        for event_id in stale:
            process_event.apply_async((event_id,))
            enqueued += 1
    closed = 0
    for call_pk in rules.stale_unsummarised_calls(timedelta(minutes=settings.MANGO_CLOSE_WITHOUT_SUMMARY_MIN)):
        if Session.scalar(select(Call.id).where(Call.id == call_pk).with_for_update()) is not None:
            rules.close_without_summary(call_pk)
            closed += 1
        Session.commit()
    if enqueued or closed:
        log.info("mango sweep: %s pending events re-enqueued, %s calls closed without summary", enqueued, closed)
    return {"stale": len(stale), "enqueued": enqueued, "closed": closed}


# ---- recordings through the Mango API ---------------------------------------------------------------

class MangoApiError(Exception):
    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry


def mango_sign(payload_json: str) -> str:
    return hashlib.sha256((settings.MANGO_API_KEY + payload_json + settings.MANGO_API_SALT).encode()).hexdigest()


def _open_recording(recording_id: str):
    """The response streaming the file: POST queries/recording/post, then GET the one-time Location."""
    import requests

    url = urljoin(settings.MANGO_API_URL.rstrip("/") + "/", "queries/recording/post")
    body = orjson.dumps({"recording_id": recording_id, "action": "download"}).decode()
    try:
        answer = requests.post(url, data={"vpbx_api_key": settings.MANGO_API_KEY, "sign": mango_sign(body),
                                          "json": body}, allow_redirects=False, timeout=(5, 30))
    except requests.RequestException as exc:
        raise MangoApiError(f"Mango API недоступен: {type(exc).__name__}", retry=True) from None
    status = answer.status_code
    if status in (301, 302, 303, 307, 308) and answer.headers.get("Location"):
        answer.close()
        location = urljoin(url, answer.headers["Location"])  # one-time link: never stored or logged
        try:
            file_response = requests.get(location, stream=True, timeout=(5, 60))
        except requests.RequestException as exc:
            raise MangoApiError(f"файл записи недоступен: {type(exc).__name__}", retry=True) from None
        if file_response.status_code != 200:
            file_response.close()
            raise MangoApiError(f"файл записи: HTTP {file_response.status_code}",
                                retry=file_response.status_code in (404, 429) or file_response.status_code >= 500)
        return file_response
    detail = answer.text[:200].strip()
    answer.close()
    # 401: Mango locks the key for 2 minutes after bad requests; 429: rate limit; 404/3320/3340: the
    # recording is not in the cloud yet (it lags after record/added under load).
    retry = status in (401, 404, 408, 429) or status >= 500 or (status == 200 and detail.startswith("{"))
    raise MangoApiError(f"Mango API: HTTP {status} {detail}", retry=retry)


def _store(response) -> StoredRecording:
    """Stream the body into the media layout (storage/recordings.py); a body that is not audio is
    an error page or a JSON answer with status 200: the file is not there yet."""
    try:
        return store_recording(response.iter_content(DOWNLOAD_CHUNK), MAX_DOWNLOAD_BYTES)
    except UploadTooLarge:
        raise MangoApiError("запись больше допустимого размера", retry=False) from None
    except NotAudio as exc:
        raise MangoApiError("пустой файл записи" if exc.empty else "ответ не похож на аудиофайл", retry=True) from None
    finally:
        response.close()


def save_recording(recording_id: str, entry_id: str | None, announced_at, stored: StoredRecording) -> str:
    """Record a downloaded file once; a file that lost the race (or duplicates another) is removed."""
    call = rules.lock_call(entry_id) if entry_id else None
    client, line = (call.client_phone, call.line_number) if call is not None else (None, None)
    from_phone, to_phone = (line, client) if call is not None and call.direction == "out" else (client, line)
    request_id = call.request_id if call is not None else None
    inserted = Session.scalar(
        pg_insert(Recording).values(
            source="mango", sha256=stored.sha256, storage_path=stored.relative_path,
            original_name=f"{recording_id[:240]}.{AUDIO_EXTENSIONS[stored.mime_type]}", size_bytes=stored.size,
            mime_type=stored.mime_type, call_time=(call.started_at if call is not None else None) or announced_at,
            from_phone=from_phone, to_phone=to_phone, mango_recording_id=recording_id,
            call_id=call.id if call is not None else None, request_id=request_id,
            match_status="matched" if request_id else "unmatched",
            matched_at=func.now() if request_id else None,
        ).on_conflict_do_nothing().returning(Recording.id)
    )
    if inserted is None:
        # The same audio came by mail already: give that row the Mango id and the call.
        Session.execute(
            update(Recording).where(Recording.sha256 == stored.sha256, Recording.mango_recording_id.is_(None))
            .values(mango_recording_id=recording_id,
                    call_id=func.coalesce(Recording.call_id, call.id if call is not None else None))
        )
    Session.commit()
    if inserted is None:
        delete_unless_referenced(stored.relative_path, path_referenced)
        return "duplicate"
    return "stored"


@celery_app.task(name="recordings.download_mango", bind=True, max_retries=DOWNLOAD_MAX_RETRIES,
                 soft_time_limit=240, time_limit=300)
def download_mango(self, event_id: int) -> str:
    event = Session.get(MangoEvent, int(event_id))
    payload = event.payload if event is not None else None
    if not isinstance(payload, dict) or not rules.download_configured():
        return "nothing to do"
    recording_id = rules.as_text(payload.get("recording_id"), 255)
    entry_id = rules.as_text(payload.get("entry_id"), 128)
    if not recording_id:
        return "nothing to do"
    if Session.scalar(select(Recording.id).where(Recording.mango_recording_id == recording_id)) is not None:
        Session.rollback()
        return "already stored"
    Session.rollback()
    try:
        stored = _store(_open_recording(recording_id))
        return save_recording(recording_id, entry_id, rules.as_time(payload.get("timestamp")), stored)
    except MangoApiError as exc:
        Session.rollback()
        if exc.retry and self.request.retries < self.max_retries:
            log.warning("mango recording of event %s not downloaded yet, retrying: %s", event_id, exc)
            raise self.retry(exc=TransientFailure(str(exc)), countdown=backoff(self.request.retries, base=60, cap=1800))
        _mark_download_failed(int(event_id), f"запись не скачана: {exc}")
        return "failed"
    except Exception as exc:
        Session.rollback()
        if is_transient(exc) and self.request.retries < self.max_retries:
            countdown = backoff(self.request.retries, base=30, cap=900)
            raise self.retry(exc=TransientFailure(describe(exc)), countdown=countdown)
        log.error("mango recording of event %s failed: %s", event_id, type(exc).__name__)
        _mark_download_failed(int(event_id), f"запись не скачана: {describe(exc)}")
        return "failed"


def _mark_download_failed(event_id: int, reason: str) -> None:
    """The event shows up among the failed ones; replaying it asks for the download again."""
    Session.execute(
        update(MangoEvent).where(MangoEvent.id == event_id)
        .values(status="failed", last_error=reason[:2000], processed_at=func.clock_timestamp())
    )
    Session.commit()
