"""Flask extensions, created unbound here and initialised by the app factory."""
from __future__ import annotations

import json

import flask_smorest
from flask import Flask
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_smorest import Api
from webargs.flaskparser import FlaskParser

from api.guards import refuse_control_characters_in
from settings import settings


class LeadlineApi(Api):
    """flask-smorest Api whose HTTP errors use the product's error body (api/errors.py)."""

    def handle_http_exception(self, error):
        from api.errors import http_error_response

        return http_error_response(error)


class ArgumentsParser(FlaskParser):
    """webargs' parser, with JSON nested deeper than Python's parser can follow answered as the
    malformed body it is (400) instead of a RecursionError (500), and a control character in any
    string or key of a body or form a 422 naming the field before the schema sees it (api/guards.py;
    query parameters were checked before the view)."""

    BODY_LOCATIONS = ("json", "form", "json_or_form")

    def pre_load(self, location_data, *, schema, req, location):
        if location in self.BODY_LOCATIONS:
            refuse_control_characters_in(location_data, schema)
        return location_data

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            self._handle_invalid_json_error(json.JSONDecodeError("nested too deeply", "", 0), req)


class Blueprint(flask_smorest.Blueprint):
    """The blueprint every API module uses: a schema class given to `arguments` is instantiated once,
    here. Given the class, webargs would build a new schema (and deep-copy its fields) on every call."""

    ARGUMENTS_PARSER = ArgumentsParser()

    def arguments(self, schema, *args, **kwargs):
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)


jwt = JWTManager()


def init_extensions(app: Flask) -> None:
    # One Api per app: its OpenAPI document is built from the blueprints registered on that app.
    app.extensions["leadline_api"] = LeadlineApi(app)
    jwt.init_app(app)
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
