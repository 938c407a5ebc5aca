"""Requests by business-local day and status, for the call-centre report's days.

The day is computed in BUSINESS_TZ as configured when this migration runs; after a change of
BUSINESS_TZ, run `flask --app api downgrade 0004` and `flask --app api migrate` to rebuild it (the
reports stay correct without it, only slower).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

from settings import settings

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def local_day_sql(column: str = "created_at") -> str:
    """`column` as a BUSINESS_TZ date, the zone a literal: models.core.business_time.local_day_sql as of this
    revision, frozen here so that editing that module does not change this migration."""
    zone = ZoneInfo(settings.BUSINESS_TZ).key
    if not all(ch.isalnum() or ch in "/_+-" for ch in zone):
        raise ValueError(f"unexpected time zone name {zone!r}")
    return f"((timezone('{zone}', {column}))::date)"


def upgrade() -> None:
    op.create_index("ix_requests_local_day_status", "requests", [sa.text(local_day_sql()), "status"],
                    unique=False, postgresql_include=["created_at"])
    op.execute("ANALYZE requests")  # statistics on the new expression, so plans use it at once


def downgrade() -> None:
    op.drop_index("ix_requests_local_day_status", table_name="requests")
