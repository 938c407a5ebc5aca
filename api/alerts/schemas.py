"""Schemas of the alerts API."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from api.fields import Text
from api.schemas import ListArgs, QuerySchema, RussianSchema, text_length
from models.core.enums import ALERT_STATUSES
from models.ops.alerts import RULES

MAX_SILENCE_MINUTES = 7 * 24 * 60


def known_rule(value: str | None) -> None:
    if value is not None and value not in RULES:
        raise ValidationError("Неизвестное правило")


class AlertListArgs(ListArgs, QuerySchema):
    labels = {"status": "Статус", "rule": "Правило"}

    status = fields.String(validate=validate.OneOf(ALERT_STATUSES, error="Статус: firing или resolved"))
    rule = fields.String(validate=known_rule)


class AlertSchema(Schema):
    id = fields.Integer()
    rule = fields.String()
    title = fields.String()
    severity = fields.String(metadata={"enum": ["info", "warning", "critical"]})
    status = fields.String(metadata={"enum": list(ALERT_STATUSES)})
    message = fields.String()
    value = fields.Float(allow_none=True)
    fired_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)
    last_notified_at = fields.DateTime(allow_none=True)
    acknowledged_at = fields.DateTime(allow_none=True)
    acknowledged_by_id = fields.Integer(allow_none=True)
    notifications = fields.List(fields.Dict(), metadata={"description": "each Telegram send: kind, at, ok, error"})


class SilenceBody(RussianSchema):
    labels = {"rule": "Правило", "minutes": "Длительность", "reason": "Причина"}

    rule = fields.String(required=True, validate=known_rule)
    minutes = fields.Integer(required=True, strict=False, validate=validate.Range(
        min=1, max=MAX_SILENCE_MINUTES, error=f"От 1 до {MAX_SILENCE_MINUTES} минут"))
    reason = Text(load_default=None, multiline=True, validate=text_length(500))


class SilenceSchema(Schema):
    rule = fields.String()
    title = fields.String()
    until = fields.DateTime()
    reason = fields.String(allow_none=True)
    created_by_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class RuleSchema(Schema):
    rule = fields.String()
    title = fields.String()
    severity = fields.String()
    enabled = fields.Boolean()
    firing = fields.Boolean()
    silenced_until = fields.DateTime(allow_none=True)
