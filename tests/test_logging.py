"""Logs: a request id from the HTTP request into its tasks, the security log, no personal data."""
from __future__ import annotations

import io
import json
import logging
import random
import re
import uuid
from urllib.parse import quote, quote_plus

import pytest

from logconfig import build_handler, redact
from settings import settings
from tests.factories import create_user
from tests.support import SPA, login, wait_for

PHONE = "+7 (999) 765-43-21"
PHONE_DIGITS = ("79997654321", "9997654321", "765-43-21", "765 43 21")


class Captured:
    """The project's own JSON handler on the root logger, writing to memory."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = build_handler(self.stream, json_format=True)
        self.root = logging.getLogger()

    def __enter__(self) -> "Captured":
        self.level = self.root.level
        self.root.setLevel(logging.INFO)
        self.root.addHandler(self.handler)
        return self

    def __exit__(self, *exc) -> None:
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.level)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture()
def captured():
    with Captured() as capture:
        yield capture


def assert_no_phone(text: str) -> None:
    for digits in PHONE_DIGITS:
        assert digits not in text


@pytest.mark.worker
def test_request_id_follows_the_request_into_its_task(app, committed, celery_worker_thread, captured):
    admin = create_user("admin")
    client = app.test_client()
    login(client, admin)
    request_id = f"req-{uuid.uuid4().hex}"

    accepted = client.post("/api/jobs/ping", headers={**SPA, "X-Request-ID": request_id})
    assert accepted.status_code == 202
    assert accepted.headers["X-Request-ID"] == request_id
    job_id = accepted.json["job_id"]

    def task_line():
        return [r for r in captured.records() if r["logger"] == "tasks.jobs" and job_id in r["message"]]

    lines = wait_for(task_line, timeout=30)
    assert lines[0]["request_id"] == request_id
    api_lines = [r for r in captured.records() if r["logger"] == "leadline.access" and "/api/jobs/ping" in r["message"]]
    assert [r["request_id"] for r in api_lines] == [request_id]
    assert api_lines[0]["level"] == "INFO" and "202" in api_lines[0]["message"]


@pytest.mark.worker
def test_no_phone_number_in_api_or_task_lines(app, committed, celery_worker_thread, captured):
    from models import City

    city = City(name="Логовск")
    committed.add(city)
    committed.commit()
    operator = create_user("admin")
    client = app.test_client()
    login(client, operator)
    request_id = f"req-{uuid.uuid4().hex}"

    created = client.post("/api/requests/", json={"client_phone": PHONE, "client_name": "Пётр", "city_id": city.id},
                          headers={**SPA, "X-Request-ID": request_id})
    assert created.status_code == 201, created.json
    listed = client.get("/api/requests?search=79997654321", headers={"X-Request-ID": request_id})
    assert listed.status_code in (200, 422)
    # a task from the same request, through the real worker
    accepted = client.post("/api/jobs/ping", headers={**SPA, "X-Request-ID": request_id})
    job_id = accepted.json["job_id"]
    wait_for(lambda: any(r["logger"] == "tasks.jobs" and job_id in r["message"] for r in captured.records()))
    # a careless log call carrying the phone: the handler masks it
    logging.getLogger("leadline.test").warning("client %s called about %s", PHONE, "79997654321")

    mine = [r for r in captured.records() if r["request_id"] == request_id]
    assert {r["logger"] for r in mine} >= {"leadline.access", "tasks.jobs"}
    assert_no_phone(captured.text)
    assert "client *** called about ***" in captured.text


def test_a_malformed_or_phone_like_request_id_is_replaced(client):
    good = "abc-123.def:456_ok"
    assert client.get("/api/health", headers={"X-Request-ID": good}).headers["X-Request-ID"] == good
    for bad in ("short", "has space in it", "x" * 129, "79997654321", "+7-999-765-43-21", "a\u0444bcdefgh"):
        answered = client.get("/api/health", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert answered != bad and re.fullmatch(r"[0-9a-f]{32}", answered)
    first = client.get("/api/health").headers["X-Request-ID"]
    assert first != client.get("/api/health").headers["X-Request-ID"]


def security(captured: Captured) -> list[dict]:
    return [r for r in captured.records() if r["logger"] == "leadline.security"]


def test_security_log_of_sign_ins_lockouts_and_refusals(client, make_user, captured):
    password_typed = "Wrong-Passw0rd-Typed"
    user = make_user("callcentr", login="operator.sec")

    assert client.post("/api/auth/login", json={"login": "operator.sec", "password": password_typed}).status_code == 401
    for _ in range(settings.LOGIN_MAX_FAILURES):
        client.post("/api/auth/login", json={"login": "operator.sec", "password": password_typed})
    assert client.post("/api/auth/login", json={"login": "operator.sec", "password": password_typed}).status_code == 423

    other = make_user("callcentr")
    login(client, other)
    assert client.post("/api/jobs/ping", headers=SPA).status_code == 403

    events = security(captured)
    failed = [e for e in events if e.get("event") == "login_failed"]
    assert failed and failed[0]["status"] == 401 and failed[0]["code"] == "invalid_credentials"
    assert len({e["login_hash"] for e in failed}) == 1  # the same login, correlated without being shown
    assert any(e.get("event") == "login_locked" for e in events)
    succeeded = [e for e in events if e.get("event") == "login_succeeded"]
    assert [e["user_id"] for e in succeeded] == [other.id]
    denied = [e for e in events if e.get("event") == "access_denied"]
    assert denied[-1]["user_id"] == other.id and denied[-1]["status"] == 403 and denied[-1]["code"] == "forbidden"

    text = captured.text
    assert password_typed not in text
    assert "operator.sec" not in text
    assert user.password_hash not in text


def test_tokens_are_not_logged(client, make_user, captured):
    user = make_user("admin")
    token = login(client, user).json["access_token"]
    logging.getLogger("leadline.test").error("auth header was Bearer %s; token=%s", token, token)
    assert token not in captured.text
    assert token.split(".")[1] not in captured.text


@pytest.mark.parametrize("raw", [
    "call from +7 (999) 765-43-21 ended",
    "call from 89997654321 ended",
    "call from 8-999-765-43-21 ended",
    "call from 7 999 765 43 21 ended",
    "call from +79997654321, again",
])
def test_phone_numbers_are_masked(raw):
    masked = redact(raw)
    assert_no_phone(masked)
    assert "***" in masked and masked.startswith("call from ")


@pytest.mark.parametrize("raw", [
    "file 123 rejected: bad_magic",
    "job 3f2a1b4c-1234-5678-9abc-def012345678 done",
    "mango event 4812 (call) stored",
    "2026-11-27 05:20:00,123 took 12.5ms",
    "sum 150000.00 booked",
])
def test_ordinary_ids_times_and_amounts_are_kept(raw):
    assert redact(raw) == raw


@pytest.mark.parametrize("raw, secret", [
    ("password=hunter22 login ok", "hunter22"),
    ('{"api_key": "k3y-value-1"}', "k3y-value-1"),
    ("Authorization: Basic YWRtaW46c2VjcmV0", "YWRtaW46c2VjcmV0"),
    ("session Tx3xXw8kz1Lq9VdN2bQpR7sMfYc4HgJe5UoAiW6t", "Tx3xXw8kz1Lq9VdN2bQpR7sMfYc4HgJe5UoAiW6t"),
])
def test_secrets_are_masked(raw, secret):
    assert secret not in redact(raw)


@pytest.mark.parametrize("raw, expected", [
    ("broker redis://:s3cr3t-pass@redis.internal:6379/0 unreachable, retry in 5.0s",
     "broker redis://:***@redis.internal:6379/0 unreachable, retry in 5.0s"),
    ("engine postgresql+psycopg://leadline:s3cr3t-pass@db:5432/leadline (pool 5) ready",
     "engine postgresql+psycopg://leadline:***@db:5432/leadline (pool 5) ready"),
    ('{"url": "rediss://default:p@ss/w0rd#1@cache.example.com:6380/2"} GET /api/requests/12/ 200 3.1ms',
     '{"url": "rediss://default:***@cache.example.com:6380/2"} GET /api/requests/12/ 200 3.1ms'),
    ("from redis://:one-pass@h1:6379/0 to redis://admin:two-pass@h2:6379/1 moved",
     "from redis://:***@h1:6379/0 to redis://admin:***@h2:6379/1 moved"),
    ("redis://127.0.0.1:6379/11 and postgresql://leadline@db/leadline keep their addresses",
     "redis://127.0.0.1:6379/11 and postgresql://leadline@db/leadline keep their addresses"),
])
def test_url_passwords_are_masked_and_the_rest_kept(raw, expected):
    assert redact(raw) == expected


def test_a_url_password_in_a_log_line_or_its_exception_is_masked(captured):
    try:
        raise ConnectionError("cannot reach postgresql://leadline:db-Pa55word@db.internal:5432/leadline")
    except ConnectionError:
        logging.getLogger("leadline.test").exception("broker redis://:redis-Pa55word@redis.internal:6379/0 down")
    text = captured.text
    assert "db-Pa55word" not in text and "redis-Pa55word" not in text
    assert "redis://:***@redis.internal:6379/0 down" in text
    assert "postgresql://leadline:***@db.internal:5432/leadline" in text


# ---- 10,000 generated lines through the real handler: phones masked, everything else kept ----------------

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
PATHS = ("/api/requests/{id}", "/api/requests/{id}/history", "/api/users/masters/{id}", "/api/transactions/{id}",
         "/api/files/{id}", "/api/recordings/{id}/link", "/api/calls/{id}", "/api/jobs/{uuid}", "/api/requests",
         "/api/reports/cities", "/api/v1/requests/{id}", "/api/requests/{id}/upload-bso", "/api/alerts/{id}",
         "/api/secure-files/view/requests/{id}/bso_{day}_{id}.jpg", "/api/cities/{id}", "/metrics")
STATUSES = (200, 201, 202, 204, 301, 304, 400, 401, 403, 404, 409, 413, 415, 422, 423, 429, 500, 503)
TASKS = ("tasks.files.validate", "tasks.telephony.process_event", "tasks.recordings.import_mailbox",
         "tasks.maintenance.run", "tasks.alerts.evaluate", "tasks.jobs.ping")


class Lines:
    """Log lines and what each must read after masking, from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def digits(self, count: int) -> str:
        return str(self.rng.randrange(10 ** (count - 1), 10 ** count))

    def id(self) -> str:
        """An id in a path or after `..._id=`: any length, 10 digits and more too (rule of logconfig.PHONE_RE)."""
        return self.digits(self.rng.choice((1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 19)))

    def row_id(self) -> str:
        """An id in free text: a row id as our tables have them (int4, up to 2147483647)."""
        length = self.rng.randrange(1, 11)
        return str(self.rng.randrange(10 ** (length - 1), 10 ** length if length < 10 else 2 ** 31))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def day(self) -> str:
        return f"{self.rng.randrange(2020, 2031)}-{self.rng.randrange(1, 13):02}-{self.rng.randrange(1, 29):02}"

    def clock(self) -> str:
        return f"{self.rng.randrange(24):02}:{self.rng.randrange(60):02}:{self.rng.randrange(60):02}"

    def phone(self) -> str:
        code, a, b, c = self.digits(2), self.digits(3), self.digits(2), self.digits(2)
        mobile = f"9{code}"
        return self.rng.choice((
            f"+7 ({mobile}) {a}-{b}-{c}", f"+7 {mobile} {a}-{b}-{c}", f"8 ({mobile}) {a}-{b}-{c}",
            f"8-{mobile}-{a}-{b}-{c}", f"7 {mobile} {a} {b} {c}", f"8{mobile}{a}{b}{c}", f"+7{mobile}{a}{b}{c}",
            f"7{mobile}{a}{b}{c}", f"{mobile}{a}{b}{c}", f"({mobile}) {a}-{b}-{c}", f"8 {mobile} {a}{b}{c}",
            f"+44 20 {self.digits(4)} {self.digits(4)}", f"+380 44 {a} {b}{c}", f"+{self.digits(12)}",
        ))

    def query(self) -> tuple[str, str]:
        """A query string as sent and as logged after masking."""
        sent, kept = [], []
        for _ in range(self.rng.randrange(1, 5)):
            kind = self.rng.randrange(8)
            if kind == 0:
                pair = (f"phone={quote(self.phone())}", "phone=***")
            elif kind == 1:
                pair = (f"search={quote_plus(self.rng.choice((self.phone(), 'Иван Петров', 'ул. Ленина 5')))}",
                        "search=***")
            elif kind == 2:  # a phone under a key nobody declared personal: masked once decoded
                key = self.rng.choice(("number", "to", "q", "filter"))
                pair = (f"{key}={self.rng.choice((quote, quote_plus))(self.phone())}", f"{key}=***")
            else:
                key, value = self.rng.choice((
                    ("page", str(self.rng.randrange(1, 10_000))), ("page_size", str(self.rng.randrange(1, 501))),
                    ("city_id", self.id()), ("status", "Новая,Готово"), ("date_from", self.day()),
                    ("sort", "-created_at"), ("_", self.digits(13)), ("master_id", self.id())))
                pair = (f"{key}={quote(value)}",) * 2
            sent.append(pair[0])
            kept.append(pair[1])
        return "&".join(sent), "&".join(kept)

    def access(self) -> tuple[tuple, str]:
        """(format args of api/middleware's access line, the line expected), maybe with a query string."""
        path = self.rng.choice(PATHS).format(id=self.id(), uuid=self.uuid(), day=self.day().replace("-", ""))
        expected = path
        if self.rng.random() < 0.4:
            sent, kept = self.query()
            path, expected = f"{path}?{sent}", f"{path}?{kept}"
        method, status = self.rng.choice(METHODS), self.rng.choice(STATUSES)
        latency = self.rng.choice((self.rng.uniform(0, 20), self.rng.uniform(0, 2000), self.rng.uniform(0, 99999)))
        args = (method, path, status, latency)
        return args, f"{method} {expected} {status} {latency:.1f}ms"

    def task(self) -> tuple[str, str]:
        """A worker's line (Celery's and ours) as logged and as expected."""
        rng, task_id, number = self.rng, self.uuid(), self.row_id()
        seconds = f"{rng.uniform(0, 600):.{rng.choice((1, 3, 6))}f}"
        templates = [
            (f"Task {rng.choice(TASKS)}[{task_id}] received",) * 2,
            (f"Task {rng.choice(TASKS)}[{task_id}] succeeded in {seconds}s: None",) * 2,
            (f"Task {rng.choice(TASKS)}[{task_id}] succeeded in {seconds}s: {{'file_id': {number}, "
             f"'size_bytes': {self.row_id()}}}",) * 2,
            (f"Task {rng.choice(TASKS)}[{task_id}] retry: Retry in {rng.randrange(1, 600)}s",) * 2,
            (f"ping job {task_id} done",) * 2,
            (f"file {number} rejected: bad_magic",) * 2,
            (f"maintenance.vacuum finished in {seconds} s",) * 2,
            (f"files.sweep: {rng.randrange(1000)} pending uploads queued again",) * 2,
            (f"mango event {number} (call) stored at {self.day()} {self.clock()},{self.digits(3)}",) * 2,
            (f"mango sweep: {rng.randrange(100)} pending events re-enqueued, {rng.randrange(100)} calls closed",) * 2,
            (f"recordings import: {rng.randrange(50)} imported, {rng.randrange(50)} duplicates, "
             f"{rng.randrange(5)} skipped; matched {rng.randrange(50)}, unmatched {rng.randrange(50)}",) * 2,
            (f"telegram: attempt {rng.randrange(1, 6)} failed (timeout), retrying in {rng.uniform(0, 30):.1f} s",) * 2,
            (f"report rollup {self.day()}..{self.day()} rebuilt in {rng.randrange(1, 90_000)} ms, "
             f"{self.digits(rng.randrange(1, 13))} bytes",) * 2,
        ]
        phone, clock = self.phone(), self.clock()
        templates += [
            (f"mango event {number} (call) failed: no request for {phone}",
             f"mango event {number} (call) failed: no request for ***"),
            (f"recording {number} from {phone} at {clock} unmatched",
             f"recording {number} from *** at {clock} unmatched"),
            (f"request {number} saved: client_name=Иван, client_phone={quote(phone)}, status=Новая",
             f"request {number} saved: client_name=***, client_phone=***, status=Новая"),
            (f'event {number} payload {{"from_number": "{phone}", "entry_id": "{task_id}"}}',
             f'event {number} payload {{"from_number": "***", "entry_id": "{task_id}"}}'),
        ]
        return rng.choice(templates)


def test_ten_thousand_lines_mask_every_phone_and_keep_every_id_status_and_timing():
    lines = Lines(seed=16)
    streams = {"text": io.StringIO(), "json": io.StringIO()}
    logger = logging.getLogger("leadline.test.masking")
    logger.propagate, logger.level = False, logging.INFO
    handlers = [build_handler(streams["text"], json_format=False), build_handler(streams["json"], json_format=True)]
    for handler in handlers:
        logger.addHandler(handler)
    expected = []
    try:
        for index in range(10_000):
            request_id = uuid.UUID(int=lines.rng.getrandbits(128)).hex
            if index % 2:
                args, line = lines.access()
                logger.info("%s %s %s %.1fms", *args, extra={"request_id": request_id})
            else:
                sent, line = lines.task()
                logger.info(sent, extra={"request_id": request_id})
            expected.append((request_id, line))
    finally:
        for handler in handlers:
            logger.removeHandler(handler)

    text_lines = streams["text"].getvalue().splitlines()
    json_lines = [json.loads(line) for line in streams["json"].getvalue().splitlines()]
    assert len(text_lines) == len(json_lines) == len(expected)
    wrong = []
    for (request_id, line), text_line, record in zip(expected, text_lines, json_lines):
        if text_line.split(" [", 1)[1] != f"{request_id}]: {line}" or (record["request_id"], record["message"]) != (
                request_id, line):
            wrong.append((line, text_line, record["message"]))
    assert wrong[:5] == [] and len(wrong) == 0, len(wrong)
