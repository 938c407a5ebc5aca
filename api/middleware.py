"""WSGI layers: path normalisation (the same API under /api and /api/v1, trailing slash or not), the
request id, the access log and the security log."""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import uuid

from werkzeug.wsgi import ClosingIterator

from logconfig import ACCESS_LOGGER, SECURITY_LOGGER, contains_phone, request_id_var

V1_PREFIX = "/api/v1"


class PathNormalizer:
    """Rewrites `/api/v1/x/` to `/api/x` before routing.

    Every route is declared once, without a trailing slash; the SPA's slash-terminated paths and
    the versioned mount reach it directly, with no redirect (a redirected POST would lose its body).
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == V1_PREFIX or path.startswith(V1_PREFIX + "/"):
            path = "/api" + path[len(V1_PREFIX):]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        environ["PATH_INFO"] = path
        return self.wsgi_app(environ, start_response)


# ---- request id, access log, request counts --------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{7,127}$")
QUIET_PATHS = ("/metrics", "/api/health")  # scrapes and probes: neither logged at INFO nor counted

access_log = logging.getLogger(ACCESS_LOGGER)
security_log = logging.getLogger(SECURITY_LOGGER)


def incoming_request_id(value: str | None) -> str | None:
    """A caller's X-Request-ID when it is a plain token (8-128 of [A-Za-z0-9._:-]) that does not
    look like a phone number; otherwise None and a new id is made."""
    if not value or not REQUEST_ID_RE.match(value) or contains_phone(value):
        return None
    return value


class RequestContext:
    """Outermost WSGI layer: the request id (taken or made, set for logs and returned in the
    response), one access log line (method, path without query string, status, time) and the
    request counts behind the 5xx-ratio alert."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        from api.metrics import http_counts

        request_id = incoming_request_id(environ.get("HTTP_X_REQUEST_ID")) or uuid.uuid4().hex
        environ["leadline.request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = [500]

        def start(status_line, headers, exc_info=None):
            status[0] = int(status_line[:3])
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status_line, headers, exc_info)

        def forget_request_id():
            try:
                request_id_var.reset(token)
            except ValueError:  # closed from another context (a test client's garbage collection)
                pass

        try:
            return ClosingIterator(self.wsgi_app(environ, start), forget_request_id)
        except BaseException:
            forget_request_id()
            raise
        finally:
            # Logged when the app returns: a streamed list's time is up to its first byte. The request
            # id stays set until the server closes the body, so lines logged while streaming carry it.
            path = environ.get("PATH_INFO", "")
            quiet = path.startswith(QUIET_PATHS)
            if not quiet:
                http_counts.add(status[0])
            access_log.log(
                logging.DEBUG if quiet else logging.INFO,
                "%s %s %s %.1fms", environ.get("REQUEST_METHOD"), path, status[0],
                (time.perf_counter() - started) * 1000,
            )


def init_request_logging(app) -> None:
    """Security log: sign-ins (success, failure, lockout) and refusals (401/403), with the user id
    when known; never the password, the token or the login typed (only a short hash of it)."""
    from flask import g, request

    def login_digest(typed: str) -> str:
        """Correlates attempts on one login without showing it (keyed: no dictionary lookup)."""
        secret = str(app.config["SECRET_KEY"]).encode()
        return hmac.new(secret, typed.strip().lower().encode(), hashlib.sha256).hexdigest()[:12]

    def json_object(data) -> dict:
        return data if isinstance(data, dict) else {}

    @app.after_request
    def security_events(response):
        try:
            log_security_event(response)
        except Exception as exc:  # noqa: BLE001 - logging must never change the answer
            security_log.error("security event not logged: %s", type(exc).__name__)
        return response

    def log_security_event(response) -> None:
        status = response.status_code
        if request.endpoint == "auth.Login":
            body = json_object(response.get_json(silent=True))
            typed = json_object(request.get_json(silent=True)).get("login")
            login_hash = login_digest(str(typed)) if typed else None
            if status == 200:
                security_log.info("login succeeded", extra={"event": "login_succeeded", "user_id": body.get("user_id")})
            elif status == 423:
                security_log.warning("login refused: locked", extra={"event": "login_locked", "login_hash": login_hash})
            elif status in (401, 403):
                security_log.warning("login failed", extra={
                    "event": "login_failed", "login_hash": login_hash, "code": body.get("code"), "status": status,
                })
        elif status in (401, 403):
            body = json_object(response.get_json(silent=True))
            user = g.get("current_user")
            security_log.warning("access denied: %s %s %s", request.method, request.url_rule or request.path, status,
                                 extra={"event": "access_denied", "status": status, "code": body.get("code"),
                                        "user_id": getattr(user, "id", None)})
