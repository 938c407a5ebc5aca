"""Uploaded files: who may upload to what, who may read a file, and how a file shows on its owner.

Uploads are authorised like editing their owner, before a byte of the body is read: a request by
admin, manager, callcentr, the director of its city (not in a final status) and its master; a
transaction by admin, manager and the director of its city. Files are read (state, view, download)
by whoever may read the owner: a request's files by the roles that see the request, a
transaction's by admin, manager and the director of its city. A file of something the user cannot
see is simply not found.
"""
from __future__ import annotations

from sqlalchemy import select

from models.access import city_of, may_see_request, requests_visible_to
from models.cash.tables import Transaction
from models.core.base import MAX_INT4
from models.core.db import Session
from models.core.enums import ADMIN, CALLCENTR, DIRECTOR, FINAL_STATUSES, MANAGER, MASTER
from models.core.errors import Forbidden, NotFound
from models.files.tables import File
from models.people.tables import User
from models.requests.tables import Request

VALIDATION_JOB_KIND = "files.validate"  # the job of an upload, done by the heavy worker's files.validate
# The request's columns that name its current file of a kind (the newest ready one).
FILE_PATH_FIELDS = {"bso": "bso_file_path", "expense": "expense_file_path", "recording": "recording_file_path"}

REQUEST_NOT_FOUND = "Заявка не найдена"
TRANSACTION_NOT_FOUND = "Операция не найдена"
REQUEST_UPLOADERS = frozenset({ADMIN, MANAGER, CALLCENTR, DIRECTOR, MASTER})
TRANSACTION_UPLOADERS = frozenset({ADMIN, MANAGER, DIRECTOR})


def _row(model, ident: int, detail: str):
    """The row by id, or NotFound (ids outside the key's range are simply not found)."""
    row = Session.get(model, ident) if isinstance(ident, int) and 0 < ident <= MAX_INT4 else None
    if row is None:
        raise NotFound(detail, code="not_found")
    return row


def _in_users_city(user: User, city_id: int | None) -> bool:
    held_to = city_of(user)
    return held_to is None or held_to == city_id


def request_for_upload(user: User, request_id: int) -> Request:
    """The request, if `user` may edit it (the rules of PUT /api/requests/<id>)."""
    if user.role_name not in REQUEST_UPLOADERS:
        raise Forbidden("Недостаточно прав для загрузки файлов", code="forbidden")
    row = _row(Request, request_id, REQUEST_NOT_FOUND)
    if not Session.scalar(select(Request.id).where(Request.id == row.id, requests_visible_to(user))):
        raise NotFound(REQUEST_NOT_FOUND, code="not_found")
    if user.role_name == DIRECTOR and row.status in FINAL_STATUSES:
        raise Forbidden(f"Заявка в статусе «{row.status}»: директор не может её изменять", code="final_status")
    return row


def transaction_for_upload(user: User, transaction_id: int) -> Transaction:
    if user.role_name not in TRANSACTION_UPLOADERS:
        raise Forbidden("Недостаточно прав для работы с кассой", code="forbidden")
    row = _row(Transaction, transaction_id, TRANSACTION_NOT_FOUND)
    if not _in_users_city(user, row.city_id):
        raise NotFound(TRANSACTION_NOT_FOUND, code="not_found")
    return row


def may_read(user: User, file: File) -> bool:
    """Whether `user` may read the owner of `file` (and so the file)."""
    role = user.role_name
    if file.request_id is not None:
        owner = Session.get(Request, file.request_id)
        return owner is not None and may_see_request(user, owner)
    if file.transaction_id is not None:
        owner = Session.get(Transaction, file.transaction_id)
        if owner is None:
            return False
        return role in (ADMIN, MANAGER) or (role == DIRECTOR and _in_users_city(user, owner.city_id))
    return role in (ADMIN, MANAGER)  # the owner was deleted: kept for the retention period
