"""Uploaded documents: quarantined, validated by a worker, then promoted into the media layout."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base, created_ts
from models.core.enums import FILE_KINDS, FILE_STATUSES, sql_in


class File(Base):
    __tablename__ = "files"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(FILE_KINDS)})", name="kind"),
        CheckConstraint(f"status IN ({sql_in(FILE_STATUSES)})", name="status"),
        # At most one owner; none once the owner is deleted (retention removes such files later).
        CheckConstraint("request_id IS NULL OR transaction_id IS NULL", name="one_owner"),
        Index("ix_files_request_id_kind", "request_id", "kind"),
        Index("ix_files_transaction_id_kind", "transaction_id", "kind"),
        Index("ix_files_pending_created_at", "created_at", postgresql_where=text("status = 'pending'")),
        Index("ix_files_sha256", "sha256"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="SET NULL"))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("transactions.id", ondelete="SET NULL"))
    original_name: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    sniffed_type: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), server_default="pending", default="pending")
    reject_reason: Mapped[str | None] = mapped_column(Text)
    quarantine_path: Mapped[str | None] = mapped_column(String(500))
    storage_path: Mapped[str | None] = mapped_column(String(500), unique=True)
    # Replacing a document keeps the old one: it points to its successor.
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"))
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_ts]
    validated_at: Mapped[datetime | None]
    owner_deleted_at: Mapped[datetime | None]
