"""Requests (заявки) and their history."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from models.core.base import Base, created_ts, intpk, money, updated_ts
from models.core.business_time import local_day_sql
from models.core.enums import REQUEST_STATUSES, STATUS_NEW, sql_in
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType
from models.people.tables import User
from models.requests.money import entered_amount


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(REQUEST_STATUSES)})", name="status"),
        CheckConstraint("version > 0", name="version_positive"),
        # Entered amounts are never negative (the net and the handover may be: a loss the office records).
        CheckConstraint("result >= 0", name="result_not_negative"),
        CheckConstraint("expenses >= 0", name="expenses_not_negative"),
        # Lists are ordered newest first with the id as tie-break: these indexes give that order,
        # so a page is read straight from the index instead of sorting every matching row.
        Index("ix_requests_created_at", text("created_at DESC"), text("id DESC")),
        Index("ix_requests_city_id_status_created_at", "city_id", "status", text("created_at DESC"), text("id DESC")),
        Index("ix_requests_master_id_status", "master_id", "status"),
        # A city's or a master's list, newest first, without walking other cities' rows.
        Index("ix_requests_city_id_created_at", "city_id", text("created_at DESC"), text("id DESC")),
        Index("ix_requests_master_id_created_at", "master_id", text("created_at DESC"), text("id DESC")),
        Index("ix_requests_client_phone_created_at", "client_phone", text("created_at DESC")),
        # The call-centre report counts requests per business-local day and status: read from here,
        # the day is not computed again for every row (built for BUSINESS_TZ at migration time).
        Index("ix_requests_local_day_status", text(local_day_sql()), "status", postgresql_include=["created_at"]),
        # Reports over a date range read the columns they aggregate from here (index-only scans).
        Index("ix_requests_created_at_report", "created_at",
              postgresql_include=["city_id", "status", "master_id", "advertising_campaign_id", "result",
                                  "master_handover", "net_amount", "call_center_name"]),
        # A master's last activity (masters report): their latest update first, with what filters it.
        Index("ix_requests_master_id_updated_at", "master_id", text("updated_at DESC"),
              postgresql_include=["created_at", "city_id"]),
    )

    id: Mapped[intpk]
    advertising_campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("advertising_campaigns.id", ondelete="SET NULL"), index=True
    )
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="RESTRICT"), index=True)
    request_type_id: Mapped[int] = mapped_column(
        ForeignKey("request_types.id", ondelete="RESTRICT"), index=True
    )
    client_phone: Mapped[str] = mapped_column(String(20))  # normalised digits
    client_phone_raw: Mapped[str | None] = mapped_column(String(40))  # as typed
    client_name: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(Text)
    meeting_date: Mapped[datetime | None]
    direction_id: Mapped[int | None] = mapped_column(
        ForeignKey("directions.id", ondelete="SET NULL"), index=True
    )
    problem: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(50), server_default=STATUS_NEW, default=STATUS_NEW, index=True)
    master_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    master_notes: Mapped[str | None] = mapped_column(Text)
    result: Mapped[money | None]
    expenses: Mapped[money] = mapped_column(server_default=text("0"), default=Decimal("0"))
    net_amount: Mapped[money] = mapped_column(server_default=text("0"), default=Decimal("0"))
    master_handover: Mapped[money] = mapped_column(server_default=text("0"), default=Decimal("0"))
    ats_number: Mapped[str | None] = mapped_column(String(50))
    call_center_name: Mapped[str | None] = mapped_column(String(200))
    call_center_notes: Mapped[str | None] = mapped_column(Text)
    avito_chat_id: Mapped[str | None] = mapped_column(String(100))
    # When it last entered Готово: the date of its income transaction.
    completed_at: Mapped[datetime | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"), default=1)
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    __mapper_args__ = {"version_id_col": version}

    @validates("result", "expenses")
    def _entered_amount(self, name: str, value):
        """Whatever path sets an amount (API, task, import, seed), it is one a person could enter."""
        amount = entered_amount(name, value)
        return Decimal("0.00") if amount is None and name == "expenses" else amount

    # Loaded on access: API reads use lean joined selects; writes touch the row alone.
    city: Mapped[City] = relationship()
    request_type: Mapped[RequestType] = relationship()
    direction: Mapped[Direction | None] = relationship()
    advertising_campaign: Mapped[AdvertisingCampaign | None] = relationship()
    master: Mapped[User | None] = relationship(foreign_keys=[master_id])
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])


class RequestEvent(Base):
    """Append-only history of a request. No foreign key to requests on purpose: the history of a
    deleted request (who deleted it, what it held) outlives it."""

    __tablename__ = "request_events"
    __table_args__ = (Index("ix_request_events_request_id_id", "request_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    request_id: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(20))  # created, updated, deleted
    field: Mapped[str | None] = mapped_column(String(50))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20), server_default="api", default="api")  # api, mango, system
    created_at: Mapped[created_ts]
