"""Request bodies and query arguments, shaped by what the SPA really sends (docs/spa-contract.md)."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from api.fields import LenientDate, LocalDateTime, Money, OptionalId, Phone, Text
from models.core.enums import REQUEST_STATUSES

# The incoming-request pages send these English keys instead of the Russian statuses.
LEGACY_STATUS_KEYS = {
    "new": "Новая",
    "recall": "Перезвонить",
    "tno": "ТНО",
    "refused": "Отказ",
    "waiting": "Ожидает",
}
STATUS_ERROR = "Неизвестный статус заявки"


class StatusField(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        text = LEGACY_STATUS_KEYS.get(text, text)
        if text not in REQUEST_STATUSES:
            raise ValidationError(STATUS_ERROR)
        return text


class RequestWriteSchema(Schema):
    """Create and (partial) update. Unknown keys are an error, except the read-only ones the SPA
    may echo back (file paths, net_amount), which are ignored."""

    client_phone = Phone(validate=validate.Length(max=40))
    client_name = Text(validate=validate.Length(max=200), allow_none=True)
    city_id = OptionalId()
    request_type_id = OptionalId()
    direction_id = OptionalId()
    advertising_campaign_id = OptionalId()
    master_id = OptionalId()
    address = Text(multiline=True, validate=validate.Length(max=2000), allow_none=True)
    problem = Text(multiline=True, validate=validate.Length(max=5000), allow_none=True)
    meeting_date = LocalDateTime()
    status = StatusField()
    master_notes = Text(multiline=True, validate=validate.Length(max=5000), allow_none=True)
    # Entered amounts: 0 to MAX_REQUEST_AMOUNT, kopecks at most (models.requests.money.entered_amount).
    result = Money(allow_none=True)
    expenses = Money(allow_none=True)
    net_amount = fields.Raw(load_only=True, allow_none=True, metadata={"description": "ignored: always computed"})
    master_handover = Money(allow_none=True,
                            metadata={"description": "explicit handover; computed from MASTER_SHARE when absent"})
    ats_number = Text(validate=validate.Length(max=50), allow_none=True)
    call_center_name = Text(validate=validate.Length(max=200), allow_none=True)
    call_center_notes = Text(multiline=True, validate=validate.Length(max=5000), allow_none=True)
    avito_chat_id = Text(validate=validate.Length(max=100), allow_none=True)
    version = fields.Integer(validate=validate.Range(min=1), metadata={"description": "optimistic lock"})
    bso_file_path = fields.Raw(load_only=True, allow_none=True, metadata={"description": "ignored"})
    expense_file_path = fields.Raw(load_only=True, allow_none=True, metadata={"description": "ignored"})
    recording_file_path = fields.Raw(load_only=True, allow_none=True, metadata={"description": "ignored"})

    IGNORED = ("net_amount", "bso_file_path", "expense_file_path", "recording_file_path")

    @pre_load
    def reject_non_object(self, data, **kwargs):
        if not isinstance(data, dict):
            raise ValidationError("Ожидается объект JSON", "_schema")
        return data


class RequestCreateSchema(RequestWriteSchema):
    client_phone = Phone(required=True, validate=validate.Length(max=40))
    city_id = OptionalId(required=True)

    @validates_schema
    def city_required(self, data, **kwargs):
        if data.get("city_id") is None:
            raise ValidationError("Укажите город", "city_id")


class RequestUpdateSchema(RequestWriteSchema):
    @pre_load
    def blank_means_unchanged(self, data, **kwargs):
        """The incoming-request edit page sends '' and 0 for fields it never loaded: those keep the
        stored value instead of wiping it (a required field cannot be blanked anyway)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("client_phone", "client_name"):
            if data.get(name) == "":
                data.pop(name)
        for name in ("city_id", "request_type_id"):
            if data.get(name) in (0, "0", "", None):
                data.pop(name, None)
        return data


class RequestQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # cache-busting and other harmless extras

    status = fields.String(metadata={"description": "one status or a comma-separated list"})
    city_id = OptionalId()
    master_id = OptionalId()
    advertising_campaign_id = OptionalId()
    request_type_id = OptionalId()
    direction_id = OptionalId()
    date_from = LenientDate(metadata={"description": "created on or after (business-local day)"})
    date_to = LenientDate(metadata={"description": "created on or before (business-local day)"})
    meeting_from = LenientDate()
    meeting_to = LenientDate()
    search = fields.String(validate=validate.Length(max=100), metadata={"description": "phone digits, name, address"})
    sort = fields.String(metadata={"description": "created_at, updated_at, meeting_date, id, status, "
                                                  "spa (the work-order order); prefix - for descending"})
    page = fields.Integer(validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(validate=validate.Range(min=1, max=1000))

    @validates_schema
    def statuses_known(self, data, **kwargs):
        raw = data.get("status")
        if raw:
            unknown = [s for s in (part.strip() for part in raw.split(",")) if s and
                       LEGACY_STATUS_KEYS.get(s, s) not in REQUEST_STATUSES]
            if unknown:
                raise ValidationError(STATUS_ERROR, "status")


class HistoryEventSchema(Schema):
    id = fields.Integer()
    action = fields.String()
    field = fields.String(allow_none=True)
    old_value = fields.String(allow_none=True)
    new_value = fields.String(allow_none=True)
    user_id = fields.Integer(allow_none=True)
    user_name = fields.String(allow_none=True)
    source = fields.String()
    created_at = fields.DateTime()


class NamedSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class RequestOutSchema(Schema):
    """Documentation of the request as the API returns it (lists are serialised by hand, fast)."""

    id = fields.Integer()
    status = fields.String()
    client_phone = fields.String()
    client_phone_normalized = fields.String()
    client_name = fields.String()
    address = fields.String(allow_none=True)
    problem = fields.String(allow_none=True)
    meeting_date = fields.String(allow_none=True, metadata={"format": "date-time"})
    city_id = fields.Integer()
    request_type_id = fields.Integer()
    direction_id = fields.Integer(allow_none=True)
    advertising_campaign_id = fields.Integer(allow_none=True)
    master_id = fields.Integer(allow_none=True)
    master_notes = fields.String(allow_none=True)
    result = fields.Float(allow_none=True)
    expenses = fields.Float()
    net_amount = fields.Float()
    master_handover = fields.Float()
    ats_number = fields.String(allow_none=True)
    call_center_name = fields.String(allow_none=True)
    call_center_notes = fields.String(allow_none=True)
    avito_chat_id = fields.String(allow_none=True)
    version = fields.Integer()
    completed_at = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()
    city = fields.Nested(NamedSchema)
    request_type = fields.Nested(NamedSchema)
    direction = fields.Nested(NamedSchema, allow_none=True)
    master = fields.Dict(allow_none=True)
    advertising_campaign = fields.Dict(allow_none=True)
    bso_file_path = fields.String(allow_none=True, metadata={"description": "detail only"})
    expense_file_path = fields.String(allow_none=True, metadata={"description": "detail only"})
    recording_file_path = fields.String(allow_none=True, metadata={"description": "detail only"})
