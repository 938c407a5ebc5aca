"""Mounting, trailing slashes, CORS, OpenAPI and the error body for every kind of failure."""
from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.support import login

SPA_ORIGIN = "http://spa.test"


def assert_error_body(response, status: int, code: str):
    assert response.status_code == status
    body = response.get_json()
    assert set(body) <= {"detail", "code", "errors"}
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


@pytest.mark.parametrize("path", ["/api/health", "/api/health/", "/api/v1/health", "/api/v1/health/"])
def test_same_api_under_both_mounts_with_or_without_slash(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_post_with_trailing_slash_is_not_redirected(client, make_user):
    user = make_user("manager")
    from tests.factories import TEST_PASSWORD

    for path in ("/api/auth/login/", "/api/v1/auth/login"):
        response = client.post(path, json={"login": user.login, "password": TEST_PASSWORD})
        assert response.status_code == 200


def test_400_malformed_json(client):
    body = assert_error_body(
        client.post("/api/auth/login", data="{not json", content_type="application/json"), 400, "bad_request"
    )
    assert "JSON" in body["detail"]


def test_401_without_session(client):
    assert_error_body(client.get("/api/auth/me"), 401, "not_authenticated")


def test_403_wrong_role(client, make_user):
    login(client, make_user("avitolog"))
    assert_error_body(client.post("/api/jobs/ping", headers={"Origin": SPA_ORIGIN}), 403, "forbidden")


def test_404_unknown_path(client):
    body = assert_error_body(client.get("/api/no-such-thing"), 404, "not_found")
    assert body["detail"] == "Не найдено"


def test_404_unknown_job(client, make_user):
    login(client, make_user("admin"))
    assert_error_body(client.get("/api/jobs/00000000-0000-0000-0000-000000000000"), 404, "job_not_found")
    assert_error_body(client.get("/api/jobs/not-a-uuid"), 404, "job_not_found")


def test_405_wrong_method(client):
    response = client.put("/api/auth/login", json={})
    assert_error_body(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    "payload, fields",
    [
        ({}, {"login", "password"}),
        ({"login": 12, "password": "x"}, {"login"}),
        ({"login": "", "password": "x"}, {"login"}),
        ({"login": "a", "password": "x", "extra": 1}, {"extra"}),
        ([1, 2], {"_schema"}),
    ],
)
def test_422_field_errors(client, payload, fields):
    body = assert_error_body(client.post("/api/auth/login", json=payload), 422, "validation_error")
    assert set(body["errors"]) == fields
    for messages in body["errors"].values():
        assert messages


def test_413_body_too_large(app):
    app.config["MAX_CONTENT_LENGTH"], saved = 1024, app.config["MAX_CONTENT_LENGTH"]
    try:
        response = app.test_client().post(
            "/api/auth/login", data=b'{"login": "' + b"a" * 4096 + b'"}', content_type="application/json"
        )
        assert_error_body(response, 413, "payload_too_large")
    finally:
        app.config["MAX_CONTENT_LENGTH"] = saved


def test_500_is_a_clean_body():
    from api import create_app

    app = create_app({"TESTING": True, "RATELIMIT_ENABLED": False})

    @app.route("/api/test-explode")
    def explode():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/api/test-explode")
    body = assert_error_body(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert body["detail"] == "Внутренняя ошибка сервера"


def test_cors_allows_configured_origin_with_credentials(client):
    response = client.options(
        "/api/auth/login",
        headers={"Origin": SPA_ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Content-Type"},
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SPA_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_cors_refuses_other_origins(client):
    response = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_openapi_and_swagger_ui(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    assert spec.json["openapi"].startswith("3.")
    for path in ("/api/auth/login", "/api/auth/me", "/api/auth/logout", "/api/health/ready", "/api/jobs/{job_id}"):
        assert path in spec.json["paths"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.get_data(as_text=True)


class PageReferences(HTMLParser):
    """What a browser would fetch for a page: scripts, stylesheets, images, icons; and inline scripts."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name):
                self.urls.append(attrs[name])
        self._in_inline_script = tag == "script" and not attrs.get("src")

    def handle_endtag(self, tag):
        self._in_inline_script = False

    def handle_data(self, data):
        if self._in_inline_script:
            self.inline_scripts.append(data)


def test_docs_page_loads_only_its_own_assets_under_a_strict_policy(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert not re.findall(r"(?:https?:)?//(?!localhost[:/])[\w.-]+", html)  # no other host, no CDN
    references = PageReferences()
    references.feed(html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in references.urls)
    for url in references.urls:
        assert urlsplit(url).netloc in ("", "localhost"), url
        asset = client.get(urljoin("http://localhost/api/docs", url))
        assert asset.status_code == 200, url
        expected = "text/css" if url.endswith(".css") else "text/javascript"
        assert asset.mimetype == expected, url
        assert len(asset.get_data()) > 10_000, url  # Swagger UI itself, not an error page
    bundle = client.get(urljoin("http://localhost/api/docs", references.urls[-1])).get_data(as_text=True)
    assert "SwaggerUIBundle" in bundle

    policy = {directive.split()[0]: directive.split()[1:]
              for directive in page.headers["Content-Security-Policy"].split(";")}
    inline = [base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
              for script in references.inline_scripts]
    assert inline and sorted(policy["script-src"]) == sorted(["'self'", *(f"'sha256-{h}'" for h in inline)])
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["default-src"] == policy["frame-ancestors"] == policy["base-uri"] == policy["object-src"] == [
        "'none'"]


def test_docs_assets_are_only_swagger_uis(client):
    assert client.get("/api/docs/assets/swagger-ui.css").status_code == 200
    for name in ("index.html", "oauth2-redirect.html", "..%2F..%2Fsettings.py", "LICENSE"):
        assert_error_body(client.get(f"/api/docs/assets/{name}"), 404, "not_found")


def test_docs_switched_off_are_not_there():
    from api import create_app

    off = create_app({"TESTING": True, "RATELIMIT_ENABLED": False, "API_DOCS_ENABLED": False}).test_client()
    for path in ("/api/docs", "/api/openapi.json", "/api/v1/openapi.json", "/api/docs/assets/swagger-ui-bundle.js"):
        body = assert_error_body(off.get(path), 404, "not_found")
        assert body["detail"] == "Не найдено"
    assert off.get("/api/health").status_code == 200


def test_rate_limit_gives_429_with_error_body(make_user):
    from api import create_app
    limited = create_app({"TESTING": True, "RATELIMIT_ENABLED": True})
    client = limited.test_client()
    from settings import settings

    allowed = int(settings.RATE_LIMIT_LOGIN.split()[0])
    statuses = [client.post("/api/auth/login", json={"login": f"u{i}", "password": "x"}).status_code
                for i in range(allowed + 1)]
    assert statuses[:allowed].count(429) == 0
    response = client.post("/api/auth/login", json={"login": "another", "password": "x"})
    assert_error_body(response, 429, "rate_limited")
    assert "Retry-After" in response.headers


def test_every_blueprint_is_the_projects(app):
    """api.extensions.Blueprint builds a schema class given to `arguments` once; a module importing
    flask_smorest's own Blueprint would quietly build one per call again."""
    import flask_smorest

    from api.extensions import Blueprint

    smorest = [name for name, blueprint in app.blueprints.items() if isinstance(blueprint, flask_smorest.Blueprint)]
    assert len(smorest) >= 10
    assert [name for name in smorest if not isinstance(app.blueprints[name], Blueprint)] == []


def test_a_schema_class_is_built_once_and_still_validates():
    from flask.views import MethodView
    from marshmallow import Schema, fields

    from api import create_app
    from api.extensions import Blueprint

    built = []

    class Probe(Schema):
        number = fields.Integer(required=True)

        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    app = create_app({"TESTING": True, "RATELIMIT_ENABLED": False})
    blp = Blueprint("probe", __name__, url_prefix="/api/probe")

    @blp.route("")
    class ProbeView(MethodView):
        @blp.arguments(Probe, location="query")
        def get(self, args):
            return {"number": args["number"]}

    app.extensions["leadline_api"].register_blueprint(blp)
    client = app.test_client()
    assert [client.get(f"/api/probe?number={n}").json for n in (1, 2, 3)] == [{"number": n} for n in (1, 2, 3)]
    body = assert_error_body(client.get("/api/probe?number=many"), 422, "validation_error")
    assert "number" in body["errors"]
    assert len(built) == 1
