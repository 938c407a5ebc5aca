"""Input and output of the recordings resource."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.fields import LenientDate
from api.schemas import Id, ListArgs, RussianSchema
from models.core.enums import MATCH_STATUSES

MAX_DAYS_BACK = 365


class DownloadSchema(RussianSchema):
    labels = {"days_back": "Глубина поиска (дней)"}

    days_back = fields.Integer(
        load_default=1, strict=True,
        validate=validate.Range(min=1, max=MAX_DAYS_BACK, error="Число дней: от {min} до {max}"),
        metadata={"description": "how many days back to look in the mailbox (1 by default)"},
    )


class LinkSchema(RussianSchema):
    labels = {"request_id": "Заявка"}

    request_id = Id(required=True, metadata={"description": "the request to link the recording to"})


class RecordingQuerySchema(ListArgs):
    status = fields.String(validate=validate.OneOf(MATCH_STATUSES, error="Статус: matched, unmatched или ambiguous"),
                           metadata={"description": "match status"})
    source = fields.String(validate=validate.OneOf(("imap", "mango", "upload"),
                                                   error="Источник: imap, mango или upload"))
    phone = fields.String(validate=validate.Length(max=40), metadata={"description": "a number, any part"})
    date_from = LenientDate(metadata={"description": "call on or after (business-local day)"})
    date_to = LenientDate(metadata={"description": "call on or before (business-local day)"})


class RecordingSchema(Schema):
    id = fields.Integer()
    source = fields.String()
    original_name = fields.String(allow_none=True)
    file_path = fields.String(metadata={"description": "path for /api/secure-files/view|download once linked"})
    size_bytes = fields.Integer()
    mime_type = fields.String(allow_none=True)
    call_time = fields.DateTime(allow_none=True)
    from_phone = fields.String(allow_none=True)
    to_phone = fields.String(allow_none=True)
    message_id = fields.String(allow_none=True)
    match_status = fields.String(metadata={"enum": list(MATCH_STATUSES)})
    match_attempts = fields.Integer()
    matched_at = fields.DateTime(allow_none=True)
    request_id = fields.Integer(allow_none=True)
    call_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class RunSchema(Schema):
    job_id = fields.UUID()
    trigger = fields.String(metadata={"description": "beat or manual"})
    status = fields.String()
    days_back = fields.Integer(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    counts = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)


class StatusSchema(Schema):
    configured = fields.Boolean()
    mailbox = fields.String(allow_none=True)
    folder = fields.String()
    security = fields.String()
    running = fields.Boolean()
    interval_seconds = fields.Integer()
    last_run = fields.Nested(RunSchema, allow_none=True)
    last_error = fields.String(allow_none=True)
    last_checked_at = fields.DateTime(allow_none=True)
    next_run_at = fields.DateTime(allow_none=True)
    uidvalidity = fields.Integer(allow_none=True)
    last_uid = fields.Integer(allow_none=True)
    totals = fields.Dict(keys=fields.String(), values=fields.Integer())
