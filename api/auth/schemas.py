from __future__ import annotations

from marshmallow import Schema, fields, validate

from api.schemas import RussianSchema, password_field


class LoginSchema(Schema):
    login = fields.String(required=True, validate=validate.Length(min=1, max=100))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))


class PasswordChangeSchema(RussianSchema):
    """The signed-in user's own new password; the current one proves it is them."""

    labels = {"current_password": "текущий пароль", "new_password": "новый пароль"}  # nosec B105 - field labels

    current_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=256))
    new_password = password_field(required=True)


class LoginResultSchema(Schema):
    user_id = fields.Integer()
    user_type = fields.String()
    role = fields.String()
    city_id = fields.Integer(allow_none=True)
    access_token = fields.String()
    token_type = fields.String()


class MeSchema(Schema):
    id = fields.Integer()
    login = fields.String()
    name = fields.String()
    full_name = fields.String()
    status = fields.String()
    user_type = fields.String()
    role = fields.String()
    city_id = fields.Integer(allow_none=True)


class MessageSchema(Schema):
    message = fields.String()
