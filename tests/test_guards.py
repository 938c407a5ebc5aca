"""Input refused before it can hurt, and the headers every answer carries (api/guards.py)."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from tests.factories import create_user
from tests.support import SPA, login


@pytest.fixture()
def admin(client, db):
    user = create_user("admin")
    login(client, user)
    return user


@pytest.mark.parametrize("query", [
    "search=a%00b", "search=a%00b&page=1", "search=%07", "status=%E2%80%8B%00", "a%00=1", "search=x%7F",
    "search=x%C2%9B",  # C1
])
def test_a_control_character_in_a_query_parameter_is_422_before_the_list_starts(client, admin, query):
    """The complete list streams its rows: a bad value must be refused before the 200 is sent."""
    response = client.get(f"/api/requests?{query}")
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == "validation_error" and "Недопустимый символ" in body["detail"]


def test_ordinary_text_in_query_parameters_still_works(client, admin):
    response = client.get("/api/requests?search=Иван%20Петров&status=Новая,Готово")
    assert response.status_code == 200 and response.get_json() == []


def test_json_nested_too_deeply_is_400_even_before_sign_in(client, db):
    response = client.post("/api/auth/login", data="[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["detail"] == "Некорректное тело запроса: ожидается JSON"


def test_a_json_body_over_the_cap_is_413_unread(client, admin):
    padding = "я" * (1024 * 1024)  # two bytes each in UTF-8: 2 MB
    body = json.dumps({"name": "Город", "padding": padding})
    response = client.post("/api/cities", data=body, content_type="application/json", headers=SPA)
    assert response.status_code == 413 and response.get_json()["code"] == "payload_too_large"
    assert "1 МБ" in response.get_json()["detail"]


def test_every_answer_says_nosniff_no_referrer_and_no_store(client, admin):
    for response in (client.get("/api/requests"), client.get("/api/health"),
                     client.post("/api/auth/login", json={"login": "nobody", "password": "wrong-password"}),
                     client.get("/api/requests/999999")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"


def test_json_answers_forbid_loading_and_framing(client, admin):
    """A JSON answer opened in a browser loads nothing and cannot be framed."""
    for response in (client.get("/api/requests"), client.get("/api/requests?page=1"), client.get("/api/health"),
                     client.get("/api/requests/999999"), client.get("/api/requests?search=%00")):
        assert response.is_json
        assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


# ---- control characters in request bodies: every field of every JSON-body operation ------------

# Refused in every text field, single- or multi-line.
REFUSED_EVERYWHERE = {"NUL": "a\x00b", "ESC": "a\x1bb", "BEL": "a\x07b", "DEL": "a\x7fb", "C1": "a\x9bb",
                      "surrogate": "a\ud800b"}
# Refused in single-line fields only.
LINE_BREAKS = {"LF": "a\nb", "CR": "a\rb", "TAB": "a\tb"}


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        target = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def _fields(spec: dict, schema: dict, path: tuple = ()):
    """(path, multiline) of every property of a body, nested objects and arrays included. A string
    may be sent in any of them (amounts and ids accept numeric strings), so each one is tried."""
    schema = _resolve(spec, schema)
    for name, prop in schema.get("properties", {}).items():
        prop = _resolve(spec, prop)
        if prop.get("readOnly"):
            continue
        items = _resolve(spec, prop.get("items", {}))
        if "properties" in prop:
            yield from _fields(spec, prop, path + (name,))
        elif "properties" in items:
            yield from _fields(spec, items, path + (name, 0))
        elif prop.get("type") == "array":
            yield path + (name, 0), bool(items.get("x-multiline"))
        else:
            yield path + (name,), bool(prop.get("x-multiline"))


def _body(path: tuple, value):
    """A body with `value` at `path` ({"a": {"b": [value]}} for ("a", "b", 0))."""
    for part in reversed(path):
        value = [value] if isinstance(part, int) else {part: value}
    return value


def send(client, method: str, url: str, body):
    """JSON with \\u escapes (a lone surrogate cannot be sent as UTF-8), as attack tools send it."""
    return client.open(url, method=method, data=json.dumps(body), content_type="application/json", headers=SPA)


def json_body_operations(app) -> list[tuple[str, str, dict]]:
    spec = app.test_client().get("/api/openapi.json").get_json()
    operations = []
    for route, item in spec["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            if "application/json" in content:
                url = re.sub(r"\{[^}]+\}", "1", route)
                fields = list(_fields(spec, content["application/json"]["schema"]))
                operations.append((method.upper(), url, fields))
    return operations


def table_fingerprints(db) -> dict[str, str]:
    """Every table's rows, hashed: any insert, update or delete changes it."""
    tables = db.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
    return {table: db.execute(text(
        f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{table}" t')).scalar_one()
        for table in tables}


def test_a_control_character_in_any_field_of_any_json_body_is_422_and_nothing_is_written(
        app, client, admin, db):
    operations = json_body_operations(app)
    assert len(operations) >= 20 and sum(len(fields) for _, _, fields in operations) >= 100
    before = table_fingerprints(db)
    wrong = []
    for method, url, fields in operations:
        for path, multiline in fields:
            name = ".".join(str(part) for part in path)
            values = {**REFUSED_EVERYWHERE, **({} if multiline else LINE_BREAKS)}
            for kind, value in values.items():
                response = send(client, method, url, _body(path, value))
                body = response.get_json(silent=True) or {}
                if (response.status_code != 422 or body.get("errors") != {name: ["Недопустимый символ в тексте"]}
                        or "недопустимый символ" not in body.get("detail", "")):
                    wrong.append((method, url, name, kind, response.status_code, body))
            if multiline:  # a note may span lines: whatever else is said, not this
                response = send(client, method, url, _body(path, "строка 1\r\n\tстрока 2"))
                if response.status_code >= 500 or "недопустимый символ" in response.get_data(as_text=True):
                    wrong.append((method, url, name, "multi-line text", response.status_code))
    assert wrong == []
    assert table_fingerprints(db) == before


def test_a_control_character_in_a_key_of_any_json_body_is_422(app, client, admin):
    wrong = []
    for method, url, _ in json_body_operations(app):
        response = send(client, method, url, {"bad\x00key": 1, "other\x1b": "x"})
        body = response.get_json(silent=True) or {}
        if response.status_code != 422 or set(body.get("errors", {})) not in ({"bad?key"}, {"other?"}):
            wrong.append((method, url, response.status_code, body))
    assert wrong == []


def test_the_answer_names_the_field_in_russian(client, admin):
    response = client.post("/api/cities", json={"name": "Город\x00"}, headers=SPA)
    assert response.status_code == 422
    assert response.get_json() == {
        "code": "validation_error", "errors": {"name": ["Недопустимый символ в тексте"]},
        "detail": "Ошибка в данных запроса. Название: недопустимый символ — нулевой байт (NUL)"}
    response = client.post("/api/cities", json={"name": "Город\nНовый"}, headers=SPA)
    assert response.get_json()["detail"] == (
        "Ошибка в данных запроса. Название: недопустимый символ — перенос строки или табуляция в однострочном поле")
