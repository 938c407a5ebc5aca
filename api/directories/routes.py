"""Directories the SPA loads on every page, and the advertising campaigns.

Every signed-in user reads them; admins and managers create and rename; only admins delete. Rows
the code relies on by name (the six roles, request types Впервые/Повтор, transaction types
Приход/Расход) can be neither renamed nor deleted. A row still in use is refused with a 409 that
says what uses it, before the database would have to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask.views import MethodView
from sqlalchemy import exists, or_, select

from api.auth.schemas import MessageSchema
from api.directories.schemas import (
    CampaignCreateSchema,
    CampaignListArgs,
    CampaignSchema,
    CampaignUpdateSchema,
    lookup_body_schema,
    lookup_schema,
)
from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import json_response, list_response
from api.resources import commit_or_409, deleted, get_or_404
from api.schemas import ListArgs
from api.security import login_required, roles_required
from models.advertising.tables import CampaignSpend
from models.cash.tables import Transaction
from models.core.db import Session
from models.core.enums import (
    MANAGER,
    REQUEST_TYPE_FIRST,
    REQUEST_TYPE_REPEAT,
    ROLES,
    TRANSACTION_TYPE_EXPENSE,
    TRANSACTION_TYPE_INCOME,
)
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType, Role, TransactionType
from models.people.tables import User
from models.requests.tables import Request
from models.telephony.tables import Call

blp = Blueprint("directories", __name__, url_prefix="/api",
                description="Directories (cities, roles, types, directions) and advertising campaigns")


# ---- lookups ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Directory:
    model: type
    path: str  # under /api
    aliases: tuple[str, ...]  # read-only paths the SPA uses
    label: str  # what a person calls one row, for messages
    plural: str  # for the OpenAPI summaries
    max_length: int
    order_by_name: bool
    protected: frozenset[str]  # names the code relies on
    used_by: tuple[tuple[str, Any], ...]  # (what, referencing column)
    flags: tuple[str, ...] = ()  # boolean columns read and written with the name


DIRECTORIES = (
    Directory(City, "/cities", ("/users/cities", "/transactions/cities"), "Город", "cities", 100, True,
              frozenset(),
              (("заявки", Request.city_id), ("пользователи", User.city_id),
               ("операции кассы", Transaction.city_id), ("рекламные кампании", AdvertisingCampaign.city_id))),
    Directory(Role, "/roles", ("/users/roles",), "Роль", "roles", 50, False,
              frozenset(ROLES), (("пользователи", User.role_id),)),
    Directory(RequestType, "/request-types", ("/requests/request-types",), "Тип заявки", "request types", 50,
              False, frozenset({REQUEST_TYPE_FIRST, REQUEST_TYPE_REPEAT}),
              (("заявки", Request.request_type_id),)),
    # requests.direction_id is ON DELETE SET NULL, but silently blanking the direction of old
    # requests would falsify them: refused like the RESTRICT ones.
    Directory(Direction, "/directions", ("/requests/directions",), "Направление", "directions", 50, True,
              frozenset(), (("заявки", Request.direction_id),)),
    Directory(TransactionType, "/transaction-types", ("/transactions/transaction-types",), "Тип операции",
              "transaction types", 50, False, frozenset({TRANSACTION_TYPE_INCOME, TRANSACTION_TYPE_EXPENSE}),
              (("операции кассы", Transaction.transaction_type_id),), flags=("is_income",)),
)


def _lookup_row(row, flags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, **{flag: getattr(row, flag) for flag in flags}}


def _change_flags(directory: Directory, row, body: dict[str, Any]) -> None:
    """A flag (a transaction type's direction) decides how existing rows were written: it changes only
    while nothing uses the row, and never on a row the code relies on."""
    changed = [flag for flag in directory.flags if flag in body and body[flag] != getattr(row, flag)]
    if not changed:
        return
    _refuse_protected(directory, row)
    users = _users_of(directory, row.id)
    if users:
        raise ApiError(409, f"{directory.label} используется ({', '.join(users)}): его направление нельзя изменить",
                       code="in_use")
    for flag in changed:
        setattr(row, flag, body[flag])


def _not_found(directory: Directory) -> str:
    return f"{directory.label}: запись не найдена"


def _ensure_unique_name(directory: Directory, name: str, exclude_id: int | None = None) -> None:
    model = directory.model
    condition = model.name == name
    if exclude_id is not None:
        condition = condition & (model.id != exclude_id)
    if Session.scalar(select(exists().where(condition))):
        raise ApiError(409, f"{directory.label} «{name}» уже существует", code="duplicate")


def _refuse_protected(directory: Directory, row) -> None:
    if row.name in directory.protected:
        raise ApiError(409, f"«{row.name}» — системное значение, его нельзя переименовать или удалить",
                       code="protected")


def _users_of(directory: Directory, row_id: int) -> list[str]:
    return [what for what, column in directory.used_by
            if Session.scalar(select(exists().where(column == row_id)))]


def _make_lookup_views(directory: Directory) -> None:
    model = directory.model
    body_schema = lookup_body_schema(directory.max_length, directory.flags)
    out_schema = lookup_schema(directory.flags)
    order = (model.name, model.id) if directory.order_by_name else (model.id,)
    columns = (model.id, model.name, *(getattr(model, flag) for flag in directory.flags))
    name = model.__name__

    def as_row(row) -> dict[str, Any]:
        return _lookup_row(row, directory.flags)

    class LookupList(MethodView):
        @login_required
        @blp.arguments(ListArgs, location="query")
        @blp.response(200, out_schema(many=True))
        def get(self, args):
            return list_response(select(*columns).order_by(*order), as_row, args)

        @roles_required(MANAGER)
        @blp.arguments(body_schema)
        @blp.response(201, out_schema)
        @blp.alt_response(409, description="A row with this name exists")
        def post(self, body):
            _ensure_unique_name(directory, body["name"])
            row = model(**body)
            Session.add(row)
            commit_or_409(duplicate=f"{directory.label} «{body['name']}» уже существует")
            return json_response(as_row(row), 201)

    class LookupItem(MethodView):
        @login_required
        @blp.response(200, out_schema)
        def get(self, item_id: int):
            return json_response(as_row(get_or_404(model, item_id, _not_found(directory))))

        @roles_required(MANAGER)
        @blp.arguments(body_schema)
        @blp.response(200, out_schema)
        @blp.alt_response(409, description="Duplicate name, a name the code relies on, or a direction in use")
        def put(self, body, item_id: int):
            row = get_or_404(model, item_id, _not_found(directory))
            if body["name"] != row.name:
                _refuse_protected(directory, row)
                _ensure_unique_name(directory, body["name"], exclude_id=row.id)
                row.name = body["name"]
            _change_flags(directory, row, body)
            commit_or_409(duplicate=f"{directory.label} «{body['name']}» уже существует")
            return json_response(as_row(row))

        @roles_required()
        @blp.response(200, MessageSchema)
        @blp.alt_response(409, description="In use, or a name the code relies on")
        def delete(self, item_id: int):
            row = get_or_404(model, item_id, _not_found(directory))
            _refuse_protected(directory, row)
            users = _users_of(directory, row.id)
            in_use = f"{directory.label} используется: {', '.join(users) or 'другие записи'}"
            if users:
                raise ApiError(409, in_use, code="in_use")
            Session.delete(row)
            commit_or_409(in_use=in_use)
            return deleted()

    LookupList.get.__doc__ = f"List of {directory.plural} ({{id, name}})."
    LookupList.post.__doc__ = f"Create one of the {directory.plural} (admin, manager)."
    LookupItem.get.__doc__ = f"One of the {directory.plural}."
    LookupItem.put.__doc__ = f"Rename one of the {directory.plural} (admin, manager)."
    LookupItem.delete.__doc__ = f"Delete one of the {directory.plural} (admin); refused while in use."
    LookupList.__name__ = f"{name}List"
    LookupItem.__name__ = f"{name}Item"
    blp.add_url_rule(directory.path, view_func=LookupList)
    blp.add_url_rule(f"{directory.path}/<int:item_id>", view_func=LookupItem)
    for alias in directory.aliases:
        blp.add_url_rule(alias, view_func=LookupList, methods=["GET"])


for _directory in DIRECTORIES:
    _make_lookup_views(_directory)


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " и " + items[-1]


# ---- advertising campaigns ------------------------------------------------------------------------

CAMPAIGN_NOT_FOUND = "Рекламная кампания не найдена"
LINE_TAKEN = "Этот номер уже используется активной рекламной кампанией"


def _campaign_select():
    return select(
        AdvertisingCampaign.id, AdvertisingCampaign.name, AdvertisingCampaign.phone_number,
        AdvertisingCampaign.phone, AdvertisingCampaign.city_id, AdvertisingCampaign.is_active,
        AdvertisingCampaign.created_at, AdvertisingCampaign.updated_at, City.name.label("city_name"),
    ).join(City, City.id == AdvertisingCampaign.city_id)


def _campaign_row(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "phone_number": row.phone_number,
        "phone": row.phone,
        "city_id": row.city_id,
        "city": {"id": row.city_id, "name": row.city_name},
        "is_active": row.is_active,
        "created_at": row.created_at,  # orjson: RFC 3339 with the offset
        "updated_at": row.updated_at,
    }


def _campaign_response(campaign_id: int, status: int = 200):
    row = Session.execute(_campaign_select().where(AdvertisingCampaign.id == campaign_id)).one()
    return json_response(_campaign_row(row), status)


def _require_city_exists(city_id: int) -> None:
    if Session.get(City, city_id) is None:
        raise ApiError(422, "Город не найден", code="validation_error", errors={"city_id": ["Город не найден"]})


def _refuse_taken_line(phone: str | None, exclude_id: int | None = None) -> None:
    if not phone:
        return
    condition = (AdvertisingCampaign.phone == phone) & AdvertisingCampaign.is_active
    if exclude_id is not None:
        condition = condition & (AdvertisingCampaign.id != exclude_id)
    if Session.scalar(select(exists().where(condition))):
        raise ApiError(409, LINE_TAKEN, code="duplicate")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class CampaignList(MethodView):
    @login_required
    @blp.arguments(CampaignListArgs, location="query")
    @blp.response(200, CampaignSchema(many=True))
    def get(self, args):
        """Advertising campaigns of every city (every role reads them); filters city_id, is_active, search."""
        stmt = _campaign_select()
        if args.get("city_id") is not None:
            stmt = stmt.where(AdvertisingCampaign.city_id == args["city_id"])
        if args.get("is_active") is not None:
            stmt = stmt.where(AdvertisingCampaign.is_active.is_(args["is_active"]))
        search = args.get("search")
        if search:
            conditions = [AdvertisingCampaign.name.ilike(_like(search), escape="\\")]
            digits = "".join(ch for ch in search if ch.isdigit())
            if digits:
                conditions.append(AdvertisingCampaign.phone.like(_like(digits), escape="\\"))
            stmt = stmt.where(or_(*conditions))
        stmt = stmt.order_by(AdvertisingCampaign.name, AdvertisingCampaign.id)
        return list_response(stmt, _campaign_row, args)

    @roles_required(MANAGER)
    @blp.arguments(CampaignCreateSchema)
    @blp.response(201, CampaignSchema)
    @blp.alt_response(409, description="The line is used by another active campaign")
    def post(self, body):
        """Create a campaign (admin, manager): city, name, tracking line."""
        _require_city_exists(body["city_id"])
        phone = normalize_phone(body["phone_number"])
        if body["is_active"]:
            _refuse_taken_line(phone)
        campaign = AdvertisingCampaign(city_id=body["city_id"], name=body["name"],
                                       phone_number=body["phone_number"], phone=phone, is_active=body["is_active"])
        Session.add(campaign)
        commit_or_409(duplicate=LINE_TAKEN, invalid_reference="Город не найден")
        return _campaign_response(campaign.id, 201)


class CampaignItem(MethodView):
    @login_required
    @blp.response(200, CampaignSchema)
    def get(self, campaign_id: int):
        """One campaign."""
        get_or_404(AdvertisingCampaign, campaign_id, CAMPAIGN_NOT_FOUND)
        return _campaign_response(campaign_id)

    @roles_required(MANAGER)
    @blp.arguments(CampaignUpdateSchema)
    @blp.response(200, CampaignSchema)
    @blp.alt_response(409, description="The line is used by another active campaign")
    def put(self, body, campaign_id: int):
        """Change a campaign (admin, manager); only the fields sent are changed."""
        campaign = get_or_404(AdvertisingCampaign, campaign_id, CAMPAIGN_NOT_FOUND)
        changes = dict(body)
        if "phone_number" in changes:
            changes["phone"] = normalize_phone(changes["phone_number"])
        # Checked before anything is assigned: a query must not flush a half-made change.
        if "city_id" in changes:
            _require_city_exists(changes["city_id"])
        if changes.get("is_active", campaign.is_active):
            _refuse_taken_line(changes.get("phone", campaign.phone), exclude_id=campaign.id)
        for name, value in changes.items():
            setattr(campaign, name, value)
        commit_or_409(duplicate=LINE_TAKEN, invalid_reference="Город не найден")
        return _campaign_response(campaign.id)

    @roles_required(MANAGER)
    @blp.response(200, MessageSchema)
    @blp.alt_response(409, description="Requests, calls or spend are attributed to it")
    def delete(self, campaign_id: int):
        """Delete a campaign (admin, manager); refused while requests, calls or spend are attributed to it."""
        campaign = get_or_404(AdvertisingCampaign, campaign_id, CAMPAIGN_NOT_FOUND)
        used_in = [what for what, column in (("заявках", Request.advertising_campaign_id),
                                             ("звонках", Call.campaign_id), ("расходах", CampaignSpend.campaign_id))
                   if Session.scalar(select(exists().where(column == campaign.id)))]
        if used_in:
            raise ApiError(409, f"Кампания используется в {_joined(used_in)}; отключите её (is_active=false)",
                           code="in_use")
        Session.delete(campaign)
        commit_or_409()
        return deleted()


for _prefix in ("/advertising-campaigns", "/requests/advertising-campaigns"):
    blp.add_url_rule(_prefix, view_func=CampaignList)
    blp.add_url_rule(f"{_prefix}/<int:campaign_id>", view_func=CampaignItem)
