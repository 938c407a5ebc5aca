"""What the import of the old backend remembers: old row -> new row, and the old row's fingerprint."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base


class LegacyMap(Base):
    """One old row (old table, old id): the new row's id, NULL when refused (`refused` says why).

    Files are keyed by their path: old_table `media`, old_id a 63-bit hash of the normalised path."""

    __tablename__ = "legacy_map"
    __table_args__ = (Index("ix_legacy_map_old_table_new_id", "old_table", "new_id"),)

    old_table: Mapped[str] = mapped_column(String(40), primary_key=True)
    old_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    new_id: Mapped[int | None] = mapped_column(BigInteger)
    fingerprint: Mapped[str] = mapped_column(String(64))
    refused: Mapped[str | None] = mapped_column(Text)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
