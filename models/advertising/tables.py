"""Campaign spend: an amount paid for a campaign over a period of days (a month or any range)."""
from __future__ import annotations

from datetime import date

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base, created_ts, intpk, money, updated_ts


class CampaignSpend(Base):
    __tablename__ = "campaign_spend"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("date_from <= date_to", name="period_in_order"),
        # A campaign's periods in order; the ROI report reads the periods that overlap its range.
        Index("ix_campaign_spend_campaign_id_date_from", "campaign_id", "date_from"),
        Index("ix_campaign_spend_date_to", "date_to"),
    )

    id: Mapped[intpk]
    # The API refuses to delete a campaign with spend (as one with requests); CASCADE only keeps a
    # direct delete in the database from failing.
    campaign_id: Mapped[int] = mapped_column(ForeignKey("advertising_campaigns.id", ondelete="CASCADE"))
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)
    amount: Mapped[money]
    comment: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]
