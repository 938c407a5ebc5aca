"""Reference lists (cities, roles, request types, directions, transaction types) and the advertising
campaigns whose tracking lines bring the calls."""
from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.core.base import Base, created_ts, intpk, updated_ts


class _Lookup:
    id: Mapped[intpk]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r}>"


class City(_Lookup, Base):
    __tablename__ = "cities"
    name: Mapped[str] = mapped_column(String(100), unique=True)


class Role(_Lookup, Base):
    __tablename__ = "roles"
    name: Mapped[str] = mapped_column(String(50), unique=True)


class RequestType(_Lookup, Base):
    __tablename__ = "request_types"
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Direction(_Lookup, Base):
    __tablename__ = "directions"
    name: Mapped[str] = mapped_column(String(50), unique=True)


class TransactionType(_Lookup, Base):
    __tablename__ = "transaction_types"
    name: Mapped[str] = mapped_column(String(50), unique=True)
    # The direction of the type's operations: income (amount > 0) or expense (amount < 0).
    is_income: Mapped[bool] = mapped_column(Boolean, server_default=text("false"), default=False)


class AdvertisingCampaign(Base):
    __tablename__ = "advertising_campaigns"
    __table_args__ = (
        # A tracking line belongs to one active campaign, or calls could not be attributed.
        Index("uq_advertising_campaigns_active_phone", "phone", unique=True, postgresql_where=text("is_active")),
    )

    id: Mapped[intpk]
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone_number: Mapped[str] = mapped_column(String(40))  # as typed, for display
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # normalised, for matching
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"), default=True)
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    city: Mapped[City] = relationship(lazy="joined")
