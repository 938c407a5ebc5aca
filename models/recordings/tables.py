"""Call recordings imported from the mailbox or the Mango API, and the mailbox import state."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base, created_ts, updated_ts
from models.core.enums import MATCH_STATUSES, sql_in


class Recording(Base):
    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(f"match_status IN ({sql_in(MATCH_STATUSES)})", name="match_status"),
        CheckConstraint("source IN ('imap', 'mango', 'upload')", name="source"),
        Index("ix_recordings_unmatched_call_time", "call_time", postgresql_where=text("match_status <> 'matched'")),
        Index("ix_recordings_from_phone_call_time", "from_phone", "call_time"),
        Index("ix_recordings_to_phone_call_time", "to_phone", "call_time"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(10))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    storage_path: Mapped[str] = mapped_column(String(500), unique=True)
    original_name: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    mime_type: Mapped[str | None] = mapped_column(String(100))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    call_time: Mapped[datetime | None]
    from_phone: Mapped[str | None] = mapped_column(String(20))
    to_phone: Mapped[str | None] = mapped_column(String(20))
    message_id: Mapped[str | None] = mapped_column(String(255))
    mango_recording_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    match_status: Mapped[str] = mapped_column(String(20), server_default="unmatched", default="unmatched")
    match_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    matched_at: Mapped[datetime | None]
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="SET NULL"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[created_ts]


class MailboxState(Base):
    """Where the incremental IMAP import stopped: per mailbox and folder, UIDVALIDITY and last UID."""

    __tablename__ = "mailbox_states"
    __table_args__ = (UniqueConstraint("mailbox", "folder"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), default=0)
    last_run_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[updated_ts]
