"""The city cash book: income positive, expense negative, balance = Σ amount.

Admins and managers work with every city; a director with their own (every city when their
city_id is null); a master reads, and only reads, the rows of their own requests (the automatic
incomes); nobody else touches the cash. The automatic income of a completed request is owned by
the request and cannot be changed here. An amount's sign follows its type (models/cash/rules.py).
"""
from __future__ import annotations

import functools
from typing import Any

from flask import g
from flask.views import MethodView
from sqlalchemy import ARRAY, Integer, any_, bindparam, func, or_, select

from api.auth.schemas import MessageSchema
from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import json_response, list_response
from api.resources import commit_or_409, deleted, get_or_404
from api.security import require_city, roles_required
from api.transactions.schemas import (
    BalanceArgs,
    BalanceSchema,
    TransactionCreateSchema,
    TransactionListArgs,
    TransactionSchema,
    TransactionUpdateSchema,
)
from models.access import city_condition, may_see_transaction, transactions_visible_to
from models.cash import rules as cash_rules
from models.cash.tables import Transaction
from models.core.business_time import today_local
from models.core.db import Precompiled, Session, int_array
from models.core.enums import DIRECTOR, MANAGER, MASTER
from models.directories.tables import City, TransactionType
from models.files.tables import File

blp = Blueprint("transactions", __name__, url_prefix="/api/transactions", description="City cash book")

CASH_ROLES = (MANAGER, DIRECTOR)
CASH_READERS = (MANAGER, DIRECTOR, MASTER)
NOT_FOUND = "Операция не найдена"


# ---- reading ------------------------------------------------------------------------------------

def _current_file_path(transaction_id=Transaction.id):
    """The media path of the operation's current document (its newest validated file)."""
    return (
        select(File.storage_path)
        .where(File.transaction_id == transaction_id, File.kind == "transaction", File.status == "ready")
        .order_by(File.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("file_path")
    )


def _select():
    stmt = (
        select(
            Transaction.id, Transaction.amount, Transaction.city_id, City.name.label("city_name"),
            Transaction.transaction_type_id, TransactionType.name.label("type_name"), Transaction.notes,
            Transaction.specified_date, Transaction.payment_reason, Transaction.request_id,
            Transaction.created_at, Transaction.updated_at, Transaction.created_by_id,
        )
        .join(City, City.id == Transaction.city_id)
        .join(TransactionType, TransactionType.id == Transaction.transaction_type_id)
    )
    return stmt.add_columns(_current_file_path())


NEWEST_FIRST = (Transaction.specified_date.desc(), Transaction.id.desc())


@functools.cache
def _page_rows() -> Precompiled:
    """The rows of a page whose ids are known, newest first; compiled once."""
    return Precompiled(_select().where(Transaction.id == any_(bindparam("ids", type_=ARRAY(Integer))))
                       .order_by(*NEWEST_FIRST), tuples=True)


def _row(row) -> dict[str, Any]:
    """Both naming sets the SPA reads (docs/spa-contract.md): transaction_type/type, notes/description.

    The hottest function of the cash book (the complete list is serialised row by row): the row is
    unpacked once, and dates and timestamps are left to orjson (RFC 3339, as stored)."""
    (id_, amount, city_id, city_name, type_id, type_name, notes, specified_date, payment_reason, request_id,
     created_at, updated_at, created_by_id, file_path) = row
    kind = {"id": type_id, "name": type_name}
    return {
        "id": id_,
        "amount": float(amount),
        "city_id": city_id,
        "city": {"id": city_id, "name": city_name},
        "transaction_type_id": type_id,
        "transaction_type": kind,
        "type_id": type_id,
        "type": kind,
        "notes": notes,
        "description": notes,
        "specified_date": specified_date,
        "payment_reason": payment_reason,
        "request_id": request_id,
        "file_path": file_path,
        "expense_receipt_path": None,
        "created_at": created_at,
        "updated_at": updated_at,
        "created_by_id": created_by_id,
    }


def _response(transaction_id: int, status: int = 200):
    row = Session.execute(_select().where(Transaction.id == transaction_id)).one()
    return json_response(_row(row), status)


def _load_visible(transaction_id: int, *, for_update: bool = False) -> Transaction:
    """The transaction if the user may see it; another city's row is simply not found."""
    transaction = get_or_404(Transaction, transaction_id, NOT_FOUND, for_update=for_update)
    if not may_see_transaction(g.current_user, transaction):
        raise ApiError(404, NOT_FOUND, code="not_found")
    return transaction


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _date_conditions(args: dict) -> list:
    conditions = []
    if args.get("date_from"):
        conditions.append(Transaction.specified_date >= args["date_from"])
    if args.get("date_to"):
        conditions.append(Transaction.specified_date <= args["date_to"])
    if args.get("city_id"):
        conditions.append(Transaction.city_id == args["city_id"])
    return conditions


# ---- writing ------------------------------------------------------------------------------------

def _require_reference(model, ident: int, field: str, detail: str) -> None:
    if Session.get(model, ident) is None:
        raise ApiError(422, detail, code="validation_error", errors={field: [detail]})


def _check_city(city_id: int) -> None:
    require_city(g.current_user, city_id)  # 403 other_city before revealing whether it exists
    _require_reference(City, city_id, "city_id", "Город не найден")


def _type_direction(type_id: int) -> bool:
    """Whether the type is an income type; 422 when there is no such type."""
    is_income = cash_rules.is_income_type(type_id)
    if is_income is None:
        detail = "Тип операции не найден"
        raise ApiError(422, detail, code="validation_error", errors={"transaction_type_id": [detail]})
    return is_income


def _refuse_request_income(transaction: Transaction) -> None:
    if transaction.request_id is not None:
        raise ApiError(409, "Приход по заявке меняется через заявку", code="request_income")


def _commit() -> None:
    commit_or_409(in_use="Операция используется другими записями",
                  invalid_reference="Город или тип операции не найден")


@blp.route("")
class TransactionList(MethodView):
    @roles_required(*CASH_READERS)
    @blp.arguments(TransactionListArgs, location="query")
    @blp.response(200, TransactionSchema(many=True))
    def get(self, args):
        """The cash book, newest first: the complete array, or a page with page/page_size.

        Filters: city_id, transaction_type_id (type_id), date_from/date_to (specified_date,
        inclusive), kind=income|expense, request_id, search (notes, payment_reason)."""
        conditions = [transactions_visible_to(g.current_user), *_date_conditions(args)]
        type_id = args.get("transaction_type_id") or args.get("type_id")
        if type_id:
            conditions.append(Transaction.transaction_type_id == type_id)
        if args.get("kind") == "income":
            conditions.append(Transaction.amount > 0)
        elif args.get("kind") == "expense":
            conditions.append(Transaction.amount < 0)
        if args.get("request_id"):
            conditions.append(Transaction.request_id == args["request_id"])
        if args.get("search"):
            pattern = _like(args["search"])
            conditions.append(or_(Transaction.notes.ilike(pattern, escape="\\"),
                                  Transaction.payment_reason.ilike(pattern, escape="\\")))
        if args.get("page") is None and args.get("page_size") is None:
            return list_response(_select().where(*conditions).order_by(*NEWEST_FIRST), _row, args)
        # A page: its ids cut from the transactions table alone, then only its rows joined and read.
        page_ids = select(Transaction.id).where(*conditions).order_by(*NEWEST_FIRST)
        count = select(func.count()).select_from(Transaction).where(*conditions)
        return list_response(page_ids, _row, args, count_stmt=count,
                             page_rows=lambda ids: _page_rows().all({"ids": int_array(ids)}))

    @roles_required(*CASH_ROLES)
    @blp.arguments(TransactionCreateSchema)
    @blp.response(201, TransactionSchema)
    @blp.alt_response(403, description="A director writing into another city")
    def post(self, body):
        """Book an operation: the amount's sign follows the type (income positive, expense negative,
        whatever sign was sent); no specified_date means today (business time zone)."""
        _check_city(body["city_id"])
        is_income = _type_direction(body["transaction_type_id"])
        transaction = Transaction(
            city_id=body["city_id"],
            transaction_type_id=body["transaction_type_id"],
            amount=cash_rules.signed(body["amount"], is_income),
            notes=body.get("notes"),
            payment_reason=body.get("payment_reason"),
            specified_date=body.get("specified_date") or today_local(),
            created_by_id=g.current_user.id,
        )
        Session.add(transaction)
        _commit()
        return _response(transaction.id, 201)


@blp.route("/<int:transaction_id>")
class TransactionItem(MethodView):
    @roles_required(*CASH_READERS)
    @blp.response(200, TransactionSchema)
    def get(self, transaction_id: int):
        """One operation."""
        _load_visible(transaction_id)
        return _response(transaction_id)

    @roles_required(*CASH_ROLES)
    @blp.arguments(TransactionUpdateSchema)
    @blp.response(200, TransactionSchema)
    @blp.alt_response(409, description="The income of a request is changed through the request")
    def put(self, body, transaction_id: int):
        """Change an operation; only the fields sent are changed (old names accepted). The amount's
        sign follows the (new) type, whatever sign was sent."""
        transaction = _load_visible(transaction_id, for_update=True)
        _refuse_request_income(transaction)
        if "city_id" in body:
            _check_city(body["city_id"])
        is_income = _type_direction(body.get("transaction_type_id", transaction.transaction_type_id))
        body["amount"] = cash_rules.signed(body.get("amount", transaction.amount), is_income)
        for name, value in body.items():
            setattr(transaction, name, value)
        _commit()
        return _response(transaction.id)

    @roles_required(*CASH_ROLES)
    @blp.response(200, MessageSchema)
    @blp.alt_response(409, description="The income of a request is removed through the request")
    def delete(self, transaction_id: int):
        """Delete an operation."""
        transaction = _load_visible(transaction_id, for_update=True)
        _refuse_request_income(transaction)
        Session.delete(transaction)
        _commit()
        return deleted("Операция удалена")


def _balance_cities(user):
    """The cities a balance lists: the user's (every city when not held to one); for a master, the
    cities their requests' rows are in."""
    if user.role_name == MASTER:
        return City.id.in_(select(Transaction.city_id).where(transactions_visible_to(user)))
    return city_condition(user, City.id)


@blp.route("/balance")
class Balance(MethodView):
    @roles_required(*CASH_READERS)
    @blp.arguments(BalanceArgs, location="query")
    @blp.response(200, BalanceSchema)
    def get(self, args):
        """Income, expense and balance per city and per type for a date range (specified_date, inclusive)."""
        user = g.current_user
        conditions = [transactions_visible_to(user), *_date_conditions(args)]
        income = func.coalesce(func.sum(Transaction.amount).filter(Transaction.amount > 0), 0)
        expense = func.coalesce(func.sum(Transaction.amount).filter(Transaction.amount < 0), 0)
        balance = func.coalesce(func.sum(Transaction.amount), 0)
        count = func.count(Transaction.id)

        total = Session.execute(select(income.label("income"), expense.label("expense"), balance.label("balance"),
                                       count.label("count")).where(*conditions)).one()

        def grouped(key):
            return (select(key.label("key"), income.label("income"), expense.label("expense"),
                           balance.label("balance"), count.label("count"))
                    .where(*conditions).group_by(key).subquery())

        by_city = grouped(Transaction.city_id)
        city_rows = Session.execute(
            select(City.id, City.name, by_city.c.income, by_city.c.expense, by_city.c.balance, by_city.c.count)
            .outerjoin(by_city, by_city.c.key == City.id)
            .where(_balance_cities(user), *([City.id == args["city_id"]] if args.get("city_id") else []))
            .order_by(City.name, City.id)
        ).all()
        by_type = grouped(Transaction.transaction_type_id)
        type_rows = Session.execute(
            select(TransactionType.id, TransactionType.name, by_type.c.income, by_type.c.expense,
                   by_type.c.balance, by_type.c.count)
            .outerjoin(by_type, by_type.c.key == TransactionType.id)
            .order_by(TransactionType.id)
        ).all()

        def sums(row) -> dict[str, Any]:
            return {"income": float(row.income or 0), "expense": float(row.expense or 0),
                    "balance": float(row.balance or 0), "count": int(row.count or 0)}

        return json_response({
            "date_from": args["date_from"].isoformat() if args.get("date_from") else None,
            "date_to": args["date_to"].isoformat() if args.get("date_to") else None,
            "total": sums(total),
            "cities": [{"city_id": row.id, "city_name": row.name, **sums(row)} for row in city_rows],
            "types": [{"transaction_type_id": row.id, "name": row.name, **sums(row)} for row in type_rows],
        })
