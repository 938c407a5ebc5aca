"""Bodies and query strings of the cash book, in every shape the SPA sends (docs/spa-contract.md, bodies D and E).

Old names are accepted next to the current ones: `type_id` for `transaction_type_id`,
`description` for `notes`, `transaction_date` for `specified_date`.
"""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validates_schema

from api.fields import LenientDate, Money, Text
from api.schemas import FilterId, FilterText, Id, ListArgs, QuerySchema, RussianSchema, text_length

TEXT_LIMIT = 5000

LABELS = {
    "city_id": "Город",
    "transaction_type_id": "Тип операции",
    "type_id": "Тип операции",
    "amount": "Сумма",
    "notes": "Комментарий",
    "description": "Комментарий",
    "specified_date": "Дата",
    "transaction_date": "Дата",
    "payment_reason": "Основание платежа",
    "date_from": "Дата с",
    "date_to": "Дата по",
    "kind": "Вид",
    "request_id": "Заявка",
    "search": "Поиск",
}


def non_zero(amount) -> None:
    if amount is not None and amount == 0:
        raise ValidationError("Сумма не может быть нулевой")


class _TransactionBody(RussianSchema):
    labels = LABELS

    city_id = Id(metadata={"description": "city of the cash book"})
    transaction_type_id = Id()
    type_id = Id(metadata={"description": "alias of transaction_type_id"})
    amount = Money(validate=non_zero,
                   metadata={"description": "signed: income positive, expense negative; number or string"})
    notes = Text(allow_none=True, multiline=True, validate=text_length(TEXT_LIMIT))
    description = Text(allow_none=True, multiline=True, validate=text_length(TEXT_LIMIT),
                       metadata={"description": "alias of notes"})
    specified_date = LenientDate(metadata={"description": "YYYY-MM-DD; '' or absent: not given"})
    transaction_date = LenientDate(metadata={"description": "alias of specified_date"})
    payment_reason = Text(allow_none=True, multiline=True, validate=text_length(TEXT_LIMIT))

    @post_load
    def merge_aliases(self, data: dict[str, Any], **_kwargs) -> dict[str, Any]:
        """One name per value: the current names win over the old ones."""
        for alias, name in (("type_id", "transaction_type_id"), ("description", "notes"),
                            ("transaction_date", "specified_date")):
            if alias in data:
                value = data.pop(alias)
                data.setdefault(name, value)
        if data.get("specified_date", ...) is None:
            del data["specified_date"]  # '' = not given (the column always holds a date)
        return data


class TransactionCreateSchema(_TransactionBody):
    """No specified_date: today in the business time zone."""

    city_id = Id(required=True, metadata={"description": "city of the cash book"})
    amount = Money(required=True, validate=non_zero,
                   metadata={"description": "signed: income positive, expense negative; number or string"})

    @validates_schema
    def type_given(self, data: dict[str, Any], **_kwargs) -> None:
        if "transaction_type_id" not in data and "type_id" not in data:
            raise ValidationError({"transaction_type_id": ["Обязательное поле"]})


class TransactionUpdateSchema(_TransactionBody):
    """Partial: only the keys sent are changed."""


class CashRef(Schema):
    id = fields.Integer()
    name = fields.String()


class TransactionSchema(Schema):
    id = fields.Integer()
    amount = fields.Float(metadata={"description": "income positive, expense negative"})
    city_id = fields.Integer()
    city = fields.Nested(CashRef)
    transaction_type_id = fields.Integer()
    transaction_type = fields.Nested(CashRef)
    type_id = fields.Integer(metadata={"description": "= transaction_type_id"})
    type = fields.Nested(CashRef, metadata={"description": "= transaction_type"})
    notes = fields.String(allow_none=True)
    description = fields.String(allow_none=True, metadata={"description": "= notes"})
    specified_date = fields.Date()
    payment_reason = fields.String(allow_none=True)
    request_id = fields.Integer(allow_none=True)
    file_path = fields.String(allow_none=True)
    expense_receipt_path = fields.String(allow_none=True)
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})
    created_by_id = fields.Integer(allow_none=True)


def _kind(value: str | None) -> None:
    if value is not None and value not in ("income", "expense"):
        raise ValidationError("Допустимо: income или expense")


class _DateRange(QuerySchema):
    labels = LABELS
    date_from = LenientDate(metadata={"description": "specified_date from (inclusive), YYYY-MM-DD"})
    date_to = LenientDate(metadata={"description": "specified_date to (inclusive), YYYY-MM-DD"})
    city_id = FilterId()

    @validates_schema
    def ordered(self, data: dict[str, Any], **_kwargs) -> None:
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError({"date_to": ["Дата окончания раньше даты начала"]})


class TransactionListArgs(_DateRange, ListArgs):
    transaction_type_id = FilterId()
    type_id = FilterId(metadata={"description": "alias of transaction_type_id"})
    kind = Text(allow_none=True, validate=_kind, metadata={"description": "income (amount > 0) or expense (< 0)"})
    request_id = FilterId()
    search = FilterText(metadata={"description": "part of notes or payment_reason"})


class BalanceArgs(_DateRange):
    pass


class MoneyTotals(Schema):
    income = fields.Float()
    expense = fields.Float(metadata={"description": "Σ of negative amounts, itself negative"})
    balance = fields.Float()
    count = fields.Integer()


class CityBalance(MoneyTotals):
    city_id = fields.Integer()
    city_name = fields.String()


class TypeBalance(MoneyTotals):
    transaction_type_id = fields.Integer()
    name = fields.String()


class BalanceSchema(Schema):
    date_from = fields.Date(allow_none=True)
    date_to = fields.Date(allow_none=True)
    total = fields.Nested(MoneyTotals)
    cities = fields.List(fields.Nested(CityBalance))
    types = fields.List(fields.Nested(TypeBalance))
