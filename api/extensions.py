"""Flask extensions, created unbound here and initialised by the app factory."""
from __future__ import annotations

from flask import Flask
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_smorest import Api

from settings import settings


class LeadlineApi(Api):
    """flask-smorest Api whose HTTP errors use the product's error body (SPEC §3)."""

    def handle_http_exception(self, error):
        from api.errors import http_error_response

        return http_error_response(error)


jwt = JWTManager()


def _client_key() -> str:
    from api.security import client_ip

    return "ip:" + client_ip()


# Limits of single routes (sign-in attempts). The per-client and per-user limits of every call are
# counted by the gate (api/gate.py) in the same Redis round trip as the session check.
limiter = Limiter(key_func=_client_key, key_prefix="leadline-rl")


def init_extensions(app: Flask) -> None:
    from models.kv import redis_url

    # One Api per app: its OpenAPI document is built from the blueprints registered on that app.
    app.extensions["leadline_api"] = LeadlineApi(app)
    jwt.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url())
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})
    limiter.init_app(app)
    CORS(
        app,
        resources={r"/api/*": {"origins": settings.cors_origins}},
        supports_credentials=True,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-Requested-With", "X-Request-ID"],
        expose_headers=["X-Pagination", "X-Access-Token", "Retry-After", "X-Request-ID"],
        max_age=600,
    )
    from api import gate, security

    gate.init_gate(app)
    security.init_session_extension(app)
