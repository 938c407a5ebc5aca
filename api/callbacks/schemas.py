"""What the callback queue and click-to-call endpoints read and answer."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.fields import Phone
from api.schemas import FilterBool, FilterId, Id, ListArgs, RussianSchema
from models.callbacks.tables import CALLBACK_STATUSES, MANUAL_OUTCOMES, OUTCOMES


class CallbackQuerySchema(ListArgs):
    status = fields.String(validate=validate.OneOf(CALLBACK_STATUSES, error="Допустимые значения: open, done, expired"),
                           metadata={"description": "open (default: every status), done, expired"})
    city_id = FilterId()
    campaign_id = FilterId()
    overdue = FilterBool(metadata={"description": "true: open and past due; false: the others"})


class CloseSchema(RussianSchema):
    labels = {"outcome": "Результат", "request_id": "Заявка"}

    outcome = fields.String(required=True, validate=validate.OneOf(
        MANUAL_OUTCOMES, error="Допустимые значения: " + ", ".join(MANUAL_OUTCOMES)))
    request_id = Id(allow_none=True, metadata={"description": "the request the callback led to"})


class PlaceCallSchema(RussianSchema):
    """Exactly one of the three: whom to call."""

    labels = {"phone": "Телефон", "request_id": "Заявка", "callback_id": "Перезвон"}

    phone = Phone(validate=validate.Length(max=40))
    request_id = Id()
    callback_id = Id()

    @validates_schema
    def exactly_one(self, data, **kwargs):
        given = [name for name in ("phone", "request_id", "callback_id") if data.get(name) is not None]
        if len(given) != 1:
            raise ValidationError("Укажите ровно одно: phone, request_id или callback_id", "_schema")


class PreviousRequestSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    created_at = fields.DateTime()


class CallbackSchema(Schema):
    id = fields.Integer()
    phone = fields.String()
    status = fields.String(metadata={"enum": list(CALLBACK_STATUSES)})
    overdue = fields.Boolean()
    city_id = fields.Integer(allow_none=True)
    city_name = fields.String(allow_none=True)
    campaign_id = fields.Integer(allow_none=True)
    campaign_name = fields.String(allow_none=True)
    line_number = fields.String(allow_none=True)
    missed_calls = fields.Integer()
    first_missed_at = fields.DateTime()
    last_missed_at = fields.DateTime()
    due_at = fields.DateTime()
    claimed_by_id = fields.Integer(allow_none=True)
    claimed_by_name = fields.String(allow_none=True)
    claimed_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    closed_by_id = fields.Integer(allow_none=True)
    outcome = fields.String(allow_none=True, metadata={"enum": list(OUTCOMES)})
    request_id = fields.Integer(allow_none=True)
    closing_call_id = fields.Integer(allow_none=True)
    previous_requests = fields.List(fields.Nested(PreviousRequestSchema),
                                    metadata={"description": "the caller's requests, newest first (at most 10)"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
