"""Input building blocks shared by the resources: a schema whose 422 names the fields in `detail`,
query-string schemas that ignore cache busters, list arguments, and lenient filter fields.

marshmallow's own messages are set in Russian once, in api/fields.py.
"""
from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from api.errors import ApiError
from api.fields import BlankIsNone, OptionalId, Text
from api.listing import MAX_PAGE_SIZE, PageArgs
from models.core.base import MAX_INT4
from models.people.passwords import password_problem


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


def good_password(value: str) -> None:
    """The password policy (models/people/passwords.py), its reason in Russian."""
    problem = password_problem(value)
    if problem:
        raise ValidationError(problem)


def password_field(**kwargs) -> fields.String:
    """A new password: write-only, held to the policy."""
    return fields.String(load_only=True, validate=good_password, **kwargs)


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
        if result is None or not 1 <= result <= MAX_INT4:
            raise self.make_error("range")
        return result


class FilterId(OptionalId):
    """A filter id from the query string: '' or 0 means "not set"."""

    def _deserialize(self, value, attr, data, **kwargs):
        result = super()._deserialize(value, attr, data, **kwargs)
        if result is not None and result > MAX_INT4:
            raise ValidationError("Некорректный идентификатор")
        return result


class FilterBool(BlankIsNone, fields.Boolean):
    """true/false/1/0 from the query string; '' means "not set"."""


class FilterText(Text):
    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        kwargs.setdefault("validate", text_length(200))
        super().__init__(**kwargs)
