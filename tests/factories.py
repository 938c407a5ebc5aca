"""Test data, one function per kind of row, with defaults for everything a test does not care about.

Rows are written through models.Session and committed: inside the `db` fixture's transaction that
releases a savepoint and is rolled back after the test; under `committed` it is a real commit, which
the worker sees. Lookups the migrations seed (roles, request types, transaction types) are looked up,
never created.
"""
from __future__ import annotations

import itertools
import os
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from models import AdvertisingCampaign, City, Request, Role, Session, Transaction, User
from models.directories.tables import RequestType, TransactionType
from models.people.passwords import hash_password

TEST_PASSWORD = "correct-horse-42"
_PASSWORD_HASH = hash_password(TEST_PASSWORD)
_serial = itertools.count(1)


def _saved(row):
    Session.add(row)
    Session.commit()
    return row


def seeded_id(model, name: str) -> int:
    """The id of a lookup row the migrations seed, e.g. seeded_id(RequestType, "Впервые")."""
    return Session.scalar(select(model.id).where(model.name == name))


def make_city(name: str | None = None) -> City:
    return _saved(City(name=name or f"Город {next(_serial)}"))


def create_user(role: str, *, login: str | None = None, status: str = "active", city_id: int | None = None,
                full_name: str | None = None) -> User:
    """A user of `role` whose password is TEST_PASSWORD."""
    return _saved(User(
        login=login or f"{role}_{os.urandom(4).hex()}",
        password_hash=_PASSWORD_HASH,
        role=Session.scalar(select(Role).where(Role.name == role)),
        status=status,
        city_id=city_id,
        full_name=full_name or f"Тест {role}",
    ))


def make_campaign(line: str, *, city_id: int | None = None, city_name: str | None = None, name: str | None = None,
                  phone_number: str | None = None) -> AdvertisingCampaign:
    """The active campaign on the tracking line `line` (digits), in a new city unless one is given."""
    city = Session.get(City, city_id) if city_id is not None else make_city(city_name)
    return _saved(AdvertisingCampaign(city_id=city.id, name=name or f"Авито {city.name}",
                                      phone_number=phone_number or line, phone=line))


def make_request(city_id: int | None = None, **columns: Any) -> Request:
    """A request row as given (no rule applied): in progress, of type Впервые, in a new city unless
    one is given."""
    columns.setdefault("request_type_id", seeded_id(RequestType, "Впервые"))
    columns.setdefault("client_phone", "79990000000")
    columns.setdefault("client_name", "Клиент")
    columns.setdefault("status", "В работе")
    return _saved(Request(city_id=city_id if city_id is not None else make_city().id, **columns))


def record_request(fields: dict[str, Any], *, created_by_id: int | None = None) -> Request:
    """A request created through the domain rule, as a route or an import creates one: the phone
    normalised (kept as typed too), the money computed, the history and the income written."""
    from models.requests.rules import apply_changes

    request = Request(created_by_id=created_by_id)
    apply_changes(request, dict(fields), user_id=None)
    Session.commit()
    return request


def make_transaction(city_id: int | None = None, *, type_name: str = "Расход", amount: Decimal | str = "-500",
                     specified_date: date = date(2026, 1, 10), **columns: Any) -> Transaction:
    """A cash-book operation of a seeded type (its sign must follow the type's direction)."""
    columns.setdefault("transaction_type_id", seeded_id(TransactionType, type_name))
    return _saved(Transaction(city_id=city_id if city_id is not None else make_city().id,
                              amount=Decimal(str(amount)), specified_date=specified_date, **columns))
