"""Reference lists: cities, roles, request types, directions, transaction types."""
from __future__ import annotations

from sqlalchemy import Boolean, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, intpk


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
