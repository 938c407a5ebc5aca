"""Logging: plain text in development, JSON in production. Never personal data nor secrets.

Every record carries `request_id`: the id of the HTTP request being served (api/middleware.py) or
of the request that enqueued the running task (tasks/signals.py), "-" outside both. The handler's
`RedactingFilter` masks phone-shaped numbers, the values of fields known to hold personal data
(`phone=`, `client_name`, `search=`...), token-like strings, the password of any URL and every
configured secret (`settings.mask`) in the final message, as a safety net behind the rule that log
calls pass ids, not personal data. Ids, statuses, timings, dates, sizes and request ids are kept
(tests/test_logging.py checks both directions on 10,000 lines).
"""
from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import IO
from urllib.parse import unquote_plus

from settings import settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

SECURITY_LOGGER = "leadline.security"
ACCESS_LOGGER = "leadline.access"

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"

# Phone-shaped, as people write numbers (10 to 15 digits in all, checked by `_phone_or_kept`):
# - compact: a Russian number (+7, 7 or 8 and ten digits; a mobile's ten digits 9xx...) or + and
#   10-15 digits. A bare run of other digits is an id, a size or a timestamp (ids are int4: ten
#   digits at most, starting with 1 or 2);
# - grouped: an optional + and a country or trunk code of 1-3 digits, an optional area code in
#   parentheses, then 2-5 groups of 2-7 digits, each after one space or dash ("8 999 7654321").
# Never the continuation of a word, a number, a decimal, a clock or a path segment (a number right
# after "/" is an id, whatever its length: phones travel in query strings and bodies, not in our
# paths), nor the value of an id (`city_id=...`); never followed by a word character, a decimal
# part, a clock's colon, a slash or a unit (bytes, MB, ms, s: a measure). So the access line
# "GET /api/requests/1234567 200 12.3ms" keeps its id, status and latency.
PHONE_RE = re.compile(
    r"(?:(?<=%2[Bb])|(?<![\w/.,:\-+])(?<!id=))"
    r"(?:\+?[78]\d{10}|9\d{9}|\+\d{10,15}"
    r"|(?:\+?\d{1,3}[ \-\u00a0]?)?\(\d{2,5}\)(?:[ \-\u00a0]\d{2,7}){1,4}"
    r"|\+?\d{1,3}(?:[ \-\u00a0]\d{2,7}){2,5})"
    r"(?![\w:/]|[.,]\d|\s?(?:bytes?|байт|[KMG]i?B|ms|s|sec)\b)"
)
# Values of the fields known to hold personal data, as `key=value`, `key: value` or JSON
# `"key": "value"`: masked whatever they look like.
PERSONAL_KEYS = ("phone", "phone_number", "client_phone", "client_phone_normalized", "from_phone", "to_phone",
                 "from_number", "to_number", "name", "full_name", "client_name", "login", "search", "address",
                 "passport", "email")
PERSONAL_PAIR_RE = re.compile(
    r"(?i)(?<![\w\-.])(" + "|".join(PERSONAL_KEYS) + r")(\"?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,\"'#]+)"
)
# Any other query-string value is masked when it holds a phone once decoded (%2B7..., 8%20999...).
QUERY_PAIR_RE = re.compile(r"(?<=[?&])([\w.\-\[\]]+=)([^&\s#\"']+)")
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


def _phone_or_kept(match: re.Match) -> str:
    digits = sum(ch.isdigit() for ch in match.group())
    return MASK if 10 <= digits <= 15 else match.group()


def contains_phone(text: str) -> bool:
    """Whether `text` holds a phone-shaped number (see PHONE_RE)."""
    return any(_phone_or_kept(match) == MASK for match in PHONE_RE.finditer(text))


def _personal_value(match: re.Match) -> str:
    value = match.group(3)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{match.group(2)}{quote}{MASK}{quote}"


def _query_value(match: re.Match) -> str:
    key, value = match.groups()
    if key.lower() == "id=" or key.lower().endswith("_id="):  # an id, whatever its length
        return match.group()
    return key + MASK if contains_phone(unquote_plus(value)) else match.group()


def redact(text: str) -> str:
    """Mask phone numbers, personal fields and secrets in one line of log text."""
    text = settings.mask(text)
    text = BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = JWT_RE.sub(MASK, text)
    text = SECRET_PAIR_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = LONG_TOKEN_RE.sub(MASK, text)
    text = PERSONAL_PAIR_RE.sub(_personal_value, text)
    text = QUERY_PAIR_RE.sub(_query_value, text)
    return PHONE_RE.sub(_phone_or_kept, text)


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
