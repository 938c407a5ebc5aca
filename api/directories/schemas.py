"""Schemas of the small directories and the advertising campaigns.

`RussianSchema` is the base of every input schema here and in the cash book: marshmallow's own
messages are English, the SPA shows `detail` to people, so field messages are translated and the
first problems are put into `detail` ("Сумма: Сумма должна быть числом").
"""
from __future__ import annotations

import functools
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from api.errors import ApiError
from api.fields import OptionalId, Phone, Text
from api.listing import MAX_PAGE_SIZE, PageArgs

MAX_DB_INT = 2_147_483_647

_MESSAGES = {
    "required": "Обязательное поле",
    "null": "Значение не может быть пустым",
    "validator_failed": "Недопустимое значение",
    "too_large": "Слишком большое число",
    "invalid_utf8": "Некорректная строка",
    "format": "Некорректный формат",
}


def _invalid_message(field: fields.Field) -> str:
    if isinstance(field, fields.Integer):
        return "Должно быть целым числом"
    if isinstance(field, fields.Number):
        return "Должно быть числом"
    if isinstance(field, fields.Boolean):
        return "Должно быть true или false"
    if isinstance(field, (fields.Date, fields.DateTime)):
        return "Некорректная дата, ожидается ГГГГ-ММ-ДД"
    if isinstance(field, fields.String):
        return "Должно быть строкой"
    return "Некорректное значение"


def _first_message(messages: Any) -> str:
    while isinstance(messages, (list, tuple)) and messages:
        messages = messages[0]
    if isinstance(messages, dict) and messages:
        return _first_message(next(iter(messages.values())))
    return str(messages)


class RussianSchema(Schema):
    """Input schema with Russian messages; a failure is a 422 whose `detail` names the fields."""

    # field name -> how a person calls it, for `detail`
    labels: dict[str, str] = {}

    error_messages = {"unknown": "Неизвестное поле", "type": "Ожидается JSON-объект"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            for key, message in list(field.error_messages.items()):
                if isinstance(message, str) and message.isascii():  # an untranslated default
                    field.error_messages[key] = (
                        _invalid_message(field) if key == "invalid" else _MESSAGES.get(key, "Некорректное значение")
                    )

    def handle_error(self, error: ValidationError, data: Any, *, many: bool, **kwargs) -> None:
        messages = error.normalized_messages()
        errors = {str(name): value if isinstance(value, list) else [_first_message(value)]
                  for name, value in messages.items()}
        parts = []
        for name, value in list(errors.items())[:3]:
            label = self.labels.get(name) or ("Запрос" if name == "_schema" else name)
            parts.append(f"{label}: {_first_message(value)}")
        detail = "Ошибка в данных запроса. " + "; ".join(parts)
        raise ApiError(422, detail, code="validation_error", errors=errors)


class QuerySchema(RussianSchema):
    """Query strings: parameters we do not know (cache busters and the like) are ignored."""

    class Meta:
        unknown = EXCLUDE


class ListArgs(QuerySchema, PageArgs):
    """No page/page_size: the complete array; otherwise one page and an X-Pagination header."""

    page = fields.Integer(validate=validate.Range(min=1, max=1_000_000, error="Номер страницы: от {min} до {max}"),
                          metadata={"description": "1-based page"})
    page_size = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE,
                                                       error="Размер страницы: от {min} до {max}"),
                               load_default=None,
                               metadata={"description": f"rows per page (default 100, at most {MAX_PAGE_SIZE})"})


def text_length(max_length: int, *, min_length: int = 0, error: str | None = None):
    """Length check that also copes with the None a blank optional Text field gives."""
    message = error or (f"От {min_length} до {max_length} символов" if min_length else
                        f"Не длиннее {max_length} символов")

    def check(value: str | None) -> None:
        if value is None:
            if min_length:
                raise ValidationError(message)
            return
        if not min_length <= len(value) <= max_length:
            raise ValidationError(message)

    return check


class NonBlankText(Text):
    """Text that may be left out of a partial update but, when sent, may not be blank."""

    def __init__(self, *, blank_error: str = "Значение не может быть пустым", **kwargs):
        super().__init__(**kwargs)
        self.blank_error = blank_error

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text:
            raise ValidationError(self.blank_error)
        return text


class Id(fields.Integer):
    """A row id that must be given: a positive integer (numeric strings too), never 0 or 1.5."""

    default_error_messages = {"invalid": "Некорректный идентификатор", "range": "Некорректный идентификатор"}

    def __init__(self, **kwargs):
        kwargs.setdefault("strict", False)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise self.make_error("invalid")
        if isinstance(value, str) and not value.strip().isdigit():
            raise self.make_error("invalid")
        result = super()._deserialize(value, attr, data, **kwargs)
        if result is None or not 1 <= result <= MAX_DB_INT:
            raise self.make_error("range")
        return result


class FilterId(OptionalId):
    """A filter id from the query string: '' or 0 means "not set"."""

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if result is not None and result > MAX_DB_INT:
            raise ValidationError("Некорректный идентификатор")
        return result


class FilterBool(fields.Boolean):
    """true/false/1/0 from the query string; '' means "not set"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "" or value is None:
            return None
        return super()._deserialize(value, attr, data, **kwargs)


class FilterText(Text):
    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("validate", text_length(200))
        super().__init__(**kwargs)


# ---- lookups ------------------------------------------------------------------------------------

class LookupSchema(Schema):
    id = fields.Integer()
    name = fields.String()


@functools.cache
def lookup_body_schema(max_length: int) -> type[RussianSchema]:
    """{name}: trimmed, 1..max_length characters."""

    class LookupBody(RussianSchema):
        labels = {"name": "Название"}
        name = Text(required=True, validate=text_length(
            max_length, min_length=1, error=f"Название должно содержать от 1 до {max_length} символов"))

    LookupBody.__name__ = f"LookupBody{max_length}"
    return LookupBody


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


__all__ = [
    "CampaignCreateSchema", "CampaignListArgs", "CampaignSchema", "CampaignUpdateSchema", "FilterBool",
    "FilterId", "FilterText", "Id", "ListArgs", "LookupSchema", "QuerySchema", "RussianSchema",
    "NonBlankText", "lookup_body_schema", "text_length",
]
