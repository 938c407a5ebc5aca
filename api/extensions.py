"""Flask extensions, created unbound here and initialised by the app factory."""
from __future__ import annotations

from flask import Flask
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_limiter import Limit, Limiter
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


def _user_key() -> str:
    from api.security import optional_user_id

    user_id = optional_user_id()
    return f"user:{user_id}" if user_id else "anonymous"


def _is_anonymous() -> bool:
    return _user_key() == "anonymous"


limiter = Limiter(
    key_func=_client_key,
    default_limits=[
        Limit(settings.RATE_LIMIT_PER_CLIENT, key_function=_client_key),
        Limit(settings.RATE_LIMIT_PER_USER, key_function=_user_key, exempt_when=_is_anonymous),
    ],
    key_prefix="leadline-rl",
)


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
    from api import security

    security.init_jwt_callbacks(jwt)
    security.init_session_extension(app)
