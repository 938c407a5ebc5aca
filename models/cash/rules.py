"""Rules of the city cash book: an operation's sign follows its type, a zero operation is refused.

The database holds the sign rule itself (a trigger of migration 0008 on `transactions`), so that no
path can bypass it; these functions apply the same rule before the write, so that what a caller
holds and answers is what is stored, and a zero amount is refused with a readable message.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from models.core.db import Session
from models.core.errors import Invalid
from models.directories.tables import TransactionType


def is_income_type(type_id: int) -> bool | None:
    """The direction of a transaction type; None when there is no such type."""
    return Session.scalar(select(TransactionType.is_income).where(TransactionType.id == type_id))


def signed(amount: Decimal, is_income: bool) -> Decimal:
    """`amount` with the sign of its type: positive for income, negative for expense."""
    if amount == 0:
        raise Invalid("Сумма не может быть нулевой", code="validation_error",
                      errors={"amount": ["Сумма не может быть нулевой"]})
    return abs(amount) if is_income else -abs(amount)
