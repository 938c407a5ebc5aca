"""The API's documentation page (Swagger UI at /api/docs, the document at /api/openapi.json), with
nothing from third parties.

Swagger UI's scripts and stylesheet are the copy of swagger-ui-dist that the pinned flask-swagger-ui
package ships (its version is Swagger UI's); the API serves them itself under /api/docs/assets/.
The page carries a strict Content-Security-Policy: scripts and styles from this origin only, plus the
one inline script of flask-smorest's page template, allowed by its hash. With API_DOCS_ENABLED off
(the default in production) neither the page, the document nor the assets exist: 404.
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, request, send_from_directory

ASSETS_URL = "/api/docs/assets/"
# What flask-smorest's page template loads (its `swagger_ui_url` + these names).
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"})
ASSETS_MAX_AGE = 3600
DOCS_PAGE_ENDPOINT = "api-docs.openapi_swagger_ui"
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
DOCS_PAGE_POLICY = (
    "default-src 'none'; script-src 'self' {scripts}; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def assets_dir() -> Path:
    """swagger-ui-dist as the pinned flask-swagger-ui package ships it."""
    import flask_swagger_ui

    return Path(flask_swagger_ui.__file__).resolve().parent / "dist"


def docs_config(enabled: bool) -> dict:
    """flask-smorest's settings for the page and the document; none of either when docs are off."""
    if not enabled:
        return {"OPENAPI_URL_PREFIX": None}
    return {
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": ASSETS_URL,
        # No "valid spec" badge fetched from the public validator.
        "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": None},
    }


assets = Blueprint("docs_assets", __name__)


@assets.route(ASSETS_URL + "<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    return send_from_directory(assets_dir(), name, max_age=ASSETS_MAX_AGE)


def script_hashes(page: bytes) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(page)
    )


def add_docs_page_policy(response: Response) -> Response:
    if request.endpoint == DOCS_PAGE_ENDPOINT and response.status_code == 200:
        policy = DOCS_PAGE_POLICY.format(scripts=script_hashes(response.get_data()))
        response.headers["Content-Security-Policy"] = policy
    return response


def init_docs(app: Flask) -> None:
    """The assets' route and the page's policy, when the docs are on (app.config's API_DOCS_ENABLED)."""
    if not app.config["API_DOCS_ENABLED"]:
        return
    app.register_blueprint(assets)
    app.after_request(add_docs_page_policy)
