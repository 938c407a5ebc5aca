"""Requests (заявки): list, read, create, update, delete, history."""
from __future__ import annotations

import functools
from datetime import datetime, timedelta

from flask import g
from flask.views import MethodView
from sqlalchemy import ARRAY, Integer, any_, bindparam, case, func, or_, select, text, true
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased

from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import JSON_TEXT_ROWS, json_response, list_response
from api.requests.schemas import (
    LEGACY_STATUS_KEYS,
    HistoryEventSchema,
    RequestCreateSchema,
    RequestOutSchema,
    RequestQuerySchema,
    RequestUpdateSchema,
)
from api.resources import commit_or_409, deleted, get_or_404
from api.security import login_required, roles_required
from api.sqljson import iso_local, iso_utc, json_object, json_record, nullable_object
from models.access import may_see_request, request_scope, request_scope_condition, requests_visible_to
from models.core.base import MAX_INT4
from models.core.business_time import local_day_start, to_local
from models.core.db import Precompiled, Session, int_array
from models.core.enums import AVITOLOG, CALLCENTR, DIRECTOR, MANAGER
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType
from models.files.rules import FILE_PATH_FIELDS
from models.files.tables import File
from models.people.tables import User
from models.requests import rules as request_rules
from models.requests.tables import Request, RequestEvent
from models.telegram import outbox as telegram_outbox

blp = Blueprint("requests", __name__, url_prefix="/api/requests", description="Requests (заявки)")

NOT_FOUND = "Заявка не найдена"

# The work-order page's status order (docs/spa-contract.md).
SPA_STATUS_ORDER = ["Ожидает", "Ожидает принятия", "Принял", "В пути", "В работе", "Модерн", "НеЗаказ",
                    "Готово", "Отказ"]

master_user = aliased(User, name="master_user")
campaign = aliased(AdvertisingCampaign, name="campaign")


# ---- serialisation --------------------------------------------------------------------------------

def _iso(value):
    return None if value is None else value.isoformat()


def _money(value):
    return None if value is None else float(value)


def _joined(stmt):
    return (
        stmt.select_from(Request)
        .join(City, City.id == Request.city_id)
        .join(RequestType, RequestType.id == Request.request_type_id)
        .outerjoin(Direction, Direction.id == Request.direction_id)
        .outerjoin(master_user, master_user.id == Request.master_id)
        .outerjoin(campaign, campaign.id == Request.advertising_campaign_id)
    )


def _json_document(c):
    """The list row as PostgreSQL-built JSON text: the same document serialize_row makes.

    `c` names the columns of list_columns(): its own (for a stream) or a page subquery's."""
    return json_record(
        ("id", c.id), ("status", c.status),
        ("client_phone", func.coalesce(func.nullif(c.client_phone_raw, ""), c.client_phone)),
        ("client_phone_normalized", c.client_phone), ("client_name", func.coalesce(c.client_name, "")),
        ("address", c.address), ("problem", c.problem), ("meeting_date", iso_local(c.meeting_date)),
        ("city_id", c.city_id), ("request_type_id", c.request_type_id), ("direction_id", c.direction_id),
        ("advertising_campaign_id", c.advertising_campaign_id), ("master_id", c.master_id),
        ("master_notes", c.master_notes), ("result", c.result), ("expenses", c.expenses),
        ("net_amount", c.net_amount), ("master_handover", c.master_handover), ("ats_number", c.ats_number),
        ("call_center_name", c.call_center_name), ("call_center_notes", c.call_center_notes),
        ("avito_chat_id", c.avito_chat_id), ("version", c.version), ("completed_at", iso_utc(c.completed_at)),
        ("created_at", iso_utc(c.created_at)), ("updated_at", iso_utc(c.updated_at)),
        ("city", json_object(("id", c.city_id), ("name", c.city_name))),
        ("request_type", json_object(("id", c.request_type_id), ("name", c.request_type_name))),
        ("direction", nullable_object(c.direction_id, ("id", c.direction_id), ("name", c.direction_name))),
        ("master", nullable_object(
            c.master_id, ("id", c.master_id), ("full_name", c.master_name),
            ("phone_number", func.coalesce(c.master_phone, "")), ("city_id", c.master_city_id))),
        ("advertising_campaign", nullable_object(
            c.advertising_campaign_id, ("id", c.advertising_campaign_id), ("name", c.campaign_name),
            ("phone_number", c.campaign_phone), ("city_id", c.campaign_city_id))),
    )


@functools.cache
def _list_document():
    return _json_document(list_columns().selected_columns)


def json_list(stmt, sort: str | None):
    """The rows of a list_columns() statement as JSON text, in order."""
    document = _list_document()
    return apply_sort(stmt.with_only_columns(document.text).join(document.lateral, true()), sort)


@functools.cache
def page_rows_statement(sort: str | None) -> Precompiled:
    """The JSON text rows of a page whose ids are known, in the page's order; compiled once per sort.

    The page is cut from the requests table alone (ids in index order) and only its rows are joined
    and turned into JSON: the rows an OFFSET skips are never joined or formatted."""
    return Precompiled(json_list(list_columns().where(Request.id == any_(bindparam("ids", type_=ARRAY(Integer)))),
                                 sort), text_as_bytes=True, tuples=True)


@functools.cache
def list_columns():
    """A lean Core select for one request: no ORM objects (built once; selects are immutable)."""
    r = Request.__table__.c
    return _joined(
        select(
            r.id, r.status, r.client_phone, r.client_phone_raw, r.client_name, r.address, r.problem,
            r.meeting_date, r.city_id, r.request_type_id, r.direction_id, r.advertising_campaign_id,
            r.master_id, r.master_notes, r.result, r.expenses, r.net_amount, r.master_handover,
            r.ats_number, r.call_center_name, r.call_center_notes, r.avito_chat_id, r.version,
            r.completed_at, r.created_at, r.updated_at,
            City.name.label("city_name"),
            RequestType.name.label("request_type_name"),
            Direction.name.label("direction_name"),
            master_user.full_name.label("master_name"),
            master_user.phone_number.label("master_phone"),
            master_user.city_id.label("master_city_id"),
            campaign.name.label("campaign_name"),
            campaign.phone_number.label("campaign_phone"),
            campaign.city_id.label("campaign_city_id"),
        )
    )


def serialize_row(row) -> dict:
    meeting = row.meeting_date
    return {
        "id": row.id,
        "status": row.status,
        "client_phone": row.client_phone_raw or row.client_phone,
        "client_phone_normalized": row.client_phone,
        "client_name": row.client_name or "",
        "address": row.address,
        "problem": row.problem,
        "meeting_date": None if meeting is None else to_local(meeting).isoformat(),
        "city_id": row.city_id,
        "request_type_id": row.request_type_id,
        "direction_id": row.direction_id,
        "advertising_campaign_id": row.advertising_campaign_id,
        "master_id": row.master_id,
        "master_notes": row.master_notes,
        "result": _money(row.result),
        "expenses": _money(row.expenses),
        "net_amount": _money(row.net_amount),
        "master_handover": _money(row.master_handover),
        "ats_number": row.ats_number,
        "call_center_name": row.call_center_name,
        "call_center_notes": row.call_center_notes,
        "avito_chat_id": row.avito_chat_id,
        "version": row.version,
        "completed_at": _iso(row.completed_at),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "city": {"id": row.city_id, "name": row.city_name},
        "request_type": {"id": row.request_type_id, "name": row.request_type_name},
        "direction": None if row.direction_id is None else {"id": row.direction_id, "name": row.direction_name},
        "master": None if row.master_id is None else {
            "id": row.master_id, "full_name": row.master_name, "phone_number": row.master_phone or "",
            "city_id": row.master_city_id,
        },
        "advertising_campaign": None if row.advertising_campaign_id is None else {
            "id": row.advertising_campaign_id, "name": row.campaign_name, "phone_number": row.campaign_phone,
            "city_id": row.campaign_city_id,
        },
    }


def _files_of_request():
    """The request's current files as one JSON array, so the detail page costs one query."""
    item = func.json_build_object(
        "id", File.id, "kind", File.kind, "original_name", File.original_name, "file_path", File.storage_path,
        "status", File.status, "created_at", File.created_at,
    )
    return (
        select(func.coalesce(func.json_agg(aggregate_order_by(item, File.id)), text("'[]'::json")))
        .where(File.request_id == Request.id, File.replaced_by_id.is_(None))
        .scalar_subquery()
        .label("files")
    )


@functools.cache
def detail_columns():
    return list_columns().add_columns(_files_of_request())


@functools.cache
def detail_statement(scope: str) -> Precompiled:
    """Compiled once per scope shape, with the request id and the scope's value as parameters."""
    stmt = detail_columns().where(Request.id == bindparam("request_id"))
    if scope != "all":
        stmt = stmt.where(request_scope_condition(scope, bindparam("scope_id")))
    return Precompiled(stmt)


def detail(request_id: int, visible_to: User | None = None) -> dict:
    """The request as the detail page reads it; 404 when `visible_to` may not see it."""
    scope, scope_id = ("all", None) if visible_to is None else request_scope(visible_to)
    params = {"request_id": request_id} if scope_id is None else {"request_id": request_id, "scope_id": scope_id}
    row = detail_statement(scope).one_or_none(params) if 0 < request_id <= MAX_INT4 else None
    if row is None:
        raise ApiError(404, NOT_FOUND, code="not_found")
    data = serialize_row(row)
    for field in FILE_PATH_FIELDS.values():
        data[field] = None
    files = row.files
    for f in files:
        if f["status"] == "ready" and f["kind"] in FILE_PATH_FIELDS:
            data[FILE_PATH_FIELDS[f["kind"]]] = f["file_path"]
        f["file_type"] = f["kind"]
        f["request_id"] = request_id
        # PostgreSQL's JSON trims trailing zeros of the fraction; answer in the same form as everywhere else.
        f["created_at"] = datetime.fromisoformat(f["created_at"]).isoformat()
    data["files"] = files
    return data


# ---- filters -------------------------------------------------------------------------------------

SORTS = {
    "created_at": Request.created_at,
    "updated_at": Request.updated_at,
    "meeting_date": Request.meeting_date,
    "id": Request.id,
    "status": Request.status,
}
NULLABLE_SORTS = {"meeting_date"}


def filter_conditions(args: dict) -> list:
    conditions = []
    raw_status = args.get("status")
    if raw_status:
        statuses = [LEGACY_STATUS_KEYS.get(s.strip(), s.strip()) for s in raw_status.split(",") if s.strip()]
        conditions.append(Request.status.in_(statuses) if len(statuses) > 1 else Request.status == statuses[0])
    for name in ("city_id", "master_id", "advertising_campaign_id", "request_type_id", "direction_id"):
        if args.get(name) is not None:
            conditions.append(getattr(Request, name) == args[name])
    if args.get("date_from"):
        conditions.append(Request.created_at >= local_day_start(args["date_from"]))
    if args.get("date_to"):
        conditions.append(Request.created_at < local_day_start(args["date_to"] + timedelta(days=1)))
    if args.get("meeting_from"):
        conditions.append(Request.meeting_date >= local_day_start(args["meeting_from"]))
    if args.get("meeting_to"):
        conditions.append(Request.meeting_date < local_day_start(args["meeting_to"] + timedelta(days=1)))
    search = (args.get("search") or "").strip()
    if search:
        digits = "".join(ch for ch in search if ch.isdigit())
        like = f"%{search.replace('%', '').replace('_', '')}%"
        options = [Request.client_name.ilike(like), Request.address.ilike(like)]
        if len(digits) >= 3:
            normalized = normalize_phone(digits) if len(digits) >= 10 else digits
            options.append(Request.client_phone.contains(normalized, autoescape=True))
        conditions.append(or_(*options))
    return conditions


def apply_sort(stmt, sort: str | None):
    c = Request.__table__.c
    sort = (sort or "-created_at").strip()
    if sort == "spa":
        order = case({status: i for i, status in enumerate(SPA_STATUS_ORDER)}, value=c.status,
                     else_=len(SPA_STATUS_ORDER))
        return stmt.order_by(order, c.created_at.desc(), c.id.desc())
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in SORTS:
        raise ApiError(422, "Неизвестная сортировка", code="validation_error",
                       errors={"sort": [f"Допустимо: {', '.join(SORTS)}, spa; '-' для убывания"]})
    column = c[name]
    primary = column.desc() if descending else column.asc()
    if name in NULLABLE_SORTS:
        primary = primary.nulls_last()  # (not on NOT NULL columns: it would stop the index giving the order)
    return stmt.order_by(primary, c.id.desc() if descending else c.id.asc())


# ---- authorisation helpers -------------------------------------------------------------------------

def load_visible(request_id: int, *, for_update: bool = False) -> Request:
    """The request if the caller may see it; 404 otherwise (its existence does not leak)."""
    request = get_or_404(Request, request_id, NOT_FOUND, for_update=for_update)
    if not may_see_request(g.current_user, request):
        raise ApiError(404, NOT_FOUND, code="not_found")
    return request


def require_visible(request_id: int) -> None:
    """404 unless the request exists and the caller may see it: one indexed query, no ORM load."""
    if not 0 < request_id <= MAX_INT4 or Session.scalar(
            select(Request.id).where(Request.id == request_id, requests_visible_to(g.current_user))) is None:
        raise ApiError(404, NOT_FOUND, code="not_found")


def _payload(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in RequestCreateSchema.IGNORED and k != "version"}


def _send_telegram_if_queued() -> None:
    """The save told a master something (models/requests/notices.py): send it now, after the commit."""
    if telegram_outbox.take_added():
        from tasks.queue import deliver_telegram_soon

        deliver_telegram_soon()


# ---- routes --------------------------------------------------------------------------------------

@blp.route("")
class RequestCollection(MethodView):
    @login_required
    @blp.arguments(RequestQuerySchema, location="query")
    @blp.response(200, RequestOutSchema(many=True))
    def get(self, args):
        """Requests visible to the caller: the complete array, or a page with `page`/`page_size`."""
        conditions = [requests_visible_to(g.current_user), *filter_conditions(args)]
        stmt = list_columns().where(*conditions)
        # The total of a page counts the requests table alone (an index-only scan), not the joins.
        count = select(func.count()).select_from(Request).where(*conditions)
        if args.get("page") is None and args.get("page_size") is None:
            return list_response(json_list(stmt, args.get("sort")), JSON_TEXT_ROWS, args)
        page_ids = apply_sort(select(Request.id).where(*conditions), args.get("sort"))
        rows = page_rows_statement(args.get("sort"))
        return list_response(page_ids, JSON_TEXT_ROWS, args, count_stmt=count,
                             page_rows=lambda ids: rows.all({"ids": int_array(ids)}))

    @roles_required(MANAGER, DIRECTOR, CALLCENTR, AVITOLOG)
    @blp.arguments(RequestCreateSchema)
    @blp.response(201, RequestOutSchema)
    def post(self, data):
        """Create a request. Status defaults to Новая; money is computed on the server."""
        request = request_rules.create_request(g.current_user, _payload(data))
        commit_or_409()
        from tasks.queue import match_recordings_soon

        match_recordings_soon()  # an unmatched call recording may belong to this request
        _send_telegram_if_queued()
        return json_response(detail(request.id), status=201)


@blp.route("/<int:request_id>")
class RequestItem(MethodView):
    @login_required
    @blp.response(200, RequestOutSchema)
    def get(self, request_id: int):
        """One request, with the paths of its documents."""
        return json_response(detail(request_id, visible_to=g.current_user))

    @login_required
    @blp.arguments(RequestUpdateSchema(partial=True))
    @blp.response(200, RequestOutSchema)
    def put(self, data, request_id: int):
        """Partial update: only the fields sent change. `version` (optional) guards against
        overwriting someone else's save (409)."""
        user = g.current_user
        if user.role_name == AVITOLOG:
            raise ApiError(403, "Недостаточно прав", code="forbidden")
        request = load_visible(request_id, for_update=True)
        if "version" in data and data["version"] != request.version:
            raise ApiError(409, "Заявка изменена другим пользователем, обновите страницу",
                           code="version_conflict")
        request_rules.update_request(user, request, _payload(data))
        commit_or_409()
        _send_telegram_if_queued()
        return json_response(detail(request_id))

    patch = put

    @roles_required(MANAGER)
    @blp.response(200)
    def delete(self, request_id: int):
        """Delete a request (admin, manager). Its income goes with it; its history stays."""
        request = load_visible(request_id, for_update=True)
        request_rules.record_deletion(request, user_id=g.current_user.id)
        Session.delete(request)
        commit_or_409(in_use="Заявка используется и не может быть удалена")
        _send_telegram_if_queued()
        return deleted("Заявка удалена")


@blp.route("/<int:request_id>/history")
class RequestHistory(MethodView):
    @login_required
    @blp.response(200, HistoryEventSchema(many=True))
    def get(self, request_id: int):
        """Every change of the request: who, when, which field, old and new value."""
        require_visible(request_id)
        rows = Session.execute(
            select(RequestEvent, User.full_name)
            .outerjoin(User, User.id == RequestEvent.user_id)
            .where(RequestEvent.request_id == request_id)
            .order_by(RequestEvent.id)
        ).all()
        return [
            {"id": e.id, "action": e.action, "field": e.field, "old_value": e.old_value, "new_value": e.new_value,
             "user_id": e.user_id, "user_name": name, "source": e.source, "created_at": e.created_at}
            for e, name in rows
        ]
