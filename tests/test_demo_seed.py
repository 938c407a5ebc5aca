"""The demo seed on a real PostgreSQL: the data it creates holds together, and a second run adds nothing;
`flask --app api seed-demo` gives the demo users a random password, printed once, and refuses to run
in production.

The seed commits, so the module seeds once and empties the tables afterwards. The command's tests
come first and leave the database empty, before that seed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from models.cash.tables import Transaction
from models.core.db import Session
from models.core.enums import (
    DIRECTOR,
    MASTER,
    REQUEST_STATUSES,
    REQUEST_TYPE_FIRST,
    REQUEST_TYPE_REPEAT,
    ROLES,
    STATUS_DONE,
    TRANSACTION_TYPE_EXPENSE,
    TRANSACTION_TYPE_INCOME,
)
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType, Role, TransactionType
from models.people.passwords import verify_password
from models.people.tables import User
from models.requests.tables import Request
from models.seed import demo
from models.seed.demo import seed
from settings import settings
from tests.support import truncate_committed_data

REQUEST_COUNT = 120
PASSWORD = "Seed-Demo-Test-Pass-1"
ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).parent / "flask")
PRINTED_PASSWORD = re.compile(r"^demo users' password \(shown once; every demo login\): (\S+)$", re.MULTILINE)


def seed_demo(**env: str) -> subprocess.CompletedProcess:
    """`flask --app api seed-demo` as a real process on the test database (a few requests only)."""
    return subprocess.run([FLASK, "--app", "api", "seed-demo", "--requests", "5"], cwd=ROOT, env={**os.environ, **env},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def empty_database(database):
    truncate_committed_data()
    yield
    truncate_committed_data()


def demo_user_hash() -> str:
    Session.remove()
    return Session.scalar(select(User.password_hash).where(User.login == "demo_admin"))


def test_seed_demo_prints_a_random_password_that_signs_the_demo_users_in(empty_database):
    passwords = []
    for _run in range(2):
        done = seed_demo()
        assert done.returncode == 0, done.stdout + done.stderr
        [password] = PRINTED_PASSWORD.findall(done.stdout)
        assert verify_password(demo_user_hash(), password)
        again = seed_demo()  # the users exist: no new password, the printed one still signs in
        assert again.returncode == 0 and PRINTED_PASSWORD.search(again.stdout) is None
        assert "passwords are unchanged" in again.stdout
        assert verify_password(demo_user_hash(), password)
        passwords.append(password)
        truncate_committed_data()
    assert passwords[0] != passwords[1] and len(passwords[0]) >= 16
    source = Path(demo.__file__).read_text(encoding="utf-8")
    assert not hasattr(demo, "DEMO_PASSWORD") and "demo12345" not in source


def test_seed_demo_refuses_to_run_in_production(empty_database):
    production = {"APP_ENV": "production", "SECRET_KEY": "q7Vt2LmXe9RzK4pWb8NcY3hJf6GsD1aU5oQi0TnE",
                  "FLOWER_PASSWORD": "Tram-Vokzal-Pero-7", "MANGO_ENABLED": "false", "ADMIN_PASSWORD": ""}
    done = seed_demo(**production)
    assert done.returncode != 0
    assert "seed-demo does not run in production (APP_ENV=production)" in done.stderr
    assert "Traceback" not in done.stderr
    Session.remove()
    assert Session.scalar(select(func.count()).select_from(User)) == 0
    assert Session.scalar(select(func.count()).select_from(City)) == 0


@pytest.fixture(scope="module")
def summary(database):
    """Seed the test database once for the module (committed), empty it afterwards."""
    truncate_committed_data()
    try:
        yield seed(request_count=REQUEST_COUNT, random_seed=1, password=PASSWORD)
    finally:
        truncate_committed_data()


@pytest.fixture
def session(summary):
    yield Session
    Session.rollback()


def _count(model) -> int:
    return Session.scalar(select(func.count()).select_from(model))


def _requests() -> list[Request]:
    return Session.scalars(select(Request)).unique().all()


def _transactions() -> list[Transaction]:
    return Session.scalars(select(Transaction)).unique().all()


def test_summary_matches_what_is_in_the_database(session, summary):
    assert summary["cities"] == 5
    assert summary["roles"] == 0 and summary["request_types"] == 0 and summary["transaction_types"] == 0
    assert summary["requests"] == REQUEST_COUNT
    for model in (City, Direction, AdvertisingCampaign, User, Request, Transaction):
        assert _count(model) == summary[model.__tablename__], model.__tablename__
    assert _count(Role) == len(ROLES)
    assert sorted(session.scalars(select(RequestType.name))) == sorted([REQUEST_TYPE_FIRST, REQUEST_TYPE_REPEAT])
    assert sorted(session.scalars(select(TransactionType.name))) == sorted(
        [TRANSACTION_TYPE_INCOME, TRANSACTION_TYPE_EXPENSE]
    )


def test_every_role_has_users_and_demo_password_works(session):
    users = session.scalars(select(User)).unique().all()
    assert {user.role.name for user in users} == set(ROLES)
    assert len({user.login.lower() for user in users}) == len(users)
    assert len({user.password_hash for user in users}) == 1  # hashed once
    assert verify_password(users[0].password_hash, PASSWORD)

    directors = [user for user in users if user.role.name == DIRECTOR]
    assert any(user.city_id is None for user in directors)
    assert {user.city_id for user in directors if user.city_id} == set(session.scalars(select(City.id)))

    masters = [user for user in users if user.role.name == MASTER]
    assert len(masters) == 15
    statuses = Counter(user.status for user in masters)
    assert statuses["busy"] == 1 and statuses["inactive"] == 1 and statuses["active"] == 13
    for master in masters:
        assert master.city_id and master.full_name and master.birth_date
        assert master.phone == normalize_phone(master.phone_number) and len(master.phone) == 11


def test_campaign_phones_are_normalised_and_unique_among_active(session):
    campaigns = session.scalars(select(AdvertisingCampaign)).unique().all()
    per_city = Counter(campaign.city_id for campaign in campaigns)
    assert len(per_city) == 5 and all(2 <= count <= 3 for count in per_city.values())
    for campaign in campaigns:
        assert campaign.phone_number.startswith("+7 (")
        assert campaign.phone == normalize_phone(campaign.phone_number)
        assert len(campaign.phone) == 11 and campaign.phone.startswith("7")
    active = [campaign.phone for campaign in campaigns if campaign.is_active]
    assert len(active) == len(set(active))


def test_requests_cover_every_status_and_hold_together(session):
    requests = _requests()
    assert {request.status for request in requests} == set(REQUEST_STATUSES)
    now = datetime.now(timezone.utc)
    dispatched = set(REQUEST_STATUSES[REQUEST_STATUSES.index("Ожидает принятия"):]) - {
        "Отказ", "Перезвонить", "ТНО"
    }
    for request in requests:
        assert request.created_at.tzinfo is not None
        assert now - timedelta(days=60) <= request.created_at <= now
        assert len(request.client_phone) == 11 and request.client_phone.startswith("7")
        assert request.client_phone == normalize_phone(request.client_phone_raw)
        assert request.client_name and request.address and request.problem and request.call_center_name
        assert request.created_by is not None
        if request.advertising_campaign is not None:
            assert request.advertising_campaign.city_id == request.city_id
        if request.status in dispatched:
            assert request.master is not None, request.status
            assert request.meeting_date is not None and request.meeting_date > request.created_at
        if request.master is not None:
            assert request.master.role.name == MASTER
            assert request.master.city_id == request.city_id
        if request.status == "Ожидает":
            assert request.meeting_date is not None


def test_repeat_requests_reuse_an_earlier_phone(session):
    requests = sorted(_requests(), key=lambda request: request.created_at)
    types = Counter(request.request_type.name for request in requests)
    assert types[REQUEST_TYPE_FIRST] > types[REQUEST_TYPE_REPEAT] > 0
    seen: set[str] = set()
    for request in requests:
        if request.request_type.name == REQUEST_TYPE_REPEAT:
            assert request.client_phone in seen
        seen.add(request.client_phone)


def test_done_requests_have_their_money_and_one_income(session):
    done = [request for request in _requests() if request.status == STATUS_DONE]
    assert done
    incomes = Counter(session.scalars(select(Transaction.request_id).where(Transaction.request_id.is_not(None))))
    for request in done:
        assert request.result > 0 and 0 <= request.expenses <= request.result * 3 / 10
        assert request.net_amount == request.result - request.expenses
        assert request.master_handover == (request.net_amount * settings.MASTER_SHARE).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
        assert request.completed_at is not None and request.meeting_date <= request.completed_at
        assert incomes[request.id] == 1
        income = session.scalars(select(Transaction).where(Transaction.request_id == request.id)).one()
        assert income.transaction_type.name == TRANSACTION_TYPE_INCOME
        assert income.amount == request.master_handover
        assert income.city_id == request.city_id
    assert set(incomes) == {request.id for request in done}


def test_other_transactions_have_the_sign_of_their_type(session):
    manual = [transaction for transaction in _transactions() if transaction.request_id is None]
    kinds = Counter(transaction.transaction_type.name for transaction in manual)
    assert kinds[TRANSACTION_TYPE_EXPENSE] >= 5 * 8 and kinds[TRANSACTION_TYPE_INCOME] >= 5
    today = datetime.now(timezone.utc).date()
    for transaction in manual:
        if transaction.transaction_type.name == TRANSACTION_TYPE_INCOME:
            assert transaction.amount > 0
        else:
            assert transaction.amount < 0
        assert transaction.payment_reason and transaction.notes
        assert today - timedelta(days=61) <= transaction.specified_date <= today + timedelta(days=1)


def test_a_second_run_duplicates_nothing(session, summary):
    before = {model: _count(model) for model in (City, Direction, AdvertisingCampaign, User, Request, Transaction)}
    again = seed(request_count=REQUEST_COUNT, random_seed=2, password="Another-Demo-Pass-2")
    assert set(again.values()) == {0}
    assert {model: _count(model) for model in before} == before
    users = session.scalars(select(User)).unique().all()
    assert all(verify_password(user.password_hash, PASSWORD) for user in users[:3])  # passwords kept
