"""Schemas of campaign spend (the period and amount rules are in models/advertising/rules.py)."""
from __future__ import annotations

from marshmallow import Schema, fields

from api.fields import LenientDate, Money, Text
from api.schemas import RussianSchema, text_length

_LABELS = {"month": "Месяц", "date_from": "Начало периода", "date_to": "Конец периода", "amount": "Сумма",
           "comment": "Комментарий"}
_DATE_ERROR = {"invalid": "Дата должна быть в формате ГГГГ-ММ-ДД"}


class SpendSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    date_from = fields.Date(metadata={"description": "first day of the period, inclusive"})
    date_to = fields.Date(metadata={"description": "last day of the period, inclusive"})
    month = fields.String(allow_none=True, metadata={"description": "YYYY-MM when the period is one calendar month"})
    days = fields.Integer(metadata={"description": "days in the period"})
    amount = Money(metadata={"description": "spent over the period, roubles, two decimals"})
    comment = fields.String(allow_none=True)
    created_by_id = fields.Integer(allow_none=True)
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})


class SpendCreateSchema(RussianSchema):
    """A month ("2026-03") or a range (date_from, date_to), and the amount."""

    labels = _LABELS
    month = fields.String(allow_none=True, metadata={"description": "YYYY-MM: the whole calendar month",
                                                     "example": "2026-03"})
    date_from = LenientDate(error_messages=_DATE_ERROR, metadata={"description": "YYYY-MM-DD, with date_to"})
    date_to = LenientDate(error_messages=_DATE_ERROR, metadata={"description": "YYYY-MM-DD, inclusive"})
    amount = Money(required=True, metadata={"description": "non-negative, at most two decimals"})
    comment = Text(allow_none=True, multiline=True, validate=text_length(1000))


class SpendUpdateSchema(SpendCreateSchema):
    """Only the fields sent change; a month replaces the period, one date moves one end."""

    amount = Money(metadata={"description": "non-negative, at most two decimals"})
