"""One error body for everything: {"detail": ..., "code": ..., "errors": {...}}.

`detail` is a sentence a person can read (Russian, as the SPA shows it); `code` is stable for
programs; `errors` maps fields to messages for validation failures.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from models.core.errors import RuleViolation
from tasks.queue import BrokerUnavailable

log = logging.getLogger(__name__)

DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Некорректный запрос"),
    401: ("unauthorized", "Требуется вход в систему"),
    403: ("forbidden", "Недостаточно прав"),
    404: ("not_found", "Не найдено"),
    405: ("method_not_allowed", "Метод не поддерживается"),
    409: ("conflict", "Конфликт данных"),
    413: ("payload_too_large", "Слишком большой запрос"),
    415: ("unsupported_media_type", "Неподдерживаемый тип содержимого"),
    422: ("validation_error", "Ошибка в данных запроса"),
    423: ("locked", "Учётная запись временно заблокирована"),
    429: ("rate_limited", "Слишком много запросов, повторите позже"),
    500: ("internal_error", "Внутренняя ошибка сервера"),
    503: ("unavailable", "Сервис временно недоступен"),
}


class ApiError(HTTPException):
    """Raise anywhere in a view: `raise ApiError(409, "Город используется", code="in_use")`."""

    def __init__(self, status: int, detail: str | None = None, *, code: str | None = None,
                 errors: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(description=detail)
        self.code = status
        self.error_code = code
        self.errors = errors
        self.extra_headers = headers or {}


def error_body(status: int, detail: str | None = None, code: str | None = None,
               errors: dict[str, Any] | None = None) -> dict[str, Any]:
    from settings import settings

    default_code, default_detail = DEFAULTS.get(status, ("error", "Ошибка"))
    body: dict[str, Any] = {"detail": settings.mask(detail or default_detail), "code": code or default_code}
    if errors:
        body["errors"] = errors
    return body


def error_response(status: int, detail: str | None = None, code: str | None = None,
                   errors: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
    response = jsonify(error_body(status, detail, code, errors))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten_messages(messages: Any) -> dict[str, Any]:
    """webargs nests messages by location ({"json": {"field": [...]}}); the body shows fields."""
    if not isinstance(messages, dict):
        return {"_schema": messages if isinstance(messages, list) else [str(messages)]}
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def _first_problem(errors: dict[str, Any]) -> str | None:
    """The SPA shows only `detail`: name the first problem in it."""
    for field, messages in errors.items():
        while isinstance(messages, dict) and messages:
            field, messages = next(iter(messages.items()))
        message = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(message, str):
            where = "" if field.startswith("_") else f" ({field})"
            return f"Ошибка в данных запроса: {message}{where}"
    return None


def http_error_response(error: HTTPException):
    status = error.code or 500
    if isinstance(error, ApiError):
        return error_response(status, error.description, error.error_code, error.errors, error.extra_headers)
    data = getattr(error, "data", None) or {}
    errors = None
    detail = None
    if status in (400, 422) and "messages" in data:
        errors = _flatten_messages(data["messages"])
        detail = _first_problem(errors)
        if status == 400:
            detail = "Некорректное тело запроса: ожидается JSON"
            errors = {"_body": ["Тело запроса должно быть корректным JSON"]}
    elif data.get("message"):
        detail = str(data["message"])
    headers = {}
    for name, value in (data.get("headers") or {}).items():
        headers[name] = value
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)
    if status == 413:
        from settings import settings

        detail = f"Слишком большой запрос (не более {settings.MAX_REQUEST_MB} МБ)"
    return error_response(status, detail, None, errors, headers)


def init_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException):
        return http_error_response(error)

    @app.errorhandler(RuleViolation)
    def handle_rule(error: RuleViolation):
        """A domain rule refused the change: nothing of it may be committed."""
        from models.core.db import Session

        Session.rollback()
        return error_response(error.status, error.detail, error.code, error.errors)

    @app.errorhandler(BrokerUnavailable)
    def handle_broker_down(error: BrokerUnavailable):
        """Work accepted with a job could not be queued (the job says so): the client may retry."""
        return error_response(503, "Очередь задач недоступна, повторите позже", "broker_unavailable")

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return http_error_response(error)
        from models.core.db import Session, database_unreachable

        try:
            Session.rollback()
        except Exception:  # noqa: BLE001 - the connection may be gone with the database
            Session.remove()
        from storage.backend import storage_unreachable

        if storage_unreachable(error):
            log.error("file storage unavailable: %s", type(error).__name__)
            return error_response(503, "Хранилище файлов недоступно, повторите позже", "storage_unavailable",
                                  headers={"Retry-After": "5"})
        if database_unreachable(error):  # not a bug in the request: the client may retry later
            log.error("database unavailable: %s", type(error).__name__)
            return error_response(503, "База данных недоступна, повторите позже", "database_unavailable",
                                  headers={"Retry-After": "5"})
        log.exception("unhandled error: %s", type(error).__name__)
        return error_response(500)

    @app.errorhandler(InternalServerError)
    def handle_500(error: InternalServerError):
        log.error("internal error: %s", getattr(error, "original_exception", error).__class__.__name__)
        return error_response(500)
