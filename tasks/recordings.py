"""Call recordings: the mailbox import, downloads through the Mango API, and matching.

`recordings.import_mailbox` (queue heavy; beat every RECORDINGS_CHECK_INTERVAL, or a manual 202 job)
reads IMAP_FOLDER of the IMAP_USER mailbox (the client is models/recordings/mailbox.py). It is incremental by
UID: `mailbox_states` keeps UIDVALIDITY and the last UID examined per mailbox and folder. A first
run, a run after the folder's UIDVALIDITY changed and a manual run look back `days_back` days (IMAP
SEARCH SINCE); otherwise only UIDs above the last one are read. One import runs at a time (a Redis
lock with a TTL longer than the task's hard limit).

Per message, BODYSTRUCTURE (fetched for a batch of messages at once) names the parts; parts whose
decoded file name looks like `YYYY.MM.DD__HH-MM-SS__<from>__<to>.<ext>` are fetched alone, in ranges,
decoded as they arrive and streamed into the quarantine while their sha256 is computed, then promoted
into `zayvka/zapis` under a random name. A recording is stored once (sha256 is unique): the same mail
delivered twice, or a UIDVALIDITY reset, adds nothing. A part above MAX_RECORDING_UPLOAD_MB, a name
that cannot be read or bytes that are not audio are skipped with their reason, without stopping the
run. Each new recording is matched at once (models/recordings/rules.py). With IMAP_PROCESSED_FOLDER
set, messages that held recordings are moved there; with IMAP_MARK_SEEN, flagged \\Seen.

Every run is a row of `jobs` (kind `recordings.import`): start, end, counts, error. That and
`mailbox_states` are what GET /api/recordings/status shows.

`recordings.download_mango(event_id)` (queue heavy) fetches a recording announced by
`events/record/added` through the Mango API (`queries/recording/post`, which answers 302 to a
one-time file URL) into MEDIA_ROOT/zayvka/zapis under a random name and records it in `recordings`
(unique by mango_recording_id and sha256), linked to its call and request.

`recordings.match_pending` retries unmatched recordings: beat runs it periodically, and creating a
request or folding a call asks for it through `tasks.queue.match_recordings_soon()`, debounced so
that a burst of creations queues one run.
"""
from __future__ import annotations

import binascii
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator
from urllib.parse import urljoin

import orjson
from celery.exceptions import SoftTimeLimitExceeded
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from models.core.business_time import today_local
from models.core.db import Session, get_engine, unit_of_work
from models.core.redis import SingleFlight, key
from models.ops import jobs
from models.ops.tables import Job
from models.recordings import mailbox, rules
from models.recordings.mailbox import IMPORT_HARD_LIMIT, IMPORT_SOFT_LIMIT, ImportFailure, Part
from models.recordings.tables import Recording
from models.telephony import rules as telephony_rules
from models.telephony.tables import MangoEvent
from settings import settings
from storage.backend import UploadTooLarge
from storage.kinds import KINDS
from storage.recordings import AUDIO_EXTENSIONS, NotAudio, StoredRecording, delete_unless_referenced, store_recording
from tasks.celery_app import celery_app
from tasks.queue import match_recordings_soon
from tasks.retry import TransientFailure, backoff, describe, is_transient

log = logging.getLogger(__name__)

MATCH_LOCK = key("lock", "recordings-match")
FETCH_BATCH = 100  # messages whose structure is read in one FETCH
RETRY_BATCH = 500
RETRY_HORIZON_DAYS = 30
SKIPPED_LISTED = 50
DEFAULT_DAYS_BACK = 1
MATCH_LOCK_TTL = 240  # longer than match_pending's hard limit
DOWNLOAD_MAX_RETRIES = 6
MAX_DOWNLOAD_BYTES = 500 * 1024 * 1024  # a long call in MP3 is tens of MB; this only stops a runaway answer
DOWNLOAD_CHUNK = 64 * 1024


# ---- one run of the mailbox import ---------------------------------------------------------------------

class Skip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunCounts:
    messages: int = 0
    attachments: int = 0
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0
    matched: int = 0
    unmatched: int = 0
    ambiguous: int = 0
    rematched: int = 0
    fresh_start: bool = False
    partial: bool = False
    skipped_items: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, uid: int, filename: str | None, reason: str) -> None:
        self.skipped += 1
        if len(self.skipped_items) < SKIPPED_LISTED:
            self.skipped_items.append({"uid": uid, "filename": filename, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def store_part(client: IMAPClient, uid: int, part: Part, max_bytes: int) -> StoredRecording:
    """Stream one attachment, decoded as it arrives, into the media layout (storage/recordings.py)."""
    decoder = mailbox.Decoder(part.encoding)

    def decoded() -> Iterator[bytes]:
        for encoded in mailbox.part_chunks(client, uid, part):
            yield decoder.feed(encoded)
        yield decoder.finish()

    try:
        return store_recording(decoded(), max_bytes, stored_at=rules.stored_path)
    except UploadTooLarge:
        raise Skip(f"вложение больше {settings.MAX_RECORDING_UPLOAD_MB} МБ") from None
    except NotAudio as exc:
        raise Skip("пустое вложение" if exc.empty else "вложение не является аудиофайлом") from None
    except (binascii.Error, ValueError):
        raise Skip("вложение повреждено (ошибка кодировки)") from None


class MailboxImport:
    def __init__(self, *, days_back: int, manual: bool):
        self.days_back = days_back
        self.manual = manual
        self.counts = RunCounts()
        self.max_bytes = KINDS["recording"].max_bytes
        self.writes = bool(settings.IMAP_PROCESSED_FOLDER or settings.IMAP_MARK_SEEN)

    def run(self) -> RunCounts:
        client = mailbox.connect()
        try:
            self._run(client)
        finally:
            mailbox.close(client)
        return self.counts

    def _select(self, client: IMAPClient) -> dict:
        folder = settings.IMAP_FOLDER
        try:
            return client.select_folder(folder, readonly=not self.writes)
        except IMAPClientError:
            raise ImportFailure(f"Папка «{folder}» не найдена в почтовом ящике") from None

    def _run(self, client: IMAPClient) -> None:
        info = self._select(client)
        uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = int(info.get(b"UIDNEXT") or 0)
        if settings.IMAP_PROCESSED_FOLDER and not client.folder_exists(settings.IMAP_PROCESSED_FOLDER):
            client.create_folder(settings.IMAP_PROCESSED_FOLDER)
        with unit_of_work():
            state = mailbox.state()
            fresh = state.uidvalidity != uidvalidity
            if fresh:
                if state.uidvalidity is not None:
                    log.warning("mailbox folder UIDVALIDITY changed: the import starts over")
                state.uidvalidity, state.last_uid = uidvalidity, 0
                self.counts.fresh_start = True
            last_uid = state.last_uid
        if fresh or self.manual:
            since = today_local() - timedelta(days=self.days_back)
            uids = sorted(client.search(["SINCE", since]))
        else:
            uids = sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start:start + FETCH_BATCH]
            structures = client.fetch(batch, ["BODYSTRUCTURE", "ENVELOPE"])
            processed = []
            for uid in batch:
                data = structures.get(uid)
                if data is None:  # expunged meanwhile
                    continue
                if self.message_or_skip(client, uid, data):
                    processed.append(uid)
            self.finish_messages(client, processed)
            self.advance(max(batch))
        # Nothing up to UIDNEXT − 1 is left behind: messages older than days_back are not read later.
        if uidnext:
            self.advance(uidnext - 1)

    def advance(self, uid: int) -> None:
        with unit_of_work():
            state = mailbox.state()
            if uid > state.last_uid:
                state.last_uid = uid

    def finish_messages(self, client: IMAPClient, uids: list[int]) -> None:
        if not uids:
            return
        if settings.IMAP_PROCESSED_FOLDER:
            client.move(uids, settings.IMAP_PROCESSED_FOLDER)
        elif settings.IMAP_MARK_SEEN:
            client.add_flags(uids, [b"\\Seen"])

    def message_or_skip(self, client: IMAPClient, uid: int, data: dict) -> bool:
        """One message; a message that breaks the importer is skipped, not retried forever. The
        connection or the database failing ends the run instead (the next run picks up from here)."""
        try:
            return self.message(client, uid, data)
        except (OSError, IMAPClientError, DBAPIError, SoftTimeLimitExceeded):
            raise
        except Exception as exc:
            # The type only: messages of such errors may quote file names, which hold phone numbers.
            log.error("recordings import: a message skipped after %s", type(exc).__name__)
            self.counts.skip(uid, None, f"письмо не обработано: {type(exc).__name__}")
            return False

    def message(self, client: IMAPClient, uid: int, data: dict) -> bool:
        """Import the recordings of one message; True when it held any (stored now or before)."""
        self.counts.messages += 1
        envelope = data.get(b"ENVELOPE")
        message_id = mailbox.as_text(getattr(envelope, "message_id", None)).strip()[:255] or None
        held = False
        try:
            parts = list(mailbox.walk(data[b"BODYSTRUCTURE"]))
        except (IndexError, TypeError, ValueError):
            self.counts.skip(uid, None, "не удалось разобрать структуру письма")
            return False
        for part in parts:
            if not rules.is_recording_name(part.filename):
                continue
            self.counts.attachments += 1
            try:
                parsed = rules.parse_name(part.filename)
            except rules.BadName as exc:
                self.counts.skip(uid, part.filename, str(exc))
                continue
            estimated = part.size * 3 // 4 if part.encoding == "base64" else part.size
            if estimated > self.max_bytes + 4096:
                self.counts.skip(uid, part.filename, f"вложение больше {settings.MAX_RECORDING_UPLOAD_MB} МБ")
                continue
            try:
                self.part(client, uid, part, parsed, message_id or f"imap:{uid}")
            except Skip as exc:
                self.counts.skip(uid, part.filename, exc.reason)
                continue
            held = True
        return held

    def part(self, client: IMAPClient, uid: int, part: Part, parsed: rules.ParsedName, message_id: str) -> None:
        """Store one attachment, record and match it, in one unit of work (Skip: not a recording)."""
        with unit_of_work():
            stored = store_part(client, uid, part, self.max_bytes)
            if not stored.new:
                self.counts.duplicates += 1
                return
            recording_id = Session.scalar(
                pg_insert(Recording).values(
                    source="imap", sha256=stored.sha256, storage_path=stored.relative_path,
                    original_name=(part.filename or "")[:255] or None, size_bytes=stored.size,
                    mime_type=stored.mime_type, call_time=parsed.call_time, from_phone=parsed.from_phone,
                    to_phone=parsed.to_phone, message_id=message_id, match_status=rules.UNMATCHED,
                ).on_conflict_do_nothing().returning(Recording.id)
            )
            if recording_id is None:  # the same bytes were stored meanwhile (another source)
                delete_unless_referenced(stored.relative_path, rules.path_referenced)
                self.counts.duplicates += 1
                return
            status = rules.match_recording(Session.get(Recording, recording_id))
        self.counts.imported += 1
        setattr(self.counts, status, getattr(self.counts, status) + 1)


# ---- the job row of a run -------------------------------------------------------------------------------

def _start_job(job_id: str | None, days_back: int, trigger: str, run_id: str | None) -> str | None:
    if job_id is not None:
        return job_id if jobs.claim(job_id) else None
    return jobs.start_job(mailbox.IMPORT_JOB_KIND, {"days_back": days_back, "trigger": trigger}, run_id)


def _record_state(error: str | None) -> None:
    with unit_of_work():
        mailbox.record_run(error)


def _refuse(job_id: str | None, reason: str) -> None:
    """A manual run that cannot start says why in its job."""
    if job_id is not None:
        jobs.claim(job_id)
        jobs.fail(job_id, reason)


def run_import(job_id: str | None = None, days_back: int | None = None, manual: bool | None = None,
               run_id: str | None = None) -> dict[str, Any]:
    """One import, as the task runs it. `job_id` is a manual run's job (days_back from its params); a
    manual run looks back days_back days even when the mailbox was read before. `run_id`, the task
    message's id, names a beat run's job and lock holder: delivered again after its worker died, the
    run takes back its own lock and job instead of waiting for the lock to expire."""
    get_engine()
    manual = job_id is not None if manual is None else manual
    if job_id is not None:
        with unit_of_work(read_only=True):
            job = Session.get(Job, _uuid(job_id))
            if job is None:
                return {"result": "no such job"}
            days_back = int((job.params or {}).get("days_back") or DEFAULT_DAYS_BACK)
    days_back = int(days_back or DEFAULT_DAYS_BACK)
    if not mailbox.configured():
        _refuse(job_id, "Импорт записей не настроен: не заданы IMAP_HOST, IMAP_USER или IMAP_PASSWORD")
        return {"result": "not configured"}
    try:
        lock = mailbox.import_lock(job_id or (str(jobs.run_job_id(run_id)) if run_id else None))
        acquired = lock.acquire()
    except RedisError:
        _refuse(job_id, "Хранилище блокировок (Redis) недоступно, повторите позже")
        raise  # retried by the next scheduled run; a manual job says why it failed
    if not acquired:
        _refuse(job_id, "Импорт записей уже выполняется, повторите позже")
        return {"result": "refused", "reason": "another import is running"}
    try:
        job_id = _start_job(job_id, days_back, "manual" if manual else "beat", run_id)
        if job_id is None:
            return {"result": "already finished"}
        importer = MailboxImport(days_back=days_back, manual=manual)
        try:
            counts = importer.run()
        except SoftTimeLimitExceeded:
            counts = importer.counts
            counts.partial = True  # progress is committed per batch: the next run goes on from there
        except (ImportFailure, OSError, IMAPClientError) as exc:
            message = str(exc) if isinstance(exc, ImportFailure) else \
                f"Соединение с почтовым сервером прервано: {type(exc).__name__}"
            log.warning("recordings import failed: %s", message)
            _record_state(message)
            jobs.fail(job_id, message)
            return {"result": "failed", "error": message}
        except Exception as exc:
            message = f"Ошибка импорта записей: {type(exc).__name__}"
            log.error("recordings import failed: %s", type(exc).__name__)
            _record_state(message)
            jobs.fail(job_id, message)
            return {"result": "failed", "error": message}
        if counts.partial:  # out of time: the retry runs as its own task
            match_recordings_soon()
        else:
            try:
                with SingleFlight(MATCH_LOCK, MATCH_LOCK_TTL) as acquired:
                    if acquired:
                        counts.rematched = retry_unmatched()
            except Exception as exc:
                log.error("retrying unmatched recordings failed: %s", type(exc).__name__)
        _record_state(None)
        result = counts.as_dict()
        jobs.succeed(job_id, result)
        if counts.imported or counts.skipped:
            log.info("recordings import: %s imported, %s duplicates, %s skipped; matched %s, unmatched %s, "
                     "ambiguous %s", counts.imported, counts.duplicates, counts.skipped, counts.matched,
                     counts.unmatched, counts.ambiguous)
        return {"result": "succeeded", **result}
    finally:
        lock.release()


def _uuid(value: str):
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def own_session() -> None:
    """The task's session on the engine itself, whatever the session factory is bound to: these tasks
    are queued by ordinary API calls, so a worker may run one while a test holds the factory bound to
    its own rolled-back connection."""
    Session.remove()
    Session(bind=get_engine())


@celery_app.task(name="recordings.import_mailbox", bind=True, soft_time_limit=IMPORT_SOFT_LIMIT,
                 time_limit=IMPORT_HARD_LIMIT)
def import_mailbox(self, job_id: str | None = None, days_back: int | None = None) -> dict[str, Any]:
    own_session()
    return run_import(job_id, days_back, run_id=self.request.id)


# ---- retries of the unmatched ----------------------------------------------------------------------------

def retry_unmatched() -> int:
    """Match unmatched recordings again; returns how many are matched or ambiguous now."""
    with unit_of_work():
        rules.release_orphans()
        pending = rules.pending_ids(RETRY_BATCH, RETRY_HORIZON_DAYS)
    changed = 0
    for recording_id in pending:
        with unit_of_work():
            recording = Session.scalar(select(Recording).where(Recording.id == recording_id,
                                                               Recording.match_status == rules.UNMATCHED)
                                       .with_for_update(skip_locked=True))
            if recording is not None and rules.match_recording(recording) != rules.UNMATCHED:
                changed += 1
    with unit_of_work():
        rules.link_files_of_matched()
    return changed


@celery_app.task(name="recordings.match_pending", soft_time_limit=120, time_limit=180)
def match_pending() -> dict[str, Any]:
    own_session()
    with SingleFlight(MATCH_LOCK, MATCH_LOCK_TTL) as acquired:
        if not acquired:
            return {"skipped": "another retry is running"}
        return {"matched": retry_unmatched()}


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
    with unit_of_work():
        call = telephony_rules.lock_call(entry_id) if entry_id else None
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
    if inserted is None:
        with unit_of_work(read_only=True):
            delete_unless_referenced(stored.relative_path, rules.path_referenced)
        return "duplicate"
    return "stored"


@celery_app.task(name="recordings.download_mango", bind=True, max_retries=DOWNLOAD_MAX_RETRIES,
                 soft_time_limit=240, time_limit=300)
def download_mango(self, event_id: int) -> str:
    with unit_of_work(read_only=True):  # nothing stays open while the file downloads
        event = Session.get(MangoEvent, int(event_id))
        payload = event.payload if event is not None else None
        if not isinstance(payload, dict) or not telephony_rules.download_configured():
            return "nothing to do"
        recording_id = telephony_rules.as_text(payload.get("recording_id"), 255)
        entry_id = telephony_rules.as_text(payload.get("entry_id"), 128)
        if not recording_id:
            return "nothing to do"
        if Session.scalar(select(Recording.id).where(Recording.mango_recording_id == recording_id)) is not None:
            return "already stored"
    try:
        stored = _store(_open_recording(recording_id))
        return save_recording(recording_id, entry_id, telephony_rules.as_time(payload.get("timestamp")), stored)
    except MangoApiError as exc:
        if exc.retry and self.request.retries < self.max_retries:
            log.warning("mango recording of event %s not downloaded yet, retrying: %s", event_id, exc)
            raise self.retry(exc=TransientFailure(str(exc)), countdown=backoff(self.request.retries, base=60, cap=1800))
        _mark_download_failed(int(event_id), f"запись не скачана: {exc}")
        return "failed"
    except Exception as exc:
        if is_transient(exc) and self.request.retries < self.max_retries:
            countdown = backoff(self.request.retries, base=30, cap=900)
            raise self.retry(exc=TransientFailure(describe(exc)), countdown=countdown)
        log.error("mango recording of event %s failed: %s", event_id, type(exc).__name__)
        _mark_download_failed(int(event_id), f"запись не скачана: {describe(exc)}")
        return "failed"


def _mark_download_failed(event_id: int, reason: str) -> None:
    """The event shows up among the failed ones; replaying it asks for the download again."""
    with unit_of_work():
        Session.execute(
            update(MangoEvent).where(MangoEvent.id == event_id)
            .values(status="failed", last_error=reason[:2000], processed_at=func.clock_timestamp())
        )
