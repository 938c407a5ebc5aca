"""Mango Office webhooks (the realtime notifications of its VPBX API): verify, store in the inbox, enqueue, answer 200.

Mango appends a sub-path to the one base address registered in its cabinet (`events/call`,
`events/summary`, `events/record/added`, `ping`, ...) and POSTs a form: `vpbx_api_key`, `sign`,
`json`. The receiver does no business work: it checks where the delivery comes from and that it is
Mango's, inserts it into `mango_events` (a repeated delivery hits the dedupe key and is ignored),
commits, makes sure a run of `telephony.fold_inbox` is queued and answers within milliseconds.

Answers:
- 404, nothing stored: the webhook is switched off (MANGO_ENABLED=false), on every address.
- 403, nothing stored: a source address outside MANGO_ALLOWED_IPS, a wrong `vpbx_api_key`, a
  signature that does not match (when MANGO_API_KEY and MANGO_API_SALT are set).
- 413: a body larger than MANGO_MAX_BODY_KB.
- 200 for everything else. A POST without `json` is Mango's "test connection" and stores nothing.
  A `json` that is not a JSON object is stored as `failed` with its reason and the raw body: it is
  signed by Mango, so it is kept for an administrator rather than lost; answering an error would
  only make a sender that retries send the same bytes again.
- 503 when the database cannot take the delivery (nothing was stored; the sender may retry).

Without MANGO_API_KEY and MANGO_API_SALT nothing is signed and anything posted is taken: production
refuses to start that way (settings.py), elsewhere the API warns once as it starts
(`warn_if_unsigned`, called by create_app).

When the broker is down the delivery is still stored and answered 200; it stays `pending` and the
sweeper queues it once the broker is back. Nothing personal (numbers) is logged.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from functools import lru_cache

import psycopg
from flask import request
from sqlalchemy.exc import DataError, DBAPIError
from werkzeug.exceptions import RequestEntityTooLarge

from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import json_response
from api.telephony.inbox import writer
from models.core.db import Session
from models.telephony import rules
from settings import settings
from tasks.queue import fold_inbox_soon

log = logging.getLogger(__name__)

blp = Blueprint("mango_webhook", __name__, url_prefix="/api", description="Mango Office webhooks")

EVENT_TYPE = re.compile(r"^[a-z0-9_\-]+(\.[a-z0-9_\-]+)*(/[a-z0-9_\-]+(\.[a-z0-9_\-]+)*)*$")
MAX_EVENT_TYPE = 50
FORM_DOC = {
    "required": True,
    "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object",
        "properties": {
            "vpbx_api_key": {"type": "string", "description": "the VPBX's product key"},
            "sign": {"type": "string", "description": "sha256(vpbx_api_key + json + salt), hex"},
            "json": {"type": "string", "description": "the event, a JSON object serialised as a string"},
        },
    }}},
}
ANSWERS = {
    200: {"description": "stored (or a repeated delivery, or a connection test)"},
    403: {"description": "source address, key or signature refused; nothing stored"},
    404: {"description": "the webhook is switched off (MANGO_ENABLED=false), or an unknown event type"},
    413: {"description": "body too large"},
    503: {"description": "the database is unavailable; nothing stored"},
}


# ---- checks ---------------------------------------------------------------------------------------

def check_enabled() -> None:
    if not settings.MANGO_ENABLED:
        raise ApiError(404, "Приём событий Mango Office отключён", code="not_found")


@lru_cache(maxsize=8)
def allowed_networks(entries: tuple[str, ...]) -> tuple:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            log.error("MANGO_ALLOWED_IPS: %r is not an address or a network; ignored", entry)
    return tuple(networks)


def check_source() -> None:
    """remote_addr is what the TRUSTED_PROXIES hops saw (ProxyFix); a client's X-Forwarded-For is never read."""
    entries = tuple(settings.MANGO_ALLOWED_IPS or ())
    if not entries:
        return
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        raise ApiError(403, "Адрес отправителя не разрешён", code="ip_forbidden") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if not any(address in network for network in allowed_networks(entries)):
        raise ApiError(403, "Адрес отправителя не разрешён", code="ip_forbidden")


def read_form():
    limit = settings.MANGO_MAX_BODY_KB * 1024
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"Слишком большой запрос (не более {settings.MANGO_MAX_BODY_KB} КБ)",
                       code="payload_too_large")
    request.max_content_length = limit  # also bounds a chunked body without Content-Length
    try:
        return request.form
    except RequestEntityTooLarge:
        raise ApiError(413, f"Слишком большой запрос (не более {settings.MANGO_MAX_BODY_KB} КБ)",
                       code="payload_too_large") from None


def signing_configured() -> bool:
    return bool(settings.MANGO_API_KEY and settings.MANGO_API_SALT)


def warn_if_unsigned() -> None:
    """Said once as the API starts (settings.py refuses this state in production)."""
    if settings.MANGO_ENABLED and not signing_configured():
        log.warning("Mango webhook accepts unsigned deliveries: MANGO_API_KEY and MANGO_API_SALT are not set "
                    "(set them, or MANGO_ENABLED=false to switch the webhook off)")


def check_key(sent_key: str | None) -> None:
    if sent_key is not None and signing_configured() and not hmac.compare_digest(
            sent_key.encode(), settings.MANGO_API_KEY.encode()):
        raise ApiError(403, "Неверный ключ ВАТС", code="mango_key_invalid")


def check_signature(sent_key: str | None, raw: str, sign: str | None) -> None:
    """sign = sha256(vpbx_api_key + json + vpbx_api_salt), over the json exactly as received."""
    if not signing_configured():
        return
    if sent_key is None or sign is None:
        raise ApiError(403, "Нет подписи запроса", code="mango_sign_missing")
    check_key(sent_key)
    expected = hashlib.sha256((settings.MANGO_API_KEY + raw + settings.MANGO_API_SALT).encode(
        "utf-8", "surrogatepass")).hexdigest()
    if not hmac.compare_digest(sign.strip().lower().encode(), expected.encode()):
        raise ApiError(403, "Неверная подпись запроса", code="mango_sign_invalid")


def clean_event_type(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip("/").lower()
    if not value or len(value) > MAX_EVENT_TYPE or not EVENT_TYPE.match(value):
        raise ApiError(404, "Неизвестный тип события", code="not_found")
    return value


# ---- the receiver ---------------------------------------------------------------------------------

def store(values: dict) -> int | None:
    """Insert and commit one delivery; None when its dedupe key is already there."""
    try:
        return writer.insert(values)
    except (DataError, psycopg.DataError):
        Session.rollback()
        raise
    except (DBAPIError, psycopg.Error) as exc:
        Session.rollback()
        log.error("mango delivery not stored: %s", type(exc).__name__)
        raise ApiError(503, "База данных недоступна, повторите позже", code="database_unavailable") from None


def receive(event_type: str | None):
    check_enabled()
    check_source()
    form = read_form()
    raw = form.get("json")
    sent_key, sign = form.get("vpbx_api_key"), form.get("sign")
    if raw is None or raw.strip() == "" or event_type == "ping":
        check_key(sent_key)
        return json_response({"ok": True})
    check_signature(sent_key, raw, sign)

    payload, error = None, None
    try:
        payload = rules.parse_payload(raw)
    except rules.PayloadError as exc:
        error = str(exc)
    if event_type is None:
        event_type = rules.guess_event_type(payload) if payload is not None else rules.UNKNOWN
    entry_id = rules.as_text(payload.get("entry_id"), 128) if payload is not None else None
    values = {
        "dedupe_key": rules.dedupe_key(event_type, payload, raw),
        "event_type": event_type,
        "entry_id": entry_id,
        "payload": raw if error is None else None,
        "status": "pending" if error is None else "failed",
        "raw_body": None if error is None else raw.replace("\x00", "\\u0000"),
        "last_error": error,
    }
    try:
        event_id = store(values)
    except (DataError, psycopg.DataError) as exc:
        # JSON that PostgreSQL cannot hold: kept like malformed JSON, as text, with the reason.
        error = f"Значение не сохраняется в базе: {type(getattr(exc, 'orig', None) or exc).__name__}"
        values.update(payload=None, status="failed", raw_body=raw.replace("\x00", "\\u0000"), last_error=error)
        event_id = store(values)
    if event_id is None:
        return json_response({"ok": True, "duplicate": True})
    if error is not None:
        log.warning("mango event %s (%s) stored as failed: malformed json", event_id, event_type)
        return json_response({"ok": True, "event_id": event_id, "status": "failed"})
    queued = fold_inbox_soon()
    return json_response({"ok": True, "event_id": event_id, "queued": queued})


@blp.route("/webhook/mango/events/<path:event_type>", methods=["POST"])
@blp.doc(requestBody=FORM_DOC, responses=ANSWERS, security=[])
def mango_event(event_type: str):
    """A Mango event: call, summary, recording, record/added, record/tagged, dtmf, sms, or any other."""
    return receive(clean_event_type(event_type))


@blp.route("/webhook/mango/ping", methods=["POST"])
@blp.doc(requestBody=FORM_DOC, responses=ANSWERS, security=[])
def mango_ping():
    """Mango's "test connection" button: 200 from an allowed address with the right key."""
    return receive("ping")


def legacy(rest: str | None = None):
    sub_path = rules.event_type_from_path(rest or "")
    return receive(clean_event_type(sub_path) if sub_path else None)


# The old backend's addresses, so a Mango cabinet configured for it keeps working unchanged:
# /api/webhook[/...] and /api/v1|v2/mango/webhook[/...] (/api/v1 is mapped to /api by the middleware).
for prefix, name in (("/webhook", "legacy_webhook"), ("/mango/webhook", "legacy_v1_webhook"),
                     ("/v2/mango/webhook", "legacy_v2_webhook")):
    blp.route(prefix, methods=["POST"], endpoint=name)(
        blp.doc(requestBody=FORM_DOC, responses=ANSWERS, security=[], summary="Mango webhook (old address)")(legacy))
    blp.route(prefix + "/<path:rest>", methods=["POST"], endpoint=name + "_path")(
        blp.doc(requestBody=FORM_DOC, responses=ANSWERS, security=[], summary="Mango webhook (old address)")(legacy))
