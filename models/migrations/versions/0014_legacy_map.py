"""The mapping of the old backend's rows to leadline's: what `flask --app api import-legacy` imported.

One row per old row (old table, old id): the new row's id (NULL when the import refused it, with the
reason), and a fingerprint of the old row as it was imported, so that a second run updates only what
changed and adds what is new, and an interrupted run goes on where it stopped.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legacy_map",
        sa.Column("old_table", sa.String(length=40), nullable=False),
        sa.Column("old_id", sa.BigInteger(), nullable=False),
        sa.Column("new_id", sa.BigInteger(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("refused", sa.Text(), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("old_table", "old_id", name=op.f("pk_legacy_map")),
    )
    op.create_index(op.f("ix_legacy_map_old_table_new_id"), "legacy_map", ["old_table", "new_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_legacy_map_old_table_new_id"), table_name="legacy_map")
    op.drop_table("legacy_map")
