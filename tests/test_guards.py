"""Input refused before it can hurt, and the headers every answer carries (api/guards.py)."""
from __future__ import annotations

import json

import pytest

from tests.factories import create_user
from tests.support import SPA, login


@pytest.fixture()
def admin(client, db):
    user = create_user("admin")
    login(client, user)
    return user


@pytest.mark.parametrize("query", [
    "search=a%00b", "search=a%00b&page=1", "search=%07", "status=%E2%80%8B%00", "a%00=1", "search=x%7F",
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
