"""Marshmallow fields for what the SPA really sends (docs/spa-contract.md):
ids as 0 meaning "none", amounts as strings, '' for "no date", local datetimes without a zone."""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from marshmallow import ValidationError, fields

from models.core.base import MAX_INT4
from models.core.business_time import as_aware, to_local
from models.core.phones import normalize_phone
from models.requests.money import to_money

MAX_AMOUNT = Decimal("9999999999.99")
# Control characters (NUL among them) and lone surrogates never reach these fields: the argument
# parser of every endpoint refuses them first (api/guards.refuse_control_characters_in).
# Field metadata, shown in the OpenAPI document: a text that may hold tab, line feed, carriage return.
MULTILINE = "x-multiline"


def _russian_messages() -> None:
    """marshmallow's built-in messages, in the language the SPA shows."""
    fields.Field.default_error_messages.update({
        "required": "Обязательное поле",
        "null": "Поле не может быть пустым",
        "validator_failed": "Недопустимое значение",
    })
    for field, messages in (
        (fields.String, {"invalid": "Ожидается строка", "invalid_utf8": "Некорректная строка"}),
        (fields.Number, {"invalid": "Ожидается число", "too_large": "Слишком большое число"}),
        (fields.Integer, {"invalid": "Ожидается целое число"}),
        (fields.Boolean, {"invalid": "Ожидается логическое значение"}),
        (fields.Date, {"invalid": "Некорректная дата", "format": "Некорректная дата"}),
        (fields.DateTime, {"invalid": "Некорректные дата и время", "format": "Некорректные дата и время"}),
        (fields.List, {"invalid": "Ожидается список"}),
        (fields.Dict, {"invalid": "Ожидается объект"}),
        (fields.Nested, {"type": "Ожидается объект"}),
        (fields.UUID, {"invalid_uuid": "Некорректный идентификатор"}),
    ):
        field.default_error_messages = {**field.default_error_messages, **messages}
    from marshmallow import Schema, validate

    Schema._default_error_messages = {"type": "Ожидается объект JSON", "unknown": "Неизвестное поле"}
    # Range builds its messages in two steps: {min_op} first, then {min}/{max}.
    validate.Range.message_min = "Должно быть {min_op} {{min}}"
    validate.Range.message_max = "Должно быть {max_op} {{max}}"
    validate.Range.message_all = "Должно быть {min_op} {{min}} и {max_op} {{max}}"
    validate.Range.message_gte = "не меньше"
    validate.Range.message_gt = "больше"
    validate.Range.message_lte = "не больше"
    validate.Range.message_lt = "меньше"
    validate.Length.message_min = "Не короче {min} символов"
    validate.Length.message_max = "Не длиннее {max} символов"
    validate.Length.message_all = "Длина от {min} до {max} символов"
    validate.Length.message_equal = "Длина должна быть {equal}"
    validate.OneOf.default_message = "Допустимые значения: {choices}"


_russian_messages()


class OptionalId(fields.Integer):
    """A reference id; 0, '' and null all mean "not chosen"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("strict", False)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value in (0, "0", "", None):
            return None
        if isinstance(value, float) and not value.is_integer():
            raise self.make_error("invalid")
        result = super()._deserialize(value, attr, data, **kwargs)
        if result == 0:
            return None  # "-0", " 0", 0.0: still "not chosen"
        if result is not None and not 0 < result <= MAX_INT4:
            raise ValidationError("Идентификатор должен быть положительным числом")
        return result

    def _validate(self, value):
        if value is not None:  # 0 and '' became None: "not chosen" needs no further check
            super()._validate(value)


class Money(fields.Field):
    """Amounts: JSON numbers or numeric strings ("-1500", "2 500,50") in, JSON numbers out. Kopecks at
    most: a third decimal place is refused, never rounded away."""

    default_error_messages = {"invalid": "Сумма должна быть числом", "range": "Сумма слишком велика",
                              "places": "Не более двух знаков после запятой"}

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault("type", "number")
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or value == "":
            if self.allow_none:
                return None
            raise self.make_error("invalid")
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str):
            value = re.sub(r"[\s\u00a0]", "", value).replace(",", ".")
        try:
            amount = Decimal(str(value))
        except (InvalidOperation, ValueError):
            raise self.make_error("invalid")
        if not amount.is_finite():
            raise self.make_error("invalid")
        if abs(amount) > MAX_AMOUNT:
            raise self.make_error("range")
        if amount != to_money(amount):
            raise self.make_error("places")
        return to_money(amount)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else float(value)


class BlankIsNone:
    """Mixin for a field where '' (an untouched form input or query parameter) means "not set"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "" or value is None:
            return None
        return super()._deserialize(value, attr, data, **kwargs)


class LenientDate(BlankIsNone, fields.Date):
    """A date; '' means none."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and "T" in value:
            value = value.split("T", 1)[0]
        result = super()._deserialize(value, attr, data, **kwargs)
        if result is not None and not date(1900, 1, 1) <= result <= date(2100, 12, 31):
            raise ValidationError("Дата вне допустимого диапазона")
        return result


class LocalDateTime(fields.Field):
    """A moment; '' means none. Without a zone ("2025-07-21T14:30") it is business-local time.

    Sent back as business-local time with its offset: the SPA's detail page reads the first 19
    characters as wall-clock time and the list pages honour the offset, so both show the same
    time and a save does not move it.
    """

    default_error_messages = {"invalid": "Некорректная дата и время"}

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("metadata", {}).update(type="string", format="date-time")
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.make_error("invalid")
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise self.make_error("invalid")
        if not 1900 <= parsed.year <= 2100:
            raise self.make_error("invalid")
        return as_aware(parsed)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else to_local(value).isoformat()


class Phone(fields.String):
    """A phone number as typed; validated to have digits. Normalise with models.core.phones."""

    default_error_messages = {"phone": "Некорректный номер телефона"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        digits = normalize_phone(text)
        if digits is None or not 5 <= len(digits) <= 15:
            raise self.make_error("phone")
        return text


class Text(fields.String):
    """Free text: trimmed; '' becomes None unless required. `multiline=True` for notes, comments and
    descriptions: they may hold line breaks and tabs, every other text is one line."""

    def __init__(self, *, multiline: bool = False, **kwargs):
        if multiline:
            kwargs["metadata"] = {**kwargs.get("metadata", {}), MULTILINE: True}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        text = text.strip()
        if text == "" and not self.required:
            return None
        return text

    def _validate(self, value):
        if value is not None:  # '' turned into None: nothing left to validate
            super()._validate(value)
