"""Call recordings: the mailbox import, the inbox of unmatched recordings, manual links.

Recordings carry client phone numbers of every city, so the mailbox and the inbox are for admins
and managers. The recordings of one request are shown to whoever may see that request (a master:
only their own requests).
"""
from __future__ import annotations

from datetime import timedelta

from flask import g, request
from flask.views import MethodView
from sqlalchemy import and_, select

from api.errors import ApiError
from api.extensions import Blueprint
from api.jobs.schemas import JobAcceptedSchema
from api.listing import json_response, list_response
from api.recordings.schemas import (
    DownloadSchema,
    LinkSchema,
    RecordingQuerySchema,
    RecordingSchema,
    StatusSchema,
)
from api.resources import commit_or_409, get_or_404
from api.security import login_required, roles_required
from models.access import requests_visible_to
from models.core.base import MAX_INT8
from models.core.business_time import local_day_start
from models.core.db import Session
from models.core.enums import MANAGER
from models.core.phones import normalize_phone
from models.ops.tables import Job
from models.recordings import mailbox
from models.recordings import rules as recording_rules
from models.recordings.tables import Recording
from models.requests.tables import Request
from settings import settings
from storage.backend import get_storage
from storage.paths import BadPath, PathNotFound
from storage.serving import file_response
from tasks import queue

blp = Blueprint("recordings", __name__, url_prefix="/api", description="Call recordings from the mailbox")

NOT_FOUND = "Запись разговора не найдена"
REQUEST_NOT_FOUND = "Заявка не найдена"
JOB_KIND = mailbox.IMPORT_JOB_KIND


def _iso(value):
    return value.isoformat() if value is not None else None


def serialize(row: Recording) -> dict:
    return {
        "id": row.id, "source": row.source, "original_name": row.original_name, "file_path": row.storage_path,
        "size_bytes": row.size_bytes, "mime_type": row.mime_type, "call_time": _iso(row.call_time),
        "from_phone": row.from_phone, "to_phone": row.to_phone, "message_id": row.message_id,
        "match_status": row.match_status, "match_attempts": row.match_attempts, "matched_at": _iso(row.matched_at),
        "request_id": row.request_id, "call_id": row.call_id, "created_at": _iso(row.created_at),
    }


def _serialize_row(row) -> dict:
    return serialize(row[0])


def apply_filters(stmt, args: dict):
    conditions = []
    if args.get("status"):
        conditions.append(Recording.match_status == args["status"])
    if args.get("source"):
        conditions.append(Recording.source == args["source"])
    if args.get("date_from"):
        conditions.append(Recording.call_time >= local_day_start(args["date_from"]))
    if args.get("date_to"):
        conditions.append(Recording.call_time < local_day_start(args["date_to"] + timedelta(days=1)))
    digits = "".join(ch for ch in (args.get("phone") or "") if ch.isdigit())
    if digits:
        wanted = normalize_phone(digits) if len(digits) >= 10 else digits
        conditions.append(Recording.from_phone.contains(wanted, autoescape=True)
                          | Recording.to_phone.contains(wanted, autoescape=True))
    return stmt.where(and_(*conditions)) if conditions else stmt


def _run(job: Job | None) -> dict | None:
    if job is None:
        return None
    params = job.params or {}
    return {
        "job_id": str(job.id), "trigger": params.get("trigger", "manual"), "status": job.status,
        "days_back": params.get("days_back"), "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
        "counts": job.result, "error": job.error,
    }


def import_status() -> dict:
    is_configured = mailbox.configured()
    state = mailbox.current_state() if is_configured else None
    last = Session.scalar(select(Job).where(Job.kind == JOB_KIND, Job.started_at.is_not(None))
                          .order_by(Job.started_at.desc()).limit(1))
    last_beat = Session.scalar(select(Job.started_at).where(Job.kind == JOB_KIND, Job.started_at.is_not(None),
                                                            Job.params["trigger"].astext == "beat")
                               .order_by(Job.started_at.desc()).limit(1))
    interval = settings.RECORDINGS_CHECK_INTERVAL
    return {
        "configured": is_configured,
        "mailbox": settings.IMAP_USER if is_configured else None,
        "folder": settings.IMAP_FOLDER,
        "security": settings.IMAP_SECURITY,
        "running": mailbox.import_running(),
        "interval_seconds": interval,
        "last_run": _run(last),
        "last_error": state.last_error if state is not None else None,
        "last_checked_at": _iso(state.last_run_at) if state is not None else None,
        "next_run_at": _iso(last_beat + timedelta(seconds=interval)) if last_beat and is_configured else None,
        "uidvalidity": state.uidvalidity if state is not None else None,
        "last_uid": state.last_uid if state is not None else None,
        "totals": recording_rules.totals(),
    }


@blp.route("/recordings/download")
class RecordingsDownload(MethodView):
    @roles_required(MANAGER)
    @blp.arguments(DownloadSchema)
    @blp.response(202, JobAcceptedSchema)
    def post(self, data):
        """Import recordings from the mailbox now, looking back `days_back` days (admin, manager): 202 and a job."""
        if not mailbox.configured():
            raise ApiError(409, "Импорт записей не настроен: не заданы IMAP_HOST, IMAP_USER или IMAP_PASSWORD",
                           code="imap_not_configured")
        running = mailbox.import_running()
        if running is None:
            raise ApiError(503, "Очередь задач недоступна, повторите позже", code="broker_unavailable")
        if running:
            raise ApiError(409, "Импорт записей уже выполняется, повторите позже", code="import_running")
        job = queue.enqueue_job(JOB_KIND, "recordings.import_mailbox",
                                {"days_back": data["days_back"], "trigger": "manual"}, created_by_id=g.current_user.id)
        return json_response({"job_id": str(job.id), "status": job.status}, status=202)


@blp.route("/recordings/status")
class RecordingsStatus(MethodView):
    @roles_required(MANAGER)
    @blp.response(200, StatusSchema)
    def get(self):
        """The mailbox import: last run (times, counts, error), next run, recordings by match status."""
        return json_response(import_status())


@blp.route("/recordings")
class RecordingCollection(MethodView):
    @roles_required(MANAGER)
    @blp.arguments(RecordingQuerySchema, location="query")
    @blp.response(200, RecordingSchema(many=True))
    def get(self, args):
        """Recordings, newest call first; `?status=unmatched` is the inbox of those waiting for a link."""
        stmt = apply_filters(select(Recording), args).order_by(Recording.call_time.desc().nulls_last(),
                                                               Recording.id.desc())
        return list_response(stmt, _serialize_row, args)


@blp.route("/recordings/<int:recording_id>/link")
class RecordingLink(MethodView):
    @roles_required(MANAGER)
    @blp.arguments(LinkSchema)
    @blp.response(200, RecordingSchema)
    def post(self, data, recording_id: int):
        """Link a recording to a request by hand (admin, manager); it becomes the request's recording."""
        recording = get_or_404(Recording, recording_id, NOT_FOUND, for_update=True, max_id=MAX_INT8)
        request = get_or_404(Request, data["request_id"], REQUEST_NOT_FOUND)
        if recording.request_id != request.id or recording.match_status != recording_rules.MATCHED:
            recording_rules.link(recording, request.id, user_id=g.current_user.id)
        commit_or_409(invalid_reference=REQUEST_NOT_FOUND)  # the request deleted meanwhile
        Session.refresh(recording)
        return json_response(serialize(recording))


@blp.route("/recordings/<int:recording_id>/audio")
class RecordingAudio(MethodView):
    @roles_required(MANAGER)
    @blp.response(200, description="The recording, inline (`?download=1` as an attachment)")
    def get(self, recording_id: int):
        """Listen to any recording, linked or not (admin, manager): how the inbox is worked through."""
        recording = get_or_404(Recording, recording_id, NOT_FOUND, max_id=MAX_INT8)
        download = request.args.get("download", "").lower() in ("1", "true", "yes")
        try:
            return file_response(get_storage(), recording.storage_path, content_type=recording.mime_type or "",
                                 filename=recording.original_name or "recording", sha256=recording.sha256,
                                 download=download)
        except (BadPath, PathNotFound):
            raise ApiError(404, "Файл записи не найден в хранилище", code="file_missing") from None


@blp.route("/requests/<int:request_id>/recordings")
class RequestRecordings(MethodView):
    @login_required
    @blp.response(200, RecordingSchema(many=True))
    def get(self, request_id: int):
        """The recordings linked to a request, newest call first (whoever may see the request)."""
        get_or_404(Request, request_id, REQUEST_NOT_FOUND)
        visible = Session.scalar(select(Request.id).where(Request.id == request_id,
                                                          requests_visible_to(g.current_user)))
        if visible is None:
            raise ApiError(404, REQUEST_NOT_FOUND, code="not_found")
        rows = Session.scalars(select(Recording).where(Recording.request_id == request_id)
                               .order_by(Recording.call_time.desc().nulls_last(), Recording.id.desc())).all()
        return json_response([serialize(row) for row in rows])
