"""Every endpoint × every role × own / other city / own / other master, against each role's rights.

Each case runs in a world of two cities (A and B) with a director and a master in A, a master in
B, requests and cash in both. `ok` means a 2xx; anything not allowed must be a 403 or a 404
(a 404 where the row's existence itself must not leak). A route of the API missing from the
table fails the test, so a new endpoint cannot skip this check.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable, Iterator

import pytest
from sqlalchemy import select

from api.security import issue_token
from models import AdvertisingCampaign, Call, City, Direction, MangoEvent, Recording, Request, Transaction, User
from models.advertising.tables import CampaignSpend
from models.callbacks.tables import Callback
from models.directories.tables import RequestType, Role, TransactionType
from models.ops.tables import Alert, AlertSilence, Job
from tests.factories import create_user
from tests.telephony_support import signing

ROLES = ("admin", "manager", "director", "callcentr", "avitolog", "master")
ALL = set(ROLES)
OFFICE = {"admin", "manager", "director"}
MANAGEMENT = {"admin", "manager"}
ADMIN = {"admin"}


@dataclass
class World:
    city_a: int
    city_b: int
    users: dict[str, User]
    master_b: User
    master_a2: User
    master_free: User
    employee: User
    other_admin: User
    req_own: int
    req_same_city_other_master: int
    req_b: int
    tx_a: int
    tx_b: int
    campaign_a: int
    direction: int
    spare_city: int
    income_type: int
    job: str
    role_callcentr: int
    spare_role: int
    spare_request_type: int
    spare_transaction_type: int
    call_a: int
    call_b: int
    failed_event: int
    alert: int = 0
    recording: int = 0
    tx_own_request: int = 0
    tx_other_master: int = 0
    callback_a: int = 0
    callback_b: int = 0
    spend_campaign: int = 0
    spend_a: int = 0

    def ids(self) -> dict[str, object]:
        return {
            "city_a": self.city_a, "city_b": self.city_b, "req_own": self.req_own,
            "req_other_master": self.req_same_city_other_master, "req_b": self.req_b,
            "tx_a": self.tx_a, "tx_b": self.tx_b, "campaign_a": self.campaign_a, "direction": self.direction,
            "spare_city": self.spare_city, "master_a": self.users["master"].id, "master_b": self.master_b.id,
            "master_free": self.master_free.id, "employee": self.employee.id, "other_admin": self.other_admin.id,
            "income_type": self.income_type, "job": self.job, "role_callcentr": self.role_callcentr,
            "spare_role": self.spare_role, "spare_request_type": self.spare_request_type,
            "spare_transaction_type": self.spare_transaction_type,
            "call_a": self.call_a, "call_b": self.call_b, "failed_event": self.failed_event,
            "alert": self.alert, "silenced_rule": "inbox_lag", "maintenance_task": "index_report",
            "recording": self.recording, "tx_own_request": self.tx_own_request,
            "tx_other_master": self.tx_other_master,
            "spend_campaign": self.spend_campaign, "spend_a": self.spend_a,
            "callback_a": self.callback_a, "callback_b": self.callback_b,
        }


@pytest.fixture()
def world(db) -> Iterator[World]:
    a, b, spare = City(name="Город А"), City(name="Город Б"), City(name="Пустой город")
    db.add_all([a, b, spare])
    db.commit()
    users = {
        "admin": create_user("admin"),
        "manager": create_user("manager"),
        "director": create_user("director", city_id=a.id),
        "callcentr": create_user("callcentr"),
        "avitolog": create_user("avitolog"),
        "master": create_user("master", city_id=a.id),
    }
    master_a2 = create_user("master", city_id=a.id)
    master_b = create_user("master", city_id=b.id)
    master_free = create_user("master", city_id=a.id)
    employee = create_user("callcentr", city_id=a.id)
    other_admin = create_user("admin")
    rt = db.scalar(select(RequestType.id).where(RequestType.name == "Впервые"))
    income = db.scalar(select(TransactionType.id).where(TransactionType.name == "Приход"))
    direction = Direction(name="Техника")
    campaign = AdvertisingCampaign(city_id=a.id, name="Авито А", phone_number="+7 (900) 000-00-01",
                                   phone="79000000001")
    own = Request(city_id=a.id, request_type_id=rt, client_phone="79990000001", client_name="Свой",
                  master_id=users["master"].id, status="В работе")
    other_master = Request(city_id=a.id, request_type_id=rt, client_phone="79990000002", client_name="Чужой мастер",
                           master_id=master_a2.id, status="В работе")
    in_b = Request(city_id=b.id, request_type_id=rt, client_phone="79990000003", client_name="Город Б",
                   master_id=master_b.id, status="В работе")
    tx_a = Transaction(city_id=a.id, transaction_type_id=income, amount=100, specified_date="2026-01-10")
    tx_b = Transaction(city_id=b.id, transaction_type_id=income, amount=200, specified_date="2026-01-10")
    job = Job(kind="ping", status="succeeded", created_by_id=users["admin"].id)
    spare_role, spare_rt, spare_tt = Role(name="стажёр"), RequestType(name="Гарантия"), TransactionType(name="Аренда")
    db.add_all([direction, campaign, own, other_master, in_b, tx_a, tx_b, job, spare_role, spare_rt, spare_tt])
    db.commit()
    call_a = Call(entry_id="entry-a", direction="in", client_phone="79990000001", request_id=own.id)
    call_b = Call(entry_id="entry-b", direction="in", client_phone="79990000003", request_id=in_b.id)
    failed = MangoEvent(dedupe_key="failed-1", event_type="call", status="failed", raw_body="{", last_error="bad json")
    alert = Alert(rule="beat_silent", severity="critical", message="Планировщик молчит")
    silence = AlertSilence(rule="inbox_lag", until=datetime.now(timezone.utc) + timedelta(hours=1))
    recording = Recording(source="imap", sha256="0" * 64, storage_path="zayvka/zapis/matrix.mp3", size_bytes=1,
                          from_phone="79990000001", request_id=own.id, match_status="matched")
    # The incomes of two requests in city A: the master's own, and another master's.
    tx_own_request = Transaction(city_id=a.id, transaction_type_id=income, amount=50, specified_date="2026-01-11",
                                 request_id=own.id)
    tx_other_master = Transaction(city_id=a.id, transaction_type_id=income, amount=70, specified_date="2026-01-11",
                                  request_id=other_master.id)
    db.add_all([call_a, call_b, failed, alert, silence, recording, tx_own_request, tx_other_master])
    # Open callbacks in both cities; the office users have Mango extensions (click-to-call).
    missed_at = datetime.now(timezone.utc) - timedelta(minutes=20)
    callback_a, callback_b = (
        Callback(phone=phone, city_id=city, campaign_id=campaign_id, missed_calls=1, first_missed_at=missed_at,
                 last_missed_at=missed_at, due_at=missed_at + timedelta(minutes=15))
        for phone, city, campaign_id in (("79990000001", a.id, campaign.id), ("79990000003", b.id, None)))
    db.add_all([callback_a, callback_b])
    for number, role in enumerate(("admin", "manager", "director", "callcentr", "avitolog"), start=201):
        users[role].mango_extension = str(number)
    db.commit()
    # A campaign with spend (its own: a campaign with spend cannot be deleted, campaign_a is).
    spend_campaign = AdvertisingCampaign(city_id=a.id, name="Яндекс А", phone_number="+7 (900) 000-00-02",
                                         phone="79000000002")
    db.add(spend_campaign)
    db.flush()
    spend = CampaignSpend(campaign_id=spend_campaign.id, date_from=date(2026, 1, 1), date_to=date(2026, 1, 31),
                          amount=Decimal("3100.00"))
    db.add(spend)
    db.commit()
    world = World(a.id, b.id, users, master_b, master_a2, master_free, employee, other_admin, own.id,
                  other_master.id, in_b.id, tx_a.id, tx_b.id, campaign.id, direction.id, spare.id, income, str(job.id),
                  db.scalar(select(Role.id).where(Role.name == "callcentr")), spare_role.id, spare_rt.id,
                  spare_tt.id, call_a.id, call_b.id, failed.id, alert.id, recording.id, tx_own_request.id,
                  tx_other_master.id, callback_a.id, callback_b.id)
    world.spend_campaign, world.spend_a = spend_campaign.id, spend.id
    with signing():  # click-to-call needs Mango's key and salt
        yield world


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    allowed: frozenset
    body: Callable[[dict], dict] | None = None


def case(name, method, path, allowed, body=None):
    return Case(name, method, path, frozenset(allowed), body)


def request_body(city):
    return lambda ids: {"client_phone": "+7 999 555-44-33", "client_name": "Новый", "city_id": ids[city]}


def tx_body(city):
    return lambda ids: {"city_id": ids[city], "transaction_type_id": ids["income_type"], "amount": "150",
                        "specified_date": "2026-02-01", "notes": "тест"}


def master_body(city):
    return lambda ids: {"city_id": ids[city], "full_name": "Мастер Новый", "phone_number": "+79995550000",
                        "login": f"m_new_{city}", "password": "Sekret-Pine-71", "birth_date": "", "status": "active"}


REPORT_QUERY = "?date_from=2026-01-01&date_to=2026-12-31"

CASES = [
    # auth
    case("me", "GET", "/api/auth/me", ALL),
    # requests
    case("requests list", "GET", "/api/requests/", ALL),
    case("request own", "GET", "/api/requests/{req_own}/", ALL),
    case("request same city, other master", "GET", "/api/requests/{req_other_master}/", ALL - {"master"}),
    case("request other city", "GET", "/api/requests/{req_b}/", ALL - {"director", "master"}),
    case("request history own", "GET", "/api/requests/{req_own}/history/", ALL),
    case("request history other city", "GET", "/api/requests/{req_b}/history/", ALL - {"director", "master"}),
    case("request create own city", "POST", "/api/requests/", ALL - {"master"}, request_body("city_a")),
    case("request create other city", "POST", "/api/requests/", ALL - {"master", "director"},
         request_body("city_b")),
    case("request update own", "PUT", "/api/requests/{req_own}/", ALL - {"avitolog"},
         lambda ids: {"status": "В пути"}),
    case("request update other master", "PUT", "/api/requests/{req_other_master}/",
         ALL - {"avitolog", "master"}, lambda ids: {"status": "В пути"}),
    case("request update other city", "PUT", "/api/requests/{req_b}/", ALL - {"avitolog", "master", "director"},
         lambda ids: {"status": "В пути"}),
    case("request delete own city", "DELETE", "/api/requests/{req_own}/", MANAGEMENT),
    case("request delete other city", "DELETE", "/api/requests/{req_b}/", MANAGEMENT),
    # cash
    # A master reads the cash rows of their own requests, and nothing else of the cash book.
    case("transactions list", "GET", "/api/transactions/", OFFICE | {"master"}),
    case("transaction of the master's own request", "GET", "/api/transactions/{tx_own_request}", OFFICE | {"master"}),
    case("transaction of another master's request", "GET", "/api/transactions/{tx_other_master}", OFFICE),
    case("transaction own city", "GET", "/api/transactions/{tx_a}", OFFICE),
    case("transaction other city", "GET", "/api/transactions/{tx_b}", MANAGEMENT),
    case("transaction create own city", "POST", "/api/transactions/", OFFICE, tx_body("city_a")),
    case("transaction create other city", "POST", "/api/transactions/", MANAGEMENT, tx_body("city_b")),
    case("transaction update own city", "PUT", "/api/transactions/{tx_a}", OFFICE,
         lambda ids: {"amount": 120, "notes": "правка"}),
    case("transaction update other city", "PUT", "/api/transactions/{tx_b}", MANAGEMENT,
         lambda ids: {"amount": 120}),
    case("transaction delete own city", "DELETE", "/api/transactions/{tx_a}", OFFICE),
    case("transaction delete other city", "DELETE", "/api/transactions/{tx_b}", MANAGEMENT),
    case("balance", "GET", "/api/transactions/balance/", OFFICE | {"master"}),
    # people
    case("masters list", "GET", "/api/users/masters/", ALL),
    case("masters list (requests path)", "GET", "/api/requests/masters/", ALL),
    case("master own city", "GET", "/api/users/masters/{master_a}", OFFICE | {"master"}),
    case("master other city", "GET", "/api/users/masters/{master_b}", MANAGEMENT),
    case("master create own city", "POST", "/api/users/masters/", OFFICE, master_body("city_a")),
    case("master create other city", "POST", "/api/users/masters/", MANAGEMENT, master_body("city_b")),
    case("master update own city", "PUT", "/api/users/masters/{master_a}", OFFICE,
         lambda ids: {"notes": "обновлено"}),
    case("master update other city", "PUT", "/api/users/masters/{master_b}", MANAGEMENT,
         lambda ids: {"notes": "обновлено"}),
    case("master delete", "DELETE", "/api/users/masters/{master_free}", ADMIN),
    case("employees list", "GET", "/api/users/employees/", MANAGEMENT),
    case("employee", "GET", "/api/users/employees/{employee}", MANAGEMENT),
    case("employee create", "POST", "/api/users/employees/", MANAGEMENT,
         lambda ids: {"name": "Сотрудник", "role_id": ids["role_callcentr"], "login": "emp_new",
                      "password": "Sekret-Pine-71", "status": "active", "city_id": ids["city_a"], "notes": ""}),
    case("employee update", "PUT", "/api/users/employees/{employee}", MANAGEMENT, lambda ids: {"notes": "x"}),
    case("employee's Mango extension", "PUT", "/api/users/employees/{employee}", MANAGEMENT,
         lambda ids: {"mango_extension": "301"}),
    case("employee delete", "DELETE", "/api/users/employees/{employee}", ADMIN),
    case("administrators list", "GET", "/api/users/administrators/", ADMIN),
    case("administrator", "GET", "/api/users/administrators/{other_admin}", ADMIN),
    case("administrator create", "POST", "/api/users/administrators/", ADMIN,
         lambda ids: {"name": "Админ", "login": "adm_new", "password": "Sekret-Pine-72"}),
    case("administrator update", "PUT", "/api/users/administrators/{other_admin}", ADMIN,
         lambda ids: {"notes": "x"}),
    case("administrator delete", "DELETE", "/api/users/administrators/{other_admin}", ADMIN),
    # directories: everyone reads, management writes, admin deletes
    *[case(f"{name} list", "GET", path, ALL) for name, path in [
        ("cities", "/api/cities"), ("cities (users path)", "/api/users/cities/"),
        ("cities (transactions path)", "/api/transactions/cities/"), ("roles", "/api/roles"),
        ("roles (users path)", "/api/users/roles/"), ("request types", "/api/request-types"),
        ("request types (requests path)", "/api/requests/request-types/"), ("directions", "/api/directions"),
        ("directions (requests path)", "/api/requests/directions/"), ("transaction types", "/api/transaction-types"),
        ("transaction types (transactions path)", "/api/transactions/transaction-types/"),
        ("campaigns", "/api/advertising-campaigns"),
        ("campaigns (requests path)", "/api/requests/advertising-campaigns/"),
    ]],
    case("city read", "GET", "/api/cities/{city_a}", ALL),
    case("city create", "POST", "/api/cities", MANAGEMENT, lambda ids: {"name": "Новгород"}),
    case("city update", "PUT", "/api/cities/{spare_city}", MANAGEMENT, lambda ids: {"name": "Псков"}),
    case("city delete", "DELETE", "/api/cities/{spare_city}", ADMIN),
    case("role read", "GET", "/api/roles/{spare_role}", ALL),
    case("role create", "POST", "/api/roles", MANAGEMENT, lambda ids: {"name": "практикант"}),
    case("role update", "PUT", "/api/roles/{spare_role}", MANAGEMENT, lambda ids: {"name": "ученик"}),
    case("role delete", "DELETE", "/api/roles/{spare_role}", ADMIN),
    case("request type read", "GET", "/api/request-types/{spare_request_type}", ALL),
    case("request type update", "PUT", "/api/request-types/{spare_request_type}", MANAGEMENT,
         lambda ids: {"name": "Гарантийный"}),
    case("request type delete", "DELETE", "/api/request-types/{spare_request_type}", ADMIN),
    case("transaction type read", "GET", "/api/transaction-types/{spare_transaction_type}", ALL),
    case("transaction type update", "PUT", "/api/transaction-types/{spare_transaction_type}", MANAGEMENT,
         lambda ids: {"name": "Аренда офиса"}),
    case("transaction type delete", "DELETE", "/api/transaction-types/{spare_transaction_type}", ADMIN),
    case("direction read", "GET", "/api/directions/{direction}", ALL),
    case("direction create", "POST", "/api/directions", MANAGEMENT, lambda ids: {"name": "Окна"}),
    case("direction update", "PUT", "/api/directions/{direction}", MANAGEMENT, lambda ids: {"name": "Двери"}),
    case("direction delete", "DELETE", "/api/directions/{direction}", ADMIN),
    case("request type create", "POST", "/api/request-types", MANAGEMENT, lambda ids: {"name": "Выезд"}),
    case("transaction type create", "POST", "/api/transaction-types", MANAGEMENT, lambda ids: {"name": "Налоги"}),
    case("campaign read", "GET", "/api/requests/advertising-campaigns/{campaign_a}/", ALL),
    case("campaign create", "POST", "/api/requests/advertising-campaigns/", MANAGEMENT,
         lambda ids: {"city_id": ids["city_a"], "name": "Яндекс", "phone_number": "+7 (900) 000-00-09"}),
    case("campaign update", "PUT", "/api/requests/advertising-campaigns/{campaign_a}/", MANAGEMENT,
         lambda ids: {"name": "Авито А2"}),
    case("campaign delete", "DELETE", "/api/advertising-campaigns/{campaign_a}", MANAGEMENT),
    case("campaign read (short path)", "GET", "/api/advertising-campaigns/{campaign_a}", ALL),
    case("campaign create (short path)", "POST", "/api/advertising-campaigns", MANAGEMENT,
         lambda ids: {"city_id": ids["city_a"], "name": "2ГИС", "phone_number": "+7 (900) 000-00-08"}),
    case("campaign update (short path)", "PUT", "/api/advertising-campaigns/{campaign_a}", MANAGEMENT,
         lambda ids: {"is_active": False}),
    case("campaign delete (SPA path)", "DELETE", "/api/requests/advertising-campaigns/{campaign_a}/", MANAGEMENT),
    # campaign spend: management and the avitolog, every city
    *[case(f"campaign spend {name}", method, path, MANAGEMENT | {"avitolog"}, body) for name, method, path, body in [
        ("list", "GET", "/api/advertising-campaigns/{spend_campaign}/spend", None),
        ("create", "POST", "/api/advertising-campaigns/{spend_campaign}/spend",
         lambda ids: {"month": "2026-02", "amount": "2800.00"}),
        ("read", "GET", "/api/advertising-campaigns/{spend_campaign}/spend/{spend_a}", None),
        ("update", "PUT", "/api/advertising-campaigns/{spend_campaign}/spend/{spend_a}",
         lambda ids: {"amount": 3000, "comment": "счёт №2"}),
        ("delete", "DELETE", "/api/advertising-campaigns/{spend_campaign}/spend/{spend_a}", None),
    ]],
    # reports
    *[case(f"report {name}", "GET", f"/api/reports/{name}{REPORT_QUERY}", OFFICE)
      for name in ("dashboard", "cities", "masters", "advertising", "cash")],
    case("report callcenter", "GET", f"/api/reports/callcenter{REPORT_QUERY}", OFFICE | {"callcentr"}),
    *[case(f"report {name} other city", "GET", f"/api/reports/{name}{REPORT_QUERY}&city_id={{city_b}}",
           MANAGEMENT)
      for name in ("dashboard", "cities", "masters", "advertising", "cash")],
    case("report roi", "GET", f"/api/reports/roi{REPORT_QUERY}", OFFICE | {"avitolog"}),
    case("report roi other city", "GET", f"/api/reports/roi{REPORT_QUERY}&city_id={{city_b}}&group=city",
         MANAGEMENT | {"avitolog"}),
    case("report callcenter other city", "GET", f"/api/reports/callcenter{REPORT_QUERY}&city_id={{city_b}}",
         MANAGEMENT | {"callcentr"}),
    # jobs
    case("job of another user", "GET", "/api/jobs/{job}", MANAGEMENT),
    # telephony: calls are seen like requests by the office and the call centre; the inbox by admins
    case("calls list", "GET", "/api/calls", OFFICE | {"callcentr"}),
    case("call own city", "GET", "/api/calls/{call_a}", OFFICE | {"callcentr"}),
    case("call other city", "GET", "/api/calls/{call_b}", MANAGEMENT | {"callcentr"}),
    case("request calls own city", "GET", "/api/requests/{req_own}/calls", OFFICE | {"callcentr"}),
    case("request calls other city", "GET", "/api/requests/{req_b}/calls", MANAGEMENT | {"callcentr"}),
    case("failed inbox events", "GET", "/api/webhook/mango/events?status=failed", ADMIN),
    # the callback queue: the call centre and the office (a director: their city); click-to-call likewise
    case("callbacks list", "GET", "/api/callbacks", OFFICE | {"callcentr"}),
    case("callback claim own city", "POST", "/api/callbacks/{callback_a}/claim", OFFICE | {"callcentr"}),
    case("callback claim other city", "POST", "/api/callbacks/{callback_b}/claim", MANAGEMENT | {"callcentr"}),
    case("callback close own city", "POST", "/api/callbacks/{callback_a}/close", OFFICE | {"callcentr"},
         lambda ids: {"outcome": "reached", "request_id": ids["req_own"]}),
    case("callback close other city", "POST", "/api/callbacks/{callback_b}/close", MANAGEMENT | {"callcentr"},
         lambda ids: {"outcome": "not_needed"}),
    case("click-to-call request own city", "POST", "/api/calls/callback", OFFICE | {"callcentr"},
         lambda ids: {"request_id": ids["req_own"]}),
    case("click-to-call request other city", "POST", "/api/calls/callback", MANAGEMENT | {"callcentr"},
         lambda ids: {"request_id": ids["req_b"]}),
    case("click-to-call callback other city", "POST", "/api/calls/callback", MANAGEMENT | {"callcentr"},
         lambda ids: {"callback_id": ids["callback_b"]}),
    case("click-to-call phone", "POST", "/api/calls/callback", OFFICE | {"callcentr"},
         lambda ids: {"phone": "+7 999 000-00-01"}),
    # operations: alerts and database maintenance are for administrators
    case("alerts list", "GET", "/api/alerts?status=firing", ADMIN),
    case("alert acknowledge", "POST", "/api/alerts/{alert}/acknowledge", ADMIN),
    case("alert rules", "GET", "/api/alerts/rules", ADMIN),
    case("alert silences", "GET", "/api/alerts/silences", ADMIN),
    case("alert silence create", "POST", "/api/alerts/silences", ADMIN,
         lambda ids: {"rule": "host_cpu", "minutes": 30, "reason": "нагрузочный тест"}),
    case("alert silence delete", "DELETE", "/api/alerts/silences/{silenced_rule}", ADMIN),
    case("maintenance reports", "GET", "/api/maintenance/reports", ADMIN),
    case("maintenance report", "GET", "/api/maintenance/reports/{maintenance_task}", ADMIN),
    case("legacy import state", "GET", "/api/admin/import-legacy", ADMIN),
    # recordings: the mailbox and the inbox for management; a request's recordings like the request
    case("recordings list", "GET", "/api/recordings/?status=unmatched", MANAGEMENT),
    case("recordings import status", "GET", "/api/recordings/status", MANAGEMENT),
    case("recording link", "POST", "/api/recordings/{recording}/link", MANAGEMENT,
         lambda ids: {"request_id": ids["req_other_master"]}),
    case("request recordings own", "GET", "/api/requests/{req_own}/recordings", ALL),
    case("request recordings other master", "GET", "/api/requests/{req_other_master}/recordings", ALL - {"master"}),
    case("request recordings other city", "GET", "/api/requests/{req_b}/recordings", ALL - {"director", "master"}),
    # Telegram: a master links their own chat (only ever their own: the route names no user)
    case("telegram link status", "GET", "/api/users/me/telegram-link", {"admin", "master"}),
    case("telegram link code", "POST", "/api/users/me/telegram-link", {"admin", "master"}),
    case("telegram unlink", "DELETE", "/api/users/me/telegram-link", {"admin", "master"}),
]

# Routes checked elsewhere: public ones, those whose effect leaves the test transaction, and the
# multipart uploads and file serving, whose role × own/other owner matrix is in tests/test_files_*.py.
# Changing one's own password (every role, only one's own account) is in tests/test_sessions.py.
NOT_IN_MATRIX = {
    ("POST", "/api/auth/login"), ("POST", "/api/auth/logout"), ("POST", "/api/auth/password"), ("GET", "/api/health"),
    ("GET", "/api/health/ready"), ("POST", "/api/jobs/ping"),
    ("POST", "/api/requests/<int:request_id>/upload-bso"),
    ("POST", "/api/requests/<int:request_id>/upload-expense"),
    ("POST", "/api/requests/<int:request_id>/upload-recording"),
    ("POST", "/api/transactions/<int:transaction_id>/upload-file"),
    ("POST", "/api/files"),
    ("GET", "/api/files/<int:file_id>"),
    ("GET", "/api/secure-files/view/<path:relative_path>"),
    ("GET", "/api/secure-files/download/<path:relative_path>"),
    # A replay enqueues work outside the test transaction (tests/test_telephony_batch.py). Mango's
    # webhooks (WEBHOOK_PREFIXES) are authenticated by signature and source address instead of a
    # session (tests/test_telephony_webhook.py).
    ("POST", "/api/webhook/mango/events/<int:event_id>/replay"),
    # Enqueues work on the heavy queue outside the test transaction (tests/test_maintenance.py).
    ("POST", "/api/maintenance/<name>/run"),
    # Enqueues the import of the old backend outside the test transaction (tests/test_legacy_import.py).
    ("POST", "/api/admin/import-legacy"),
    # Enqueues the mailbox import outside the test transaction; serves bytes the world has not got
    # (roles of both in tests/test_recordings_api.py).
    ("POST", "/api/recordings/download"),
    ("GET", "/api/recordings/<int:recording_id>/audio"),
}
WEBHOOK_PREFIXES = ("/api/webhook", "/api/mango/webhook", "/api/v2/mango/webhook")


def _token_for(app, user: User) -> str:
    with app.app_context():
        return issue_token(user)


def _call(client, method, path, token, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.open(path, method=method, json=body, headers=headers)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("spec", CASES, ids=lambda c: c.name)
def test_matrix(app, client, world, spec, role):
    ids = world.ids()
    body = spec.body(ids) if spec.body else None
    path = spec.path.format(**ids)
    response = _call(client, spec.method, path, _token_for(app, world.users[role]), body)
    if role in spec.allowed:
        assert 200 <= response.status_code < 300, (role, spec.name, response.status_code, response.json)
    else:
        assert response.status_code in (403, 404), (role, spec.name, response.status_code, response.json)
        assert response.json["detail"]


@pytest.mark.parametrize("spec", CASES, ids=lambda c: c.name)
def test_anonymous_is_refused(client, world, spec):
    body = spec.body(world.ids()) if spec.body else None
    response = _call(client, spec.method, spec.path.format(**world.ids()), None, body)
    assert response.status_code == 401, (spec.name, response.status_code)


def test_every_route_is_in_the_matrix(app):
    covered = {(c.method, re.sub(r"\{[^}]+\}", "<id>", c.path.split("?")[0]).rstrip("/")) for c in CASES}
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule.startswith(("/api/docs", "/api/openapi")):
            continue
        path = re.sub(r"<[^>]+>", "<id>", rule.rule).rstrip("/")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (method, rule.rule) in NOT_IN_MATRIX or (method, path) in covered or method == "PATCH":
                continue
            if method == "POST" and rule.rule.startswith(WEBHOOK_PREFIXES):
                continue
            missing.append(f"{method} {rule.rule}")
    assert missing == []


def test_scoped_lists_hold_only_what_the_role_may_see(app, client, world):
    def ids_seen(role, path):
        response = _call(client, "GET", path, _token_for(app, world.users[role]))
        assert response.status_code == 200
        return {row["id"] for row in response.json}

    everything = {world.req_own, world.req_same_city_other_master, world.req_b}
    assert ids_seen("master", "/api/requests/") == {world.req_own}
    assert ids_seen("director", "/api/requests/") == {world.req_own, world.req_same_city_other_master}
    for role in ("admin", "manager", "callcentr", "avitolog"):
        assert ids_seen(role, "/api/requests/") >= everything
    assert ids_seen("director", "/api/transactions/") == {world.tx_a, world.tx_own_request, world.tx_other_master}
    assert ids_seen("master", "/api/transactions/") == {world.tx_own_request}
    assert ids_seen("master", "/api/users/masters/") == {world.users["master"].id}
    assert ids_seen("director", "/api/callbacks") == {world.callback_a}
    for role in ("admin", "manager", "callcentr"):
        assert ids_seen(role, "/api/callbacks") == {world.callback_a, world.callback_b}
    directors_masters = ids_seen("director", "/api/users/masters/")
    assert world.master_b.id not in directors_masters and world.users["master"].id in directors_masters
