"""Telegram for masters (the outbox, one-time link codes, the bot's update offset) and the daily
digest's one row per day.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telegram_outbox",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("chat_id", sa.String(length=100), nullable=True),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed', 'skipped')", name=op.f("ck_telegram_outbox_status")),
        sa.CheckConstraint("user_id IS NOT NULL OR chat_id IS NOT NULL", name=op.f("ck_telegram_outbox_recipient")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_telegram_outbox_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_outbox")),
    )
    op.create_index("ix_telegram_outbox_due", "telegram_outbox", ["next_attempt_at", "id"],
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_telegram_outbox_pending_request", "telegram_outbox", ["request_id", "id"],
                    postgresql_where=sa.text("status = 'pending' AND request_id IS NOT NULL"))
    op.create_index("ix_telegram_outbox_created_at", "telegram_outbox", ["created_at"])
    op.create_index(op.f("ix_telegram_outbox_user_id"), "telegram_outbox", ["user_id"])

    op.create_table(
        "telegram_link_codes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_telegram_link_codes_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_telegram_link_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_telegram_link_codes_code_hash")),
    )
    op.create_table(
        "telegram_bot_state",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("update_offset", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_telegram_bot_state")),
    )
    op.create_table(
        "digest_runs",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chat_id", sa.String(length=100), nullable=True),
        sa.Column("message_ids", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("figures", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_digest_runs")),
    )


def downgrade() -> None:
    op.drop_table("digest_runs")
    op.drop_table("telegram_bot_state")
    op.drop_table("telegram_link_codes")
    op.drop_index(op.f("ix_telegram_outbox_user_id"), table_name="telegram_outbox")
    op.drop_index("ix_telegram_outbox_created_at", table_name="telegram_outbox")
    op.drop_index("ix_telegram_outbox_pending_request", table_name="telegram_outbox")
    op.drop_index("ix_telegram_outbox_due", table_name="telegram_outbox")
    op.drop_table("telegram_outbox")
