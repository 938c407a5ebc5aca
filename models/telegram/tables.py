"""The outbox of Telegram messages, the one-time link codes and the bot's update offset."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base, created_ts, updated_ts
from models.core.enums import sql_in

OUTBOX_STATUSES = ("pending", "sent", "failed", "skipped")


class TelegramOutbox(Base):
    """One message to send, written in the transaction of the change it tells about.

    To a user (a master: their chat is looked up when it is sent, so a master who unlinked gets
    nothing) or to a chat (the bot's replies). `request_id` orders the messages of one request:
    none is sent while an older one of the same request is still pending. It is no foreign key:
    the message that a request was deleted outlives the request."""

    __tablename__ = "telegram_outbox"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(OUTBOX_STATUSES)})", name="status"),
        CheckConstraint("user_id IS NOT NULL OR chat_id IS NOT NULL", name="recipient"),
        Index("ix_telegram_outbox_due", "next_attempt_at", "id", postgresql_where=sql("status = 'pending'")),
        Index("ix_telegram_outbox_pending_request", "request_id", "id",
              postgresql_where=sql("status = 'pending' AND request_id IS NOT NULL")),
        Index("ix_telegram_outbox_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    chat_id: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), server_default="pending", default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default=sql("0"), default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=sql("now()"))
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[created_ts]
    sent_at: Mapped[datetime | None]


class TelegramLinkCode(Base):
    """The one code a user may send the bot to link their chat; only its hash is kept."""

    __tablename__ = "telegram_link_codes"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[created_ts]


class TelegramBotState(Base):
    """Per bot (the number before the token's colon): the next update to ask getUpdates for."""

    __tablename__ = "telegram_bot_state"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_offset: Mapped[int] = mapped_column(BigInteger, server_default=sql("0"), default=0)
    updated_at: Mapped[updated_ts]
