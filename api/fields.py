"""Marshmallow fields for what the SPA really sends (spa-contract.md §2.2):
ids as 0 meaning "none", amounts as strings, '' for "no date", local datetimes without a zone."""
from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from marshmallow import ValidationError, fields

from models.money import to_money
from models.phones import normalize_phone
from models.timez import as_aware, to_local

MAX_AMOUNT = Decimal("9999999999.99")


class OptionalId(fields.Integer):
    """A reference id; 0, '' and null all mean "not chosen"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("strict", False)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value in (0, "0", "", None):
            return None
        result = super()._deserialize(value, attr, data, **kwargs)
        if result == 0:
            return None  # "-0", " 0", 0.0: still "not chosen"
        if result is not None and not 0 < result <= 2_147_483_647:
            raise ValidationError("Идентификатор должен быть положительным числом")
        return result


class Money(fields.Field):
    """Amounts: JSON numbers or numeric strings ("-1500", "2 500,50") in, JSON numbers out."""

    default_error_messages = {"invalid": "Сумма должна быть числом", "range": "Сумма слишком велика"}

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
        return to_money(amount)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else float(value)


class LenientDate(fields.Date):
    """A date; '' means none."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "" or value is None:
            return None
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
    """A phone number as typed; validated to have digits. Normalise with models.phones."""

    default_error_messages = {"phone": "Некорректный номер телефона"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        digits = normalize_phone(text)
        if digits is None or not 5 <= len(digits) <= 15:
            raise self.make_error("phone")
        return text


class Text(fields.String):
    """Free text: trimmed; '' becomes None unless required."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        text = text.strip()
        if "\x00" in text:
            raise ValidationError("Недопустимый символ в тексте")
        if text == "" and not self.required:
            return None
        return text

    def _validate(self, value):
        if value is not None:  # '' turned into None: nothing left to validate
            super()._validate(value)
