"""Daily rollups of requests and of the cash book, kept by triggers (models/rollups.py), and an index
for a master's last activity.

Reports over long ranges read the rollups instead of every request: at 1,000,000 requests a 365-day
report aggregated a million index entries (300-550 ms on the benchmark machine). The rollups are
filled from the tables here, with the request days in BUSINESS_TZ as configured when this runs;
`flask --app api rebuild-rollups` recomputes them (after a change of BUSINESS_TZ, reports read the
requests table until then).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models import rollups

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_rollups",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("time_zone", sa.Text(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_report_rollups_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_rollups")),
    )
    op.create_table(
        "request_day_stats",
        sa.Column("dimension", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("city_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("status", sa.String(length=50), nullable=False),
        sa.Column("key_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_text", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("result", sa.Numeric(16, 2), nullable=False),
        sa.Column("handover", sa.Numeric(16, 2), nullable=False),
        sa.Column("net", sa.Numeric(16, 2), nullable=False),
        sa.PrimaryKeyConstraint("dimension", "day", "city_id", "status", "key_id", "key_text",
                                name=op.f("pk_request_day_stats")),
    )
    op.create_index("ix_request_day_stats_empty", "request_day_stats", ["dimension"],
                    postgresql_where=sa.text("requests = 0"))
    op.create_table(
        "transaction_day_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("city_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("transaction_type_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("income", sa.Numeric(16, 2), nullable=False),
        sa.Column("expense", sa.Numeric(16, 2), nullable=False),
        sa.PrimaryKeyConstraint("day", "city_id", "transaction_type_id", name=op.f("pk_transaction_day_stats")),
    )
    op.create_index("ix_transaction_day_stats_empty", "transaction_day_stats", ["day"],
                    postgresql_where=sa.text("transactions = 0"))
    op.create_index("ix_requests_master_id_updated_at", "requests", ["master_id", sa.text("updated_at DESC")],
                    postgresql_include=["created_at", "city_id"])
    for statement in rollups.install_sql():
        op.execute(statement)
    rollups.rebuild(op.get_bind())


def downgrade() -> None:
    for statement in rollups.uninstall_sql():
        op.execute(statement)
    op.drop_index("ix_requests_master_id_updated_at", table_name="requests")
    op.drop_index("ix_transaction_day_stats_empty", table_name="transaction_day_stats")
    op.drop_table("transaction_day_stats")
    op.drop_index("ix_request_day_stats_empty", table_name="request_day_stats")
    op.drop_table("request_day_stats")
    op.drop_table("report_rollups")
