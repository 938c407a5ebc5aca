"""Indexes for a city's and a master's request list, newest first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("city_id", "master_id"):
        op.create_index(f"ix_requests_{column}_created_at", "requests",
                        [column, sa.literal_column("created_at DESC"), sa.literal_column("id DESC")], unique=False)


def downgrade() -> None:
    for column in ("city_id", "master_id"):
        op.drop_index(f"ix_requests_{column}_created_at", table_name="requests")
