"""What the calls and inbox endpoints read and answer."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import LenientDate, OptionalId
from api.schemas import FilterBool, ListArgs
from models.core.enums import CALL_DIRECTIONS, INBOX_STATUSES


class CallQuerySchema(ListArgs):
    date_from = LenientDate(metadata={"description": "started on or after (business-local day)"})
    date_to = LenientDate(metadata={"description": "started on or before (business-local day)"})
    direction = fields.String(validate=validate.OneOf(CALL_DIRECTIONS))
    missed = FilterBool()
    campaign_id = OptionalId()
    request_id = OptionalId()
    phone = fields.String(validate=validate.Length(max=40), metadata={"description": "client phone, any part"})


class LegSchema(Schema):
    call_id = fields.String()
    from_number = fields.String(allow_none=True)
    to_number = fields.String(allow_none=True)
    extension = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    seq = fields.Integer()
    started_at = fields.DateTime(allow_none=True)
    connected_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    disconnect_reason = fields.Integer(allow_none=True)


class CallRecordingSchema(Schema):
    id = fields.Integer()
    storage_path = fields.String()
    size_bytes = fields.Integer()
    mime_type = fields.String(allow_none=True)
    mango_recording_id = fields.String(allow_none=True)
    created_at = fields.DateTime()


class CallSchema(Schema):
    id = fields.Integer()
    entry_id = fields.String()
    direction = fields.String(metadata={"enum": list(CALL_DIRECTIONS)})
    line_number = fields.String(allow_none=True)
    campaign_id = fields.Integer(allow_none=True)
    campaign_name = fields.String(allow_none=True)
    city_id = fields.Integer(allow_none=True)
    client_phone = fields.String(allow_none=True)
    operator_extension = fields.String(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    answered_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)
    talk_seconds = fields.Integer(allow_none=True)
    disconnect_reason = fields.Integer(allow_none=True)
    result = fields.String(allow_none=True, metadata={"description": "answered, missed, no_answer, busy, ..."})
    missed = fields.Boolean(allow_none=True)
    summary_received = fields.Boolean()
    request_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class CallDetailSchema(CallSchema):
    legs = fields.List(fields.Nested(LegSchema))
    recordings = fields.List(fields.Nested(CallRecordingSchema))


class InboxQuerySchema(ListArgs):
    status = fields.String(load_default="failed", validate=validate.OneOf(INBOX_STATUSES))
    event_type = fields.String(validate=validate.Regexp(r"^[a-z0-9_./\-]{1,60}$", error="Неизвестный тип события"))


class InboxEventSchema(Schema):
    id = fields.Integer()
    event_type = fields.String()
    entry_id = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": list(INBOX_STATUSES)})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    received_at = fields.DateTime()
    processed_at = fields.DateTime(allow_none=True)
    payload = fields.Dict(allow_none=True)
    raw_body = fields.String(allow_none=True)


class ReplaySchema(Schema):
    id = fields.Integer()
    status = fields.String()
    queued = fields.Boolean()
