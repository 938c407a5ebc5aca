"""Input refused before it can hurt, and the headers every answer carries.

- A query parameter (name or value) with a control character (NUL and the other C0 characters but
  tab, line feed and carriage return; DEL; C1) is a 422 before any view runs: PostgreSQL cannot store
  NUL, and a streamed list must not find out after its first byte.
- The same for every string (and every key) of a request body or form, wherever it is nested: the
  argument parser of every endpoint (api/extensions.ArgumentsParser) calls
  `refuse_control_characters_in` before the schema loads anything; uploads call it for their form
  fields. Only a multi-line field (metadata `x-multiline`, e.g. `Text(multiline=True)`: notes,
  comments, descriptions) may hold tab, line feed and carriage return. Lone surrogates (which cannot
  be encoded) are refused everywhere.
- A JSON body larger than MAX_JSON_MB is a 413 before it is parsed (uploads are multipart and keep
  their own caps); JSON nested deeper than the parser can follow is a 400, not a RecursionError.
- Every answer says `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`, and is
  not stored by caches (`Cache-Control: no-store`) unless it set its own policy (served files do).
  A JSON answer also says `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`: a
  browser that opens one loads nothing for it and frames it nowhere. Served files (images, PDFs
  viewed in the browser) get no policy that could stop the browser from showing them; the docs page
  sets its own (api/docs.py).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import Schema, fields

from api.errors import ApiError
from api.fields import MULTILINE
from settings import settings

# C0 but tab, line feed and carriage return; DEL; C1; lone surrogates.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# A single-line field refuses tab, line feed and carriage return too.
SINGLE_LINE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
REFUSED_CHARACTER = "Недопустимый символ в тексте"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
JSON_ANSWER_POLICY = "default-src 'none'; frame-ancestors 'none'"


class JSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            # Flask answers a ValueError from here as a malformed body (400).
            raise ValueError("JSON nested too deeply") from None


def refuse_control_characters() -> None:
    for name, value in request.args.items(multi=True):
        if CONTROL_CHARACTERS.search(name) or CONTROL_CHARACTERS.search(value):
            field = CONTROL_CHARACTERS.sub("?", name)
            message = "Недопустимый символ в параметре запроса"
            raise ApiError(422, f"{message} ({field})", code="validation_error", errors={field: [message]})


def _members(schema: Schema) -> dict[str, fields.Field]:
    return {field.data_key or name: field for name, field in schema.load_fields.items()}


def find_control_character(data: Any, schema: Schema | None = None) -> tuple[tuple[Any, ...], str] | None:
    """(path, character) of the first refused character in `data` (a parsed body or form), keys
    included, or None. `schema` tells which strings are multi-line; without one, none is.
    Iterative: a body nested as deep as the JSON parser allows is walked without recursion."""
    stack: list[tuple[Any, tuple[Any, ...], Schema | fields.Field | None]] = [(data, (), schema)]
    while stack:
        value, path, where = stack.pop()
        if isinstance(value, str):
            multiline = isinstance(where, fields.Field) and where.metadata.get(MULTILINE)
            found = (CONTROL_CHARACTERS if multiline else SINGLE_LINE_REFUSED).search(value)
            if found:
                return path, found.group()
        elif isinstance(value, Mapping):
            if isinstance(where, fields.Nested) and isinstance(where.schema, Schema):
                where = where.schema
            members = _members(where) if isinstance(where, Schema) else {}
            inner = where.value_field if isinstance(where, fields.Dict) else None
            for key in value:
                if isinstance(key, str) and (found := SINGLE_LINE_REFUSED.search(key)):
                    return path + (key,), found.group()
                stack.append((value[key], path + (key,), members.get(key) if members else inner))
        elif isinstance(value, (list, tuple)):
            item = where.inner if isinstance(where, fields.List) else where
            stack.extend((element, path + (index,), item) for index, element in reversed(list(enumerate(value))))
    return None


def _describe(character: str) -> str:
    if character == "\x00":
        return "нулевой байт (NUL)"
    if character in "\t\n\r":
        return "перенос строки или табуляция в однострочном поле"
    if "\ud800" <= character <= "\udfff":
        return "непарный суррогат UTF-16"
    return f"управляющий символ U+{ord(character):04X}"


def refuse_control_characters_in(data: Any, schema: Schema | None = None) -> None:
    """A 422 naming the field when a string or key of `data` holds a refused character."""
    found = find_control_character(data, schema)
    if found is None:
        return
    path, character = found
    name = ".".join(SINGLE_LINE_REFUSED.sub("?", str(part)) for part in path) or "_body"
    labels = getattr(schema, "labels", None) or {}
    label = labels.get(path[0], name) if len(path) == 1 else name
    raise ApiError(422, f"Ошибка в данных запроса. {label}: недопустимый символ — {_describe(character)}",
                   code="validation_error", errors={name: [REFUSED_CHARACTER]})


def refuse_large_json() -> None:
    limit = settings.MAX_JSON_MB * 1024 * 1024
    if request.mimetype and request.mimetype.endswith("json") and (request.content_length or 0) > limit:
        raise ApiError(413, f"Слишком большое тело запроса (не более {settings.MAX_JSON_MB} МБ)",
                       code="payload_too_large")


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    if response.is_json:
        response.headers.setdefault("Content-Security-Policy", JSON_ANSWER_POLICY)
    return response


def init_guards(app: Flask) -> None:
    """The request and answer hooks (the JSON provider is the app class's: api.App)."""
    app.before_request(refuse_control_characters)
    app.before_request(refuse_large_json)
    app.after_request(add_security_headers)
