"""Which rows a user may see, as SQL conditions shared by lists, details and reports.

admin, manager: everything. director: their city (every city when their city_id is null).
master: only their own requests, and the cash-book rows of those requests. callcentr, avitolog:
requests of every city.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement, false, select, true

from models.cash.tables import Transaction
from models.core.enums import ADMIN, AVITOLOG, CALLCENTR, DIRECTOR, MANAGER, MASTER
from models.people.tables import User
from models.requests.tables import Request


def city_of(user: User) -> int | None:
    """The one city a user is held to, or None for every city."""
    if user.role_name in (DIRECTOR, MASTER):
        return user.city_id
    return None


def request_scope(user: User) -> tuple[str, int | None]:
    """Which requests `user` sees, as a shape and its value: ("master", user id), ("city", city id),
    ("all", None) or ("none", None)."""
    role = user.role_name
    if role == MASTER:
        return "master", user.id
    if role == DIRECTOR and user.city_id is not None:
        return "city", user.city_id
    if role in (ADMIN, MANAGER, DIRECTOR, CALLCENTR, AVITOLOG):
        return "all", None
    return "none", None


def request_scope_condition(shape: str, value) -> ColumnElement[bool]:
    """The condition of a scope shape; `value` may be a bind parameter (statements built once)."""
    if shape == "master":
        return Request.master_id == value
    if shape == "city":
        return Request.city_id == value
    return true() if shape == "all" else false()


def requests_visible_to(user: User) -> ColumnElement[bool]:
    return request_scope_condition(*request_scope(user))


def transaction_scope(user: User) -> tuple[str, int | None]:
    """Which cash-book rows `user` sees: ("city", city id), ("all", None) or ("none", None)."""
    role = user.role_name
    if role == DIRECTOR and user.city_id is not None:
        return "city", user.city_id
    if role in (ADMIN, MANAGER, DIRECTOR):
        return "all", None
    return "none", None


def city_scope_condition(shape: str, city_id: int | None, city_column) -> ColumnElement[bool]:
    """The condition of an "all", "city" or "none" shape on `city_column` (a table's city, or a
    report rollup's)."""
    if shape == "city":
        return city_column == city_id
    if shape not in ("all", "none"):
        raise ValueError(f"not a city scope: {shape!r}")
    return true() if shape == "all" else false()


def transactions_visible_to(user: User) -> ColumnElement[bool]:
    """The cash-book rows `user` reads: their city's (transaction_scope) or, for a master, the rows
    of their own requests (the automatic incomes)."""
    if user.role_name == MASTER:
        return Transaction.request_id.in_(select(Request.id).where(Request.master_id == user.id))
    return city_scope_condition(*transaction_scope(user), Transaction.city_id)


def may_see_transaction(user: User, transaction: Transaction) -> bool:
    if user.role_name == MASTER:
        return transaction.request_id is not None and transaction.request is not None \
            and transaction.request.master_id == user.id
    shape, city_id = transaction_scope(user)
    return shape == "all" or (shape == "city" and transaction.city_id == city_id)


def city_condition(user: User, column) -> ColumnElement[bool]:
    """`column` (a city_id column) restricted to the user's city, if they are held to one."""
    city = city_of(user)
    return true() if city is None else column == city


def may_see_request(user: User, request: Request) -> bool:
    role = user.role_name
    if role == MASTER:
        return request.master_id == user.id
    if role == DIRECTOR:
        return user.city_id is None or request.city_id == user.city_id
    return role in (ADMIN, MANAGER, CALLCENTR, AVITOLOG)
