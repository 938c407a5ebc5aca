"""The city cash book."""
from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.core.base import Base, created_ts, intpk, money, updated_ts
from models.directories.tables import City, TransactionType

if TYPE_CHECKING:  # the cash book knows of requests by name only: requests build on the cash book
    from models.requests.tables import Request


class Transaction(Base):
    """City cash book: income positive, expense negative; balance = Σ amount.

    The sign follows the type's direction (`transaction_types.is_income`) whatever sign was written:
    a trigger of the database sets it on every insert and update (models/cash/rules.py), so no path
    can book an expense as income. A zero amount is refused."""

    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_transactions_city_id_specified_date", "city_id", text("specified_date DESC"), text("id DESC")),
        Index("ix_transactions_specified_date", text("specified_date DESC"), text("id DESC")),
        Index("ix_transactions_created_at", text("created_at DESC")),
        # The cash report reads the amounts of a date range from here (an index-only scan).
        Index("ix_transactions_specified_date_report", "specified_date",
              postgresql_include=["city_id", "transaction_type_id", "amount"]),
        # The income of a completed request exists at most once.
        Index("uq_transactions_request_id", "request_id", unique=True,
              postgresql_where=text("request_id IS NOT NULL")),
    )

    id: Mapped[intpk]
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="RESTRICT"))
    transaction_type_id: Mapped[int] = mapped_column(
        ForeignKey("transaction_types.id", ondelete="RESTRICT"), index=True
    )
    amount: Mapped[money]
    notes: Mapped[str | None] = mapped_column(Text)
    specified_date: Mapped[date] = mapped_column(Date)
    payment_reason: Mapped[str | None] = mapped_column(Text)
    # Deleting the request removes its income row with it.
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    city: Mapped[City] = relationship(lazy="joined")
    transaction_type: Mapped[TransactionType] = relationship(lazy="joined")
    request: Mapped[Request | None] = relationship()
