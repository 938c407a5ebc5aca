"""List-order indexes: newest first with the id as tie-break, so pages come straight from the index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {
    # name: (table, new columns, old columns)
    "ix_requests_created_at": ("requests", ["created_at DESC", "id DESC"], ["created_at DESC"]),
    "ix_requests_city_id_status_created_at": (
        "requests", ["city_id", "status", "created_at DESC", "id DESC"], ["city_id", "status", "created_at DESC"]),
    "ix_transactions_city_id_specified_date": (
        "transactions", ["city_id", "specified_date DESC", "id DESC"], ["city_id", "specified_date DESC"]),
    "ix_transactions_specified_date": ("transactions", ["specified_date DESC", "id DESC"], ["specified_date DESC"]),
}


def _columns(names):
    return [sa.literal_column(name) if " " in name else name for name in names]


def upgrade() -> None:
    for name, (table, new, _old) in INDEXES.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, _columns(new), unique=False)


def downgrade() -> None:
    for name, (table, _new, old) in INDEXES.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, _columns(old), unique=False)
