"""Schemas of the small directories and the advertising campaigns (inputs build on api/schemas.py)."""
from __future__ import annotations

import functools

from marshmallow import Schema, fields

from api.fields import Phone, Text
from api.schemas import FilterBool, FilterId, FilterText, Id, ListArgs, NonBlankText, RussianSchema, text_length


class LookupSchema(Schema):
    id = fields.Integer()
    name = fields.String()


FLAG_FIELDS = {
    "is_income": ("Приход", "the direction of the type's operations: true income (amount > 0), "
                            "false expense (amount < 0)"),
}


def _flag_suffix(flags: tuple[str, ...]) -> str:
    return "".join(part.title() for flag in flags for part in flag.split("_"))


@functools.cache
def lookup_schema(flags: tuple[str, ...] = ()) -> type[Schema]:
    """{id, name} and the directory's flags."""
    if not flags:
        return LookupSchema
    attrs = {flag: fields.Boolean(metadata={"description": FLAG_FIELDS[flag][1]}) for flag in flags}
    return type(f"Lookup{_flag_suffix(flags)}Schema", (LookupSchema,), attrs)


@functools.cache
def lookup_body_schema(max_length: int, flags: tuple[str, ...] = ()) -> type[RussianSchema]:
    """{name}: trimmed, 1..max_length characters; the directory's flags (false when not sent on create)."""
    attrs = {
        "labels": {"name": "Название", **{flag: FLAG_FIELDS[flag][0] for flag in flags}},
        "name": Text(required=True, validate=text_length(
            max_length, min_length=1, error=f"Название должно содержать от 1 до {max_length} символов")),
        **{flag: fields.Boolean(metadata={"description": FLAG_FIELDS[flag][1]}) for flag in flags},
    }
    name = f"LookupBody{max_length}{_flag_suffix(flags)}"
    return type(name, (RussianSchema,), attrs)


# ---- advertising campaigns ------------------------------------------------------------------------

class CampaignCitySchema(Schema):
    id = fields.Integer()
    name = fields.String()


class CampaignSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    phone_number = fields.String(metadata={"description": "the tracking line as typed"})
    phone = fields.String(allow_none=True, metadata={"description": "normalised digits, 79123456789"})
    city_id = fields.Integer()
    city = fields.Nested(CampaignCitySchema)
    is_active = fields.Boolean()
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})


NAME_200 = text_length(200, min_length=1, error="Название должно содержать от 1 до 200 символов")
PHONE_40 = text_length(40, error="Номер не длиннее 40 символов")
_CAMPAIGN_LABELS = {"city_id": "Город", "name": "Название", "phone_number": "Номер телефона",
                    "is_active": "Активна"}


class CampaignCreateSchema(RussianSchema):
    labels = _CAMPAIGN_LABELS
    city_id = Id(required=True)
    name = Text(required=True, validate=NAME_200)
    phone_number = Phone(required=True, validate=PHONE_40)
    is_active = fields.Boolean(load_default=True)


class CampaignUpdateSchema(RussianSchema):
    labels = _CAMPAIGN_LABELS
    city_id = Id()
    name = NonBlankText(validate=NAME_200, blank_error="Название не может быть пустым")
    phone_number = Phone(validate=PHONE_40)
    is_active = fields.Boolean()


class CampaignListArgs(ListArgs):
    labels = {"city_id": "Город", "is_active": "Активна", "search": "Поиск"}
    city_id = FilterId(metadata={"description": "only this city"})
    is_active = FilterBool(metadata={"description": "true: active only, false: inactive only"})
    search = FilterText(metadata={"description": "part of the name or of the phone digits"})
