"""Operational state users look at: background jobs and alerts."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base, created_ts
from models.core.enums import ALERT_STATUSES, JOB_STATUSES, sql_in


class Job(Base):
    """Heavy work accepted with 202: what it is, where it stands, what it produced."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(JOB_STATUSES)})", name="status"),
        Index("ix_jobs_created_at", text("created_at DESC")),
        Index("ix_jobs_kind_status", "kind", "status"),
        # result/callback finds the job of a call placed from leadline by its Mango command id.
        Index("ix_jobs_mango_command_id", text("(params->>'command_id')"),
              postgresql_where=text("kind = 'calls.callback'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), server_default="queued", default="queued")
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_ts]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(ALERT_STATUSES)})", name="status"),
        CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity"),
        # One firing alert per rule at a time.
        Index("uq_alerts_firing_rule", "rule", unique=True, postgresql_where=text("status = 'firing'")),
        Index("ix_alerts_fired_at", text("fired_at DESC")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), server_default="firing", default="firing")
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None]
    fired_at: Mapped[created_ts]
    resolved_at: Mapped[datetime | None]
    last_notified_at: Mapped[datetime | None]
    notifications: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AlertSilence(Base):
    """A rule kept quiet until a moment: it is still evaluated and stored, but nothing is sent."""

    __tablename__ = "alert_silences"

    rule: Mapped[str] = mapped_column(String(50), primary_key=True)
    until: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_ts]
