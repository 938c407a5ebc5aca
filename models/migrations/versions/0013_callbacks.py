"""The callback queue of missed callers, and click-to-call: each office user's Mango extension, and the
jobs of placed calls found by their Mango command id.

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("users", sa.Column("mango_extension", sa.String(16), nullable=True))
    op.create_index("uq_users_mango_extension", "users", ["mango_extension"], unique=True,
                    postgresql_where=sa.text("mango_extension IS NOT NULL"))

    op.create_table(
        "callbacks",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("status", sa.String(10), server_default="open", nullable=False),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("advertising_campaigns.id", ondelete="SET NULL")),
        sa.Column("city_id", sa.Integer(), sa.ForeignKey("cities.id", ondelete="SET NULL")),
        sa.Column("line_number", sa.String(20)),
        sa.Column("missed_calls", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("first_missed_at", TS, nullable=False),
        sa.Column("last_missed_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("claimed_by_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("claimed_at", TS),
        sa.Column("closed_at", TS),
        sa.Column("closed_by_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("outcome", sa.String(30)),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("requests.id", ondelete="SET NULL")),
        sa.Column("closing_call_id", sa.BigInteger(), sa.ForeignKey("calls.id", ondelete="SET NULL")),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('open', 'done', 'expired')", name="ck_callbacks_status"),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('answered_inbound', 'called_back', 'reached', 'request_created', "
            "'not_needed', 'wrong_number', 'unreachable')", name="ck_callbacks_outcome"),
    )
    op.create_index("uq_callbacks_open_phone", "callbacks", ["phone"], unique=True,
                    postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_callbacks_status_due_at", "callbacks", ["status", "due_at"])
    op.create_index("ix_callbacks_phone", "callbacks", ["phone"])
    op.create_index("ix_callbacks_city_id", "callbacks", ["city_id"])
    op.create_index("ix_callbacks_request_id", "callbacks", ["request_id"])

    op.create_table(
        "callback_calls",
        sa.Column("call_id", sa.BigInteger(), sa.ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("callback_id", sa.BigInteger(), sa.ForeignKey("callbacks.id", ondelete="CASCADE"),
                  nullable=False),
    )
    op.create_index("ix_callback_calls_callback_id", "callback_calls", ["callback_id"])

    # result/callback finds the job of a placed call by the command id it was sent with.
    op.create_index("ix_jobs_mango_command_id", "jobs", [sa.text("(params->>'command_id')")],
                    postgresql_where=sa.text("kind = 'calls.callback'"))


def downgrade() -> None:
    op.drop_index("ix_jobs_mango_command_id", table_name="jobs")
    op.drop_table("callback_calls")
    op.drop_table("callbacks")
    op.drop_index("uq_users_mango_extension", table_name="users")
    op.drop_column("users", "mango_extension")
