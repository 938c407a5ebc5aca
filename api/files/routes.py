"""Uploaded documents: accepted at once (202), validated by a worker, served only to those allowed.

Who may upload to what and who may read a file are the rules of models/files/rules.py, applied
before a byte of the body is read. The body is streamed into the quarantine under the kind's cap
(storage/upload.py), a `pending` file and its job are committed, then `files.validate` is queued on
the heavy queue. A file of something the user cannot see is simply not found; there is no public
media route.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import g, request
from flask.views import MethodView
from marshmallow import ValidationError
from sqlalchemy import select

from api.errors import ApiError
from api.extensions import Blueprint
from api.files.schemas import UPLOAD_BODY, FileOwnerQuery, FileSchema, UploadAcceptedSchema
from api.guards import refuse_control_characters_in
from api.listing import json_response
from api.resources import commit_or_409, get_or_404
from api.security import login_required
from models.core.db import Session
from models.files.rules import VALIDATION_JOB_KIND, may_read, request_for_upload, transaction_for_upload
from models.files.tables import File
from models.ops import jobs
from storage import upload
from storage.backend import get_storage
from storage.kinds import KINDS, REQUEST, TRANSACTION, Kind, kinds_of
from storage.names import check_name
from storage.paths import BadPath, PathNotFound, check_relative_path, strip_legacy_prefix
from storage.rejections import Rejected
from storage.serving import file_response
from tasks import queue

log = logging.getLogger(__name__)

blp = Blueprint("files", __name__, url_prefix="/api", description="Uploaded documents: upload, state, secure files")

MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the file in a multipart body
FILE_NOT_FOUND = "Файл не найден"


# ---- accepting an upload -------------------------------------------------------------------------------

def _refuse_declared_size(max_bytes: int) -> None:
    """Refuse at once, reading nothing, when the declared length already exceeds the cap."""
    declared = request.content_length
    if declared is not None and declared > max_bytes + MULTIPART_OVERHEAD:
        raise _too_large(max_bytes)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"Файл слишком большой: не более {max_bytes // (1024 * 1024)} МБ", code="file_too_large")


def _receive(max_bytes) -> upload.ReceivedUpload:
    storage = get_storage()
    try:
        return upload.receive(request.stream, request.headers.get("Content-Type"), storage, max_bytes)
    except upload.BadUpload as exc:
        if exc.code == "file_too_large":
            cap = max_bytes if isinstance(max_bytes, int) else g.get("upload_cap", 0)
            raise _too_large(cap) from None
        if exc.status == 413:
            raise ApiError(413, "Слишком большой запрос", code="payload_too_large") from None
        raise ApiError(exc.status, exc.message, code=exc.code) from None


def _record(received: upload.ReceivedUpload, kind: Kind, *, request_id: int | None = None,
            transaction_id: int | None = None):
    """The pending file and its job, committed; then the validation is queued. Returns the 202."""
    storage = get_storage()
    try:
        refuse_control_characters_in(received.fields)
    except ApiError:
        storage.delete_quarantined(received.token)
        raise
    try:
        name, extension = check_name(received.filename)
        if extension not in kind.extensions:
            allowed = ", ".join("." + ext for ext in kind.extensions)
            raise Rejected("extension", f"«.{extension}», для раздела «{kind.label}» разрешены {allowed}")
        if received.size == 0:
            raise Rejected("empty")
    except Rejected as rejected:
        storage.delete_quarantined(received.token)
        raise ApiError(422, rejected.message, code=rejected.code, errors={"file": [rejected.message]}) from None

    user = g.current_user
    file = File(kind=kind.name, request_id=request_id, transaction_id=transaction_id, original_name=name,
                size_bytes=received.size, quarantine_path=received.token, uploaded_by_id=user.id, status="pending")
    try:
        Session.add(file)
        Session.flush()
        job = jobs.create_job(VALIDATION_JOB_KIND, {"file_id": file.id}, created_by_id=user.id)
        commit_or_409(invalid_reference="Владелец файла удалён")
    except BaseException:
        Session.rollback()
        storage.delete_quarantined(received.token)
        raise
    # The upload is durable (row and bytes committed): with the broker down, its job is marked unsent
    # and files.sweep (every 30 s) sends it once the broker is back, so the client still gets its 202.
    if not queue.enqueue("files.validate", file.id, str(job.id), if_down=queue.LATER):
        jobs.note_unsent(job.id)
        Session.commit()
    return json_response({"file_id": file.id, "job_id": str(job.id), "status": "pending", "file_path": None},
                         status=202)


def upload_to_request(request_id: int, kind_name: str):
    user = g.current_user
    kind = KINDS[kind_name]
    request_for_upload(user, request_id)
    _refuse_declared_size(kind.max_bytes)
    received = _receive(kind.max_bytes)
    return _record(received, kind, request_id=request_id)


def upload_to_transaction(transaction_id: int):
    user = g.current_user
    kind = KINDS["transaction"]
    transaction_for_upload(user, transaction_id)
    _refuse_declared_size(kind.max_bytes)
    received = _receive(kind.max_bytes)
    return _record(received, kind, transaction_id=transaction_id)


# ---- routes: uploads -----------------------------------------------------------------------------------

@blp.route("/requests/<int:request_id>/upload-bso")
class RequestBsoUpload(MethodView):
    @login_required
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(202, UploadAcceptedSchema)
    def post(self, request_id: int):
        """Upload the БСО of a request (jpg, jpeg, png, pdf, doc, docx): accepted at once, validated by a worker."""
        return upload_to_request(request_id, "bso")


@blp.route("/requests/<int:request_id>/upload-expense")
class RequestExpenseUpload(MethodView):
    @login_required
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(202, UploadAcceptedSchema)
    def post(self, request_id: int):
        """Upload the expense receipt of a request (jpg, jpeg, png, pdf, doc, docx)."""
        return upload_to_request(request_id, "expense")


@blp.route("/requests/<int:request_id>/upload-recording")
class RequestRecordingUpload(MethodView):
    @login_required
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(202, UploadAcceptedSchema)
    def post(self, request_id: int):
        """Upload a call recording of a request (mp3, wav, ogg, m4a, amr)."""
        return upload_to_request(request_id, "recording")


@blp.route("/transactions/<int:transaction_id>/upload-file")
class TransactionUpload(MethodView):
    @login_required
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(202, UploadAcceptedSchema)
    def post(self, transaction_id: int):
        """Upload a document of a cash operation (jpg, jpeg, png, pdf, doc, docx)."""
        return upload_to_transaction(transaction_id)


def _owner_arguments(raw: dict[str, Any]) -> dict[str, Any]:
    refuse_control_characters_in(raw, FileOwnerQuery())  # the form fields, before the file is read
    try:
        values = FileOwnerQuery().load({k: v for k, v in raw.items() if k in ("owner_type", "owner_id", "kind")})
    except ValidationError as exc:
        raise ApiError(422, "Ошибка в данных запроса: владелец или вид файла указаны неверно",
                       code="validation_error", errors=exc.messages) from None
    return values


def _resolve_owner(values: dict[str, Any]) -> tuple[Kind, dict[str, int]]:
    """Authorise the upload for the owner and kind named; (kind, owner column) to record."""
    owner_type, owner_id, kind_name = values.get("owner_type"), values.get("owner_id"), values.get("kind")
    missing = [name for name, value in (("owner_type", owner_type), ("owner_id", owner_id)) if value is None]
    if kind_name is None and owner_type == TRANSACTION:
        kind_name = "transaction"
    if kind_name is None:
        missing.append("kind")
    if missing:
        raise ApiError(422, "Укажите владельца и вид файла: owner_type, owner_id, kind (до поля file)",
                       code="validation_error", errors={name: ["Обязательное поле"] for name in missing})
    if kind_name not in kinds_of(owner_type):
        raise ApiError(422, f"Вид файла «{kind_name}» не подходит владельцу «{owner_type}»", code="validation_error",
                       errors={"kind": [f"Допустимо: {', '.join(kinds_of(owner_type))}"]})
    user = g.current_user
    if owner_type == REQUEST:
        request_for_upload(user, owner_id)
        return KINDS[kind_name], {"request_id": owner_id}
    transaction_for_upload(user, owner_id)
    return KINDS[kind_name], {"transaction_id": owner_id}


@blp.route("/files")
class FileUpload(MethodView):
    @login_required
    @blp.arguments(FileOwnerQuery, location="query")
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(202, UploadAcceptedSchema)
    def post(self, args):
        """Upload a file for any owner and kind: owner_type (request, transaction), owner_id and kind
        (bso, expense, recording, transaction) in the query string or as form fields before `file`."""
        resolved: dict[str, Any] = {}

        def cap_for(fields: dict[str, str]) -> int:
            values = {**_owner_arguments(fields), **{k: v for k, v in args.items() if v is not None}}
            kind, owner = _resolve_owner(values)
            resolved.update(kind=kind, owner=owner)
            g.upload_cap = kind.max_bytes
            return kind.max_bytes

        if all(args.get(name) is not None for name in ("owner_type", "owner_id")):
            cap = cap_for({})  # everything is known: authorise before reading the body
            _refuse_declared_size(cap)
            received = _receive(cap)
        else:
            _refuse_declared_size(max(kind.max_bytes for kind in KINDS.values()))
            received = _receive(cap_for)
        return _record(received, resolved["kind"], **resolved["owner"])


# ---- routes: state and secure files --------------------------------------------------------------------

def serialize(file: File) -> dict[str, Any]:
    ready = file.status == "ready"
    return {
        "id": file.id, "kind": file.kind, "file_type": file.kind, "status": file.status,
        "reject_reason": file.reject_reason, "original_name": file.original_name, "size_bytes": file.size_bytes,
        "sniffed_type": file.sniffed_type if ready else None, "sha256": file.sha256,
        "file_path": file.storage_path if ready else None, "request_id": file.request_id,
        "transaction_id": file.transaction_id, "replaced_by_id": file.replaced_by_id,
        "created_at": file.created_at.isoformat(), "validated_at": file.validated_at.isoformat()
        if file.validated_at else None,
    }


@blp.route("/files/<int:file_id>")
class FileItem(MethodView):
    @login_required
    @blp.response(200, FileSchema)
    def get(self, file_id: int):
        """State of an uploaded file: pending, ready (with its path) or rejected (with the reason, in Russian)."""
        file = get_or_404(File, file_id, FILE_NOT_FOUND)
        if not may_read(g.current_user, file):
            raise ApiError(404, FILE_NOT_FOUND, code="not_found")
        return json_response(serialize(file))


def serve(relative_path: str, *, download: bool):
    relative_path = strip_legacy_prefix(relative_path)
    try:
        check_relative_path(relative_path)
    except BadPath:
        raise ApiError(403, "Недопустимый путь к файлу", code="bad_path") from None
    except PathNotFound:
        raise ApiError(404, FILE_NOT_FOUND, code="not_found") from None
    file = Session.scalar(select(File).where(File.storage_path == relative_path, File.status == "ready"))
    if file is None or not may_read(g.current_user, file):
        raise ApiError(404, FILE_NOT_FOUND, code="not_found")
    try:
        return file_response(get_storage(), relative_path, content_type=file.sniffed_type or "",
                             filename=file.original_name, sha256=file.sha256, download=download)
    except BadPath:
        log.error("media file %s is a symlink or leaves the media root", file.id)
        raise ApiError(403, "Недопустимый путь к файлу", code="bad_path") from None
    except PathNotFound:
        log.error("media file %s is missing on disk", file.id)
        raise ApiError(404, FILE_NOT_FOUND, code="not_found") from None


@blp.route("/secure-files/view/<path:relative_path>", merge_slashes=False)
class SecureFileView(MethodView):
    @login_required
    @blp.response(200, description="The file, inline for images, PDF and audio")
    def get(self, relative_path: str):
        """A stored file for display (img, iframe, audio), to those who may read its request or operation."""
        return serve(relative_path, download=False)


@blp.route("/secure-files/download/<path:relative_path>", merge_slashes=False)
class SecureFileDownload(MethodView):
    @login_required
    @blp.response(200, description="The file as an attachment")
    def get(self, relative_path: str):
        """A stored file as a download, to those who may read its request or operation."""
        return serve(relative_path, download=True)
