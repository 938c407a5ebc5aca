"""Alerts can be acknowledged by a person and a rule silenced until a moment.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("alerts", sa.Column("acknowledged_by_id", sa.Integer(), nullable=True))
    op.create_foreign_key(op.f("fk_alerts_acknowledged_by_id_users"), "alerts", "users",
                          ["acknowledged_by_id"], ["id"], ondelete="SET NULL")
    op.create_table(
        "alert_silences",
        sa.Column("rule", sa.String(length=50), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], name=op.f("fk_alert_silences_created_by_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("rule", name=op.f("pk_alert_silences")),
    )


def downgrade() -> None:
    op.drop_table("alert_silences")
    op.drop_constraint(op.f("fk_alerts_acknowledged_by_id_users"), "alerts", type_="foreignkey")
    op.drop_column("alerts", "acknowledged_by_id")
    op.drop_column("alerts", "acknowledged_at")
