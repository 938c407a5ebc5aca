"""The callback queue: one open item per number that called and was not answered."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base, created_ts, updated_ts
from models.core.enums import sql_in

CALLBACK_STATUSES = ("open", "done", "expired")
# Closed by the calls themselves: the number called again and was answered, or a callback was answered.
AUTO_OUTCOMES = ("answered_inbound", "called_back")
# Closed by an operator.
MANUAL_OUTCOMES = ("reached", "request_created", "not_needed", "wrong_number", "unreachable")
OUTCOMES = AUTO_OUTCOMES + MANUAL_OUTCOMES


class Callback(Base):
    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(CALLBACK_STATUSES)})", name="status"),
        CheckConstraint(f"outcome IS NULL OR outcome IN ({sql_in(OUTCOMES)})", name="outcome"),
        # One item per number while open: a later missed call adds to it.
        Index("uq_callbacks_open_phone", "phone", unique=True, postgresql_where=text("status = 'open'")),
        Index("ix_callbacks_status_due_at", "status", "due_at"),
        Index("ix_callbacks_phone", "phone"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), server_default="open", default="open")
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("advertising_campaigns.id", ondelete="SET NULL"))
    city_id: Mapped[int | None] = mapped_column(ForeignKey("cities.id", ondelete="SET NULL"), index=True)
    line_number: Mapped[str | None] = mapped_column(String(20))
    missed_calls: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    first_missed_at: Mapped[datetime]
    last_missed_at: Mapped[datetime]
    due_at: Mapped[datetime]
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    claimed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    outcome: Mapped[str | None] = mapped_column(String(30))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="SET NULL"), index=True)
    closing_call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]


class CallbackCall(Base):
    """A missed call counted in an item (once: the call is the key)."""

    __tablename__ = "callback_calls"

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"), index=True)
