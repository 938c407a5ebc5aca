"""Mango Office: the durable inbox of webhook deliveries and the calls folded from them."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.core.base import Base, created_ts, updated_ts
from models.core.enums import CALL_DIRECTIONS, INBOX_STATUSES, sql_in


class MangoEvent(Base):
    __tablename__ = "mango_events"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(INBOX_STATUSES)})", name="status"),
        # The sweeper looks for rows still pending after a while.
        Index("ix_mango_events_pending_received_at", "received_at", postgresql_where=text("status = 'pending'")),
        Index("ix_mango_events_entry_id", "entry_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    event_type: Mapped[str] = mapped_column(String(50))
    entry_id: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    raw_body: Mapped[str | None] = mapped_column(Text)  # kept when the JSON is malformed
    status: Mapped[str] = mapped_column(String(20), server_default="pending", default="pending")
    received_at: Mapped[created_ts]
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(f"direction IN ({sql_in(CALL_DIRECTIONS)})", name="direction"),
        Index("ix_calls_client_phone_started_at", "client_phone", "started_at"),
        Index("ix_calls_started_at", text("started_at DESC")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(128), unique=True)
    direction: Mapped[str] = mapped_column(String(10), server_default="unknown", default="unknown")
    line_number: Mapped[str | None] = mapped_column(String(20), index=True)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("advertising_campaigns.id", ondelete="SET NULL"), index=True
    )
    client_phone: Mapped[str | None] = mapped_column(String(20))
    operator_extension: Mapped[str | None] = mapped_column(String(20))
    started_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    talk_seconds: Mapped[int | None] = mapped_column(Integer)
    disconnect_reason: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[str | None] = mapped_column(String(50))
    missed: Mapped[bool | None] = mapped_column(Boolean)
    last_seq: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    summary_received: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    legs: Mapped[list[CallLeg]] = relationship(back_populates="call", order_by="CallLeg.seq")


class CallLeg(Base):
    """One Mango `call_id` within a call (an operator leg, a transfer)."""

    __tablename__ = "call_legs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    call_pk: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    call_id: Mapped[str] = mapped_column(String(128), unique=True)
    from_number: Mapped[str | None] = mapped_column(String(20))
    to_number: Mapped[str | None] = mapped_column(String(20))
    extension: Mapped[str | None] = mapped_column(String(20))
    state: Mapped[str | None] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    started_at: Mapped[datetime | None]
    connected_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    disconnect_reason: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[updated_ts]

    call: Mapped[Call] = relationship(back_populates="legs")
