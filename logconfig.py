"""Logging: plain text in development, JSON in production. Never personal data nor secrets.

Every record carries `request_id`: the id of the HTTP request being served (api/middleware.py) or
of the request that enqueued the running task (tasks/signals.py), "-" outside both. The handler's
`RedactingFilter` masks phone-like digit runs, token-like strings, the password of any URL and every
configured secret (`settings.mask`) in the final message, as a safety net behind the rule that log
calls pass ids, not personal data.
"""
from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import IO

from settings import settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

SECURITY_LOGGER = "leadline.security"
ACCESS_LOGGER = "leadline.access"

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"

# Phone-like: 10 to 15 digits, optionally with +, spaces, dashes, dots or parentheses between them,
# not glued to other word characters (ids in a UUID, a longer number) nor to a clock time.
PHONE_RE = re.compile(r"(?<![\w.:\-])\+?\d(?:[\s\-().]{0,2}\d){9,14}(?![\w:\-])")
# Token-like: bearer credentials, JWTs, secret-looking key=value pairs, long random strings.
BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
SECRET_PAIR_RE = re.compile(
    r"(?i)\b([\w\-]*(?:password|passwd|secret|token|api_key|apikey|salt|sign|authorization|cookie)[\w\-]*)"
    r"(\"?\s*[:=]\s*\"?)([^\s\"',;&]+)"
)
# Random-looking: 32+ URL-safe characters mixing upper case, lower case and digits (generated
# tokens and keys). Hex digests, UUIDs and our own request ids (lower-case hex) are kept.
LONG_TOKEN_RE = re.compile(
    r"(?<![\w\-])(?=[\w\-]*\d)(?=[\w\-]*[a-z])(?=[\w\-]*[A-Z])[A-Za-z0-9_\-]{32,}(?![\w\-])"
)

MASK = "***"


def redact(text: str) -> str:
    """Mask phone numbers and secrets in one line of log text."""
    text = settings.mask(text)
    text = BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = JWT_RE.sub(MASK, text)
    text = SECRET_PAIR_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = LONG_TOKEN_RE.sub(MASK, text)
    return PHONE_RE.sub(MASK, text)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (a record another thread made keeps its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "request_id"}


class RedactingFilter(logging.Filter):
    """Renders the message once, masks it, and masks string extras and the exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string still gets logged, masked
            message = f"{record.msg} {record.args}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # the formatter uses the masked exc_text
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _RESERVED and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


def build_handler(stream: IO[str] | None = None, *, json_format: bool | None = None) -> logging.Handler:
    """The project's handler: formatter (JSON or text), request id and masking."""
    handler = logging.StreamHandler(stream or sys.stderr)
    use_json = settings.log_json if json_format is None else json_format
    if use_json:
        from pythonjsonlogger.json import JsonFormatter

        renamed = {"asctime": "time", "levelname": "level", "name": "logger"}
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields=renamed))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    return handler


_configured = False


def configure_logging() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(build_handler())
    root.setLevel(settings.LOG_LEVEL)
    for noisy in ("pgserver", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # gunicorn's access log would print query strings (which may carry phone numbers) and no
    # request id; leadline.access (api/middleware.py) replaces it.
    logging.getLogger("gunicorn.access").disabled = True
