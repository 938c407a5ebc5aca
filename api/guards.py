"""Input refused before it can hurt, and the headers every answer carries.

- A query parameter (name or value) with a control character (NUL and the other C0 characters but
  tab, line feed and carriage return; DEL) is a 422 before any view runs: PostgreSQL cannot store
  NUL, and a streamed list must not find out after its first byte.
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
from typing import Any

from flask import Flask, Response, request
from flask.json.provider import DefaultJSONProvider

from api.errors import ApiError
from settings import settings

CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
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
