"""Generated requests over the whole OpenAPI document: whatever arrives, never a 5xx.

Schemathesis builds bodies, queries and path ids from every operation's schema (valid and
invalid ones); they run as an admin inside the test's rolled-back transaction. Hypothesis drives
each operation directly (schemathesis' pytest plugin does not support this pytest yet).
"""
from __future__ import annotations

import re

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.factories import TEST_PASSWORD
from tests.support import SPA

# Covered by their own tests: side effects outside the test's transaction, or a 503 by design
# (readiness without a worker and beat).
SKIPPED = {("POST", "/api/auth/logout"), ("POST", "/api/jobs/ping"), ("GET", "/api/health/ready")}
# Mango's webhooks enqueue outside the test's transaction (a worker thread could pick up a message
# for a rolled-back row); tests/test_telephony_webhook.py feeds them malformed input instead.
SKIPPED_PREFIXES = ("/api/webhook", "/api/mango/webhook", "/api/v2/mango/webhook")
EXAMPLES_PER_OPERATION = 25


def test_no_server_errors_anywhere(app, db, make_user):
    admin = make_user("admin")
    login = app.test_client().post("/api/auth/login", json={"login": admin.login, "password": TEST_PASSWORD})
    headers = {"Authorization": f"Bearer {login.json['access_token']}"}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures, exercised = [], 0

    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED or (
                operation.method.upper() == "POST" and operation.path.startswith(SKIPPED_PREFIXES)):
            continue
        exercised += 1

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.path_parameters, case.query, case.body,
                                 response.status_code, response.text[:300]))
            elif response.status_code >= 400:
                body = response.json()
                assert body["detail"] and body["code"], (case.method, case.path, body)

        check()

    assert exercised >= 5
    assert failures == []


# ---- explicit cases for every operation: a NUL byte in each query parameter and body field, deep JSON ---

NUL = "a\x00b"
DEEP_JSON = b"[" * 100_000


def _path_parameters(operation) -> dict[str, str]:
    """Any value that routes: the answer to these cases must not depend on the row existing."""
    return {name: "1" for name in re.findall(r"\{(\w+)\}", operation.path)}


def _body_fields(operation) -> list[str]:
    for body in operation.body:
        if body.media_type == "application/json":
            schema = body.definition.get("schema", {})
            while "$ref" in schema:
                schema = operation.schema.raw_schema
                for part in body.definition["schema"]["$ref"].lstrip("#/").split("/"):
                    schema = schema[part]
            return list(schema.get("properties", {}))
    return []


def hostile_cases(operation):
    """(what, case) for every query parameter and JSON body field with a NUL, and a deeply nested body."""
    path = _path_parameters(operation)
    for parameter in operation.query:
        yield f"query {parameter.name}", operation.Case(path_parameters=path, query={parameter.name: NUL})
    for name in _body_fields(operation):
        yield f"body {name}", operation.Case(path_parameters=path, body={name: NUL}, media_type="application/json")
    # To every operation: one that reads a JSON body must refuse it (400), the others must not break.
    yield "deep JSON", operation.Case(path_parameters=path, body=DEEP_JSON, media_type="application/json")


def takes_json(operation) -> bool:
    return any(body.media_type == "application/json" for body in operation.body)


def test_nul_bytes_and_deep_json_everywhere_are_a_4xx(app, db, make_user):
    """Schemathesis builds each request (path, query, body, media type) from the OpenAPI document;
    the Flask app answers in-process. Reading the whole answer is the check that the connection is
    not dropped halfway (a streamed list failing after its first byte raises here)."""
    admin = make_user("admin")
    client = app.test_client()
    login = client.post("/api/auth/login", json={"login": admin.login, "password": TEST_PASSWORD})
    headers = {"Authorization": f"Bearer {login.json['access_token']}", **SPA}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures, sent = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED or (
                operation.method.upper() == "POST" and operation.path.startswith(SKIPPED_PREFIXES)):
            continue
        for what, case in hostile_cases(operation):
            sent += 1
            try:
                response = case.call(headers=headers)
                content = response.content  # the whole body: a dropped stream raises here
            except Exception as exc:  # noqa: BLE001 - what the client would see as a broken connection
                failures.append((case.method, case.path, what, f"dropped: {type(exc).__name__}: {exc}"[:300]))
                continue
            refused = what != "deep JSON" or takes_json(operation)
            if response.status_code >= 500 or (refused and not 400 <= response.status_code < 500):
                failures.append((case.method, case.path, what, response.status_code, content[:200]))
            elif response.status_code >= 400:
                body = response.json()
                if not (body.get("detail") and body.get("code")):
                    failures.append((case.method, case.path, what, "no detail", body))
    assert sent >= 100
    assert failures == []
