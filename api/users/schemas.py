"""Bodies and query arguments of the people endpoints, shaped by what the SPA sends
(docs/spa-contract.md, bodies F-H), and the documented shapes of what they answer."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.fields import LenientDate, OptionalId, Phone, Text
from api.listing import PageArgs
from api.schemas import password_field
from models.core.base import MAX_INT4
from models.core.enums import ADMIN, AVITOLOG, CALLCENTR, DIRECTOR, MANAGER, USER_STATUSES

EMPLOYEE_ROLES = (DIRECTOR, MANAGER, CALLCENTR, AVITOLOG)
# `busy` is a master at work; `pending` is a new employee who may not sign in yet.
MASTER_STATUSES = ("active", "inactive", "busy", "suspended")
EMPLOYEE_STATUSES = ("active", "inactive", "pending", "suspended")
ADMIN_STATUSES = EMPLOYEE_STATUSES

MAX_NOTES = 5000


def too_long(limit: int) -> validate.Length:
    return validate.Length(max=limit, error=f"Не более {limit} символов")


def one_of(choices: tuple[str, ...]):
    """Like validate.OneOf, with a Russian message; None (an omitted optional value) passes."""

    def check(value):
        if value is not None and value not in choices:
            raise ValidationError("Допустимые значения: " + ", ".join(choices))

    return check


def valid_id(value):
    if value is not None and not 1 <= value <= MAX_INT4:
        raise ValidationError("Некорректный идентификатор")


class NonEmptyText(Text):
    """Text that must not be blank whenever it is sent (a name cannot be erased)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text:
            raise ValidationError("Поле не может быть пустым")
        return text


class Login(fields.String):
    default_error_messages = {"blank": "Укажите логин", "spaces": "Логин не может содержать пробелы"}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise self.make_error("blank")
        if any(ch.isspace() or not ch.isprintable() for ch in text):
            raise self.make_error("spaces")
        return text


class RussianSchema(Schema):
    """Field messages in Russian: the SPA shows them as they are."""

    error_messages = {"unknown": "Неизвестное поле", "type": "Ожидается объект JSON"}

    _INVALID = (
        (fields.Date, "Некорректная дата (ожидается ГГГГ-ММ-ДД)"),
        (fields.Integer, "Ожидается целое число"),
        (fields.String, "Ожидается строка"),
    )

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        messages = dict(field_obj.error_messages)
        messages["required"] = "Обязательное поле"
        messages["null"] = "Поле не может быть пустым"
        if str(messages.get("invalid", "")).startswith("Not a valid"):
            for kind, text in self._INVALID:
                if isinstance(field_obj, kind):
                    messages["invalid"] = text
                    break
        field_obj.error_messages = messages


# ---- masters ------------------------------------------------------------------------------------

class MasterWriteSchema(RussianSchema):
    """MasterViewPage's PUT: only the keys sent are changed."""

    city_id = OptionalId(validate=valid_id)
    full_name = NonEmptyText(validate=too_long(200))
    phone_number = Phone(validate=too_long(40))
    login = Login(validate=too_long(100))
    password = password_field()
    birth_date = LenientDate()
    passport = Text(allow_none=True, validate=too_long(40))
    chat_id = Text(allow_none=True, validate=too_long(100))
    notes = Text(allow_none=True, multiline=True, validate=too_long(MAX_NOTES))
    status = fields.String(validate=one_of(MASTER_STATUSES))

    @validates_schema
    def city_not_cleared(self, data, **kwargs):
        if "city_id" in data and data["city_id"] is None:
            raise ValidationError("Укажите город мастера", "city_id")


class MasterCreateSchema(MasterWriteSchema):
    """MasterCreatePage: optional fields arrive as ''."""

    city_id = OptionalId(required=True, validate=valid_id)
    full_name = NonEmptyText(required=True, validate=too_long(200))
    phone_number = Phone(required=True, validate=too_long(40))
    login = Login(required=True, validate=too_long(100))
    password = password_field(required=True)
    status = fields.String(load_default="active", validate=one_of(MASTER_STATUSES))


# ---- employees and administrators ----------------------------------------------------------------

class StaffWriteSchema(RussianSchema):
    """Fields shared by employees and administrators; `full_name` is accepted for `name`."""

    name = NonEmptyText(validate=too_long(200))
    full_name = NonEmptyText(validate=too_long(200))
    role_id = OptionalId(validate=valid_id)
    login = Login(validate=too_long(100))
    password = password_field()
    notes = Text(allow_none=True, multiline=True, validate=too_long(MAX_NOTES))
    mango_extension = Text(allow_none=True, validate=validate.Regexp(
        r"^\d{1,16}$", error="Добавочный номер Mango: от 1 до 16 цифр"),
        metadata={"description": "the employee's short number in Mango Office (click-to-call rings it); "
                                 "'' or null removes it"})

    @validates_schema
    def same_name(self, data, **kwargs):
        if "name" in data and "full_name" in data and data["name"] != data["full_name"]:
            raise ValidationError("Укажите имя один раз: name или full_name", "full_name")


class EmployeeWriteSchema(StaffWriteSchema):
    city_id = OptionalId(validate=valid_id, metadata={"description": "для директора пусто = все города"})
    phone_number = Phone(allow_none=True, validate=too_long(40))
    status = fields.String(validate=one_of(EMPLOYEE_STATUSES))

    @validates_schema
    def role_not_cleared(self, data, **kwargs):
        if "role_id" in data and data["role_id"] is None:
            raise ValidationError("Укажите роль сотрудника", "role_id")


class EmployeeCreateSchema(EmployeeWriteSchema):
    """EmployeeCreatePage."""

    role_id = OptionalId(required=True, validate=valid_id)
    login = Login(required=True, validate=too_long(100))
    password = password_field(required=True)
    status = fields.String(load_default="active", validate=one_of(EMPLOYEE_STATUSES))

    @validates_schema(skip_on_field_errors=False)
    def name_given(self, data, **kwargs):
        if "name" not in data and "full_name" not in data:
            raise ValidationError("Обязательное поле", "name")


class AdministratorWriteSchema(StaffWriteSchema):
    password = password_field()
    status = fields.String(validate=one_of(ADMIN_STATUSES))


class AdministratorCreateSchema(AdministratorWriteSchema):
    login = Login(required=True, validate=too_long(100))
    password = password_field(required=True)
    status = fields.String(load_default="active", validate=one_of(ADMIN_STATUSES))

    @validates_schema(skip_on_field_errors=False)
    def name_given(self, data, **kwargs):
        if "name" not in data and "full_name" not in data:
            raise ValidationError("Обязательное поле", "name")


# ---- list arguments -----------------------------------------------------------------------------

class UserListArgs(PageArgs):
    city_id = OptionalId(validate=valid_id)
    status = Text(validate=one_of(USER_STATUSES))
    search = Text(validate=too_long(200), metadata={"description": "name, login or phone digits"})


class EmployeeListArgs(UserListArgs):
    role_id = OptionalId(validate=valid_id)


# ---- answers (documentation of what the views write) ---------------------------------------------

class UserRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class MasterSchema(Schema):
    id = fields.Integer()
    full_name = fields.String()
    name = fields.String(metadata={"description": "= full_name"})
    phone_number = fields.String(metadata={"description": "as typed; '' when none"})
    login = fields.String()
    status = fields.String(metadata={"enum": list(MASTER_STATUSES)})
    city_id = fields.Integer(allow_none=True)
    city = fields.Nested(UserRefSchema, allow_none=True)
    birth_date = fields.Date(allow_none=True)
    passport = fields.String(allow_none=True)
    chat_id = fields.String(allow_none=True)
    notes = fields.String(allow_none=True)
    role = fields.String(metadata={"enum": ["master"]})
    role_id = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class EmployeeSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    full_name = fields.String()
    role_id = fields.Integer()
    role = fields.Nested(UserRefSchema)
    status = fields.String(metadata={"enum": list(EMPLOYEE_STATUSES)})
    city_id = fields.Integer(allow_none=True)
    city = fields.Nested(UserRefSchema, allow_none=True)
    login = fields.String()
    phone_number = fields.String()
    notes = fields.String(allow_none=True)
    mango_extension = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class AdministratorSchema(EmployeeSchema):
    role = fields.Nested(UserRefSchema, metadata={"description": f"always {ADMIN}"})
