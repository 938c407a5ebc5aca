"""The HTTP API: a thin Flask app that validates, authorizes, reads/writes, enqueues and answers.

`flask --app api ...` finds `create_app` here.
"""
from __future__ import annotations

from typing import Any

from flask import Flask
from flask.sessions import SessionInterface

from api.guards import JSONProvider
from settings import settings


class App(Flask):
    """Flask, whose JSON provider answers JSON nested too deeply as a malformed body (400)."""

    json_provider_class = JSONProvider


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = App(__name__)
    register_config(app, config)
    register_logging(app)
    register_database(app)
    register_extensions(app)
    register_blueprints(app)
    register_errors(app)
    register_middleware(app)
    register_metrics(app)
    register_cli(app)
    return app


def register_config(app: Flask, config: dict[str, Any] | None) -> None:
    from datetime import timedelta

    from api.docs import docs_config

    app.config.update(
        SECRET_KEY=settings.SECRET_KEY or _development_secret(),
        MAX_CONTENT_LENGTH=settings.MAX_REQUEST_MB * 1024 * 1024,
        JSON_SORT_KEYS=False,
        # flask-smorest / OpenAPI
        API_TITLE="leadline",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        # Swagger UI and the OpenAPI document (api/docs.py): set below, after the overrides.
        API_DOCS_ENABLED=settings.api_docs_enabled,
        API_SPEC_OPTIONS={
            "servers": [{"url": "/"}],
            "info": {"description": "leadline back office API. Also mounted at /api/v1."},
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                    "cookie": {"type": "apiKey", "in": "cookie", "name": "access_token"},
                }
            },
        },
        # flask-jwt-extended: the SPA uses the cookie, other clients the bearer header.
        JWT_TOKEN_LOCATION=["headers", "cookies"],
        JWT_ACCESS_COOKIE_NAME="access_token",
        JWT_ACCESS_COOKIE_PATH="/",
        JWT_COOKIE_SECURE=settings.cookie_secure,
        JWT_COOKIE_SAMESITE=settings.COOKIE_SAMESITE,
        JWT_COOKIE_DOMAIN=settings.COOKIE_DOMAIN,
        # The SPA sends no CSRF header; unsafe cookie requests are checked by Origin instead.
        JWT_COOKIE_CSRF_PROTECT=False,
        JWT_SESSION_COOKIE=False,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.SESSION_IDLE_MINUTES),
        JWT_ERROR_MESSAGE_KEY="detail",
        # Rate limits (api/gate.py) are counted unless an app is built with RATELIMIT_ENABLED=False.
        RATELIMIT_ENABLED=True,
    )
    app.session_interface = NoFlaskSession()
    app.json.sort_keys = False  # keep "detail" first in error bodies, fields in schema order
    app.json.ensure_ascii = False  # Russian text as text, not \\u escapes
    if config:
        app.config.update(config)
    app.config.update(docs_config(app.config["API_DOCS_ENABLED"]))


class NoFlaskSession(SessionInterface):
    """The API keeps no Flask session (the signed-in session is the token, see api/security.py):
    no session cookie is read or signed on any call."""

    def open_session(self, app: Flask, request):
        return None  # Flask then uses its null session, which refuses writes

    def save_session(self, app: Flask, session, response) -> None:
        return None


def _development_secret() -> str:
    if settings.is_production:  # settings.load() already refuses this; belt and braces
        raise RuntimeError("SECRET_KEY is required in production")
    from api.devsecrets import development_secret

    return development_secret("SECRET_KEY")


def register_logging(app: Flask) -> None:
    from logconfig import configure_logging

    configure_logging()


def register_database(app: Flask) -> None:
    from models.core.db import Session, autocommit_reads, get_engine, remove_session

    get_engine()  # bind the session (tests and the CLI may have configured it already)

    from flask import request

    @app.before_request
    def reads_without_transaction() -> None:
        """A GET only reads: its statements run outside a transaction block (models/core/db.py), so it
        has no transaction to end, and no ROLLBACK drops the connection's prepared statements."""
        if request.method in ("GET", "HEAD"):
            autocommit_reads(Session())

    @app.teardown_appcontext
    def end_session(exc: BaseException | None) -> None:
        remove_session()


def register_extensions(app: Flask) -> None:
    from api.extensions import init_extensions

    init_extensions(app)


def register_blueprints(app: Flask) -> None:
    from api.auth.routes import blp as auth_blp
    from api.directories.routes import blp as directories_blp
    from api.health.routes import blp as health_blp
    from api.jobs.routes import blp as jobs_blp
    from api.reports.routes import blp as reports_blp
    from api.requests.routes import blp as requests_blp
    from api.transactions.routes import blp as transactions_blp
    from api.users.routes import blp as users_blp

    api = app.extensions["leadline_api"]
    for blp in (auth_blp, health_blp, jobs_blp, requests_blp, reports_blp, users_blp):
        api.register_blueprint(blp)
    for blp in (directories_blp, transactions_blp):
        api.register_blueprint(blp)
    from api.advertising.routes import blp as advertising_blp

    api.register_blueprint(advertising_blp)
    from api.files.routes import blp as files_blp

    api.register_blueprint(files_blp)
    from api.telephony.routes import blp as calls_blp
    from api.telephony.webhook import blp as mango_webhook_blp
    from api.telephony.webhook import warn_if_unsigned

    for blp in (mango_webhook_blp, calls_blp):
        api.register_blueprint(blp)
    warn_if_unsigned()
    from api.callbacks.routes import blp as callbacks_blp

    api.register_blueprint(callbacks_blp)
    from api.recordings.routes import blp as recordings_blp

    api.register_blueprint(recordings_blp)
    from api.alerts.routes import blp as alerts_blp
    from api.maintenance.routes import blp as maintenance_blp

    for blp in (alerts_blp, maintenance_blp):
        api.register_blueprint(blp)
    from api.telegram.routes import blp as telegram_blp

    api.register_blueprint(telegram_blp)
    from api.docs import init_docs

    init_docs(app)


def register_errors(app: Flask) -> None:
    from api.errors import init_error_handlers

    init_error_handlers(app)


def register_middleware(app: Flask) -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    from api.guards import init_guards
    from api.middleware import PathNormalizer, RequestContext, init_request_logging

    if settings.TRUSTED_PROXIES:
        n = settings.TRUSTED_PROXIES
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.wsgi_app = PathNormalizer(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = RequestContext(app.wsgi_app)  # type: ignore[method-assign]
    init_request_logging(app)
    init_guards(app)


def register_metrics(app: Flask) -> None:
    from api.metrics import init_metrics

    init_metrics(app)


def register_cli(app: Flask) -> None:
    from api.cli import init_cli

    init_cli(app)
