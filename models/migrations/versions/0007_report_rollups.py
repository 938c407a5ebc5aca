"""Daily rollups of requests and of the cash book, kept by triggers (models/reports/rollups.py), and an index
for a master's last activity.

Reports over long ranges read the rollups instead of every request: at 1,000,000 requests a 365-day
report aggregated a million index entries (300-550 ms on the benchmark machine). The rollups are
filled from the tables here, with the request days in BUSINESS_TZ as configured when this runs;
`flask --app api rebuild-rollups` recomputes them (after a change of BUSINESS_TZ, reports read the
requests table until then).

The SQL below is the one models/reports/rollups.py generated when this revision was written, frozen: this
revision installs the same functions and triggers whatever that module becomes (a change of the
rollups' SQL is a new migration).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

from settings import settings

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


# ---- the trigger functions, the triggers and the first fill, as of this revision ----------------

REQUEST_DAY_STATS_APPLY = """
        CREATE FUNCTION request_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'INSERT' THEN

INSERT INTO request_day_stats AS s (dimension, day, city_id, status, key_id, key_text, requests, result, handover, net)

SELECT d.dimension,
       (timezone(zone, c.created_at))::date AS day,
       c.city_id,
       c.status,
       CASE d.dimension WHEN 1 THEN coalesce(c.master_id, 0)
                        WHEN 2 THEN coalesce(c.advertising_campaign_id, 0)
                        WHEN 3 THEN (c.call_center_name IS NULL)::int
                        ELSE 0 END AS key_id,
       CASE WHEN d.dimension = 3 THEN coalesce(c.call_center_name, '') ELSE '' END AS key_text,
       sum(c.sign)::int AS requests,
       sum(c.sign * coalesce(c.result, 0)) AS result,
       sum(c.sign * coalesce(c.master_handover, 0)) AS handover,
       sum(c.sign * coalesce(c.net_amount, 0)) AS net
FROM (SELECT 1 AS sign, * FROM new_rows) AS c CROSS JOIN (VALUES (0), (1), (2), (3)) AS d(dimension)
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(c.sign) <> 0 OR sum(c.sign * coalesce(c.result, 0)) <> 0
    OR sum(c.sign * coalesce(c.master_handover, 0)) <> 0 OR sum(c.sign * coalesce(c.net_amount, 0)) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (dimension, day, city_id, status, key_id, key_text) DO UPDATE
SET requests = s.requests + excluded.requests, result = s.result + excluded.result,
    handover = s.handover + excluded.handover, net = s.net + excluded.net
;
ELSIF TG_OP = 'DELETE' THEN

INSERT INTO request_day_stats AS s (dimension, day, city_id, status, key_id, key_text, requests, result, handover, net)

SELECT d.dimension,
       (timezone(zone, c.created_at))::date AS day,
       c.city_id,
       c.status,
       CASE d.dimension WHEN 1 THEN coalesce(c.master_id, 0)
                        WHEN 2 THEN coalesce(c.advertising_campaign_id, 0)
                        WHEN 3 THEN (c.call_center_name IS NULL)::int
                        ELSE 0 END AS key_id,
       CASE WHEN d.dimension = 3 THEN coalesce(c.call_center_name, '') ELSE '' END AS key_text,
       sum(c.sign)::int AS requests,
       sum(c.sign * coalesce(c.result, 0)) AS result,
       sum(c.sign * coalesce(c.master_handover, 0)) AS handover,
       sum(c.sign * coalesce(c.net_amount, 0)) AS net
FROM (SELECT -1 AS sign, * FROM old_rows) AS c CROSS JOIN (VALUES (0), (1), (2), (3)) AS d(dimension)
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(c.sign) <> 0 OR sum(c.sign * coalesce(c.result, 0)) <> 0
    OR sum(c.sign * coalesce(c.master_handover, 0)) <> 0 OR sum(c.sign * coalesce(c.net_amount, 0)) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (dimension, day, city_id, status, key_id, key_text) DO UPDATE
SET requests = s.requests + excluded.requests, result = s.result + excluded.result,
    handover = s.handover + excluded.handover, net = s.net + excluded.net
;
ELSIF TG_OP = 'UPDATE' THEN

INSERT INTO request_day_stats AS s (dimension, day, city_id, status, key_id, key_text, requests, result, handover, net)

SELECT d.dimension,
       (timezone(zone, c.created_at))::date AS day,
       c.city_id,
       c.status,
       CASE d.dimension WHEN 1 THEN coalesce(c.master_id, 0)
                        WHEN 2 THEN coalesce(c.advertising_campaign_id, 0)
                        WHEN 3 THEN (c.call_center_name IS NULL)::int
                        ELSE 0 END AS key_id,
       CASE WHEN d.dimension = 3 THEN coalesce(c.call_center_name, '') ELSE '' END AS key_text,
       sum(c.sign)::int AS requests,
       sum(c.sign * coalesce(c.result, 0)) AS result,
       sum(c.sign * coalesce(c.master_handover, 0)) AS handover,
       sum(c.sign * coalesce(c.net_amount, 0)) AS net
FROM (SELECT -1 AS sign, * FROM old_rows UNION ALL SELECT 1 AS sign, * FROM new_rows) AS c CROSS JOIN (VALUES (0), (1), (2), (3)) AS d(dimension)
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(c.sign) <> 0 OR sum(c.sign * coalesce(c.result, 0)) <> 0
    OR sum(c.sign * coalesce(c.master_handover, 0)) <> 0 OR sum(c.sign * coalesce(c.net_amount, 0)) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (dimension, day, city_id, status, key_id, key_text) DO UPDATE
SET requests = s.requests + excluded.requests, result = s.result + excluded.result,
    handover = s.handover + excluded.handover, net = s.net + excluded.net
;
END IF;
            DELETE FROM request_day_stats WHERE requests = 0;
            RETURN NULL;
        END
        $fn$
        """

TRANSACTION_DAY_STATS_APPLY = """
        CREATE FUNCTION transaction_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF TG_OP = 'INSERT' THEN

INSERT INTO transaction_day_stats AS s (day, city_id, transaction_type_id, transactions, income, expense)

SELECT c.specified_date AS day, c.city_id, c.transaction_type_id,
       sum(c.sign)::int AS transactions,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) AS income,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) AS expense
FROM (SELECT 1 AS sign, * FROM new_rows) AS c
GROUP BY 1, 2, 3
HAVING sum(c.sign) <> 0 OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) <> 0
    OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) <> 0
ORDER BY 1, 2, 3

ON CONFLICT (day, city_id, transaction_type_id) DO UPDATE
SET transactions = s.transactions + excluded.transactions, income = s.income + excluded.income,
    expense = s.expense + excluded.expense
;
ELSIF TG_OP = 'DELETE' THEN

INSERT INTO transaction_day_stats AS s (day, city_id, transaction_type_id, transactions, income, expense)

SELECT c.specified_date AS day, c.city_id, c.transaction_type_id,
       sum(c.sign)::int AS transactions,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) AS income,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) AS expense
FROM (SELECT -1 AS sign, * FROM old_rows) AS c
GROUP BY 1, 2, 3
HAVING sum(c.sign) <> 0 OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) <> 0
    OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) <> 0
ORDER BY 1, 2, 3

ON CONFLICT (day, city_id, transaction_type_id) DO UPDATE
SET transactions = s.transactions + excluded.transactions, income = s.income + excluded.income,
    expense = s.expense + excluded.expense
;
ELSIF TG_OP = 'UPDATE' THEN

INSERT INTO transaction_day_stats AS s (day, city_id, transaction_type_id, transactions, income, expense)

SELECT c.specified_date AS day, c.city_id, c.transaction_type_id,
       sum(c.sign)::int AS transactions,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) AS income,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) AS expense
FROM (SELECT -1 AS sign, * FROM old_rows UNION ALL SELECT 1 AS sign, * FROM new_rows) AS c
GROUP BY 1, 2, 3
HAVING sum(c.sign) <> 0 OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) <> 0
    OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) <> 0
ORDER BY 1, 2, 3

ON CONFLICT (day, city_id, transaction_type_id) DO UPDATE
SET transactions = s.transactions + excluded.transactions, income = s.income + excluded.income,
    expense = s.expense + excluded.expense
;
END IF;
            DELETE FROM transaction_day_stats WHERE transactions = 0;
            RETURN NULL;
        END
        $fn$
        """

REPORT_ROLLUPS_TRUNCATED = """
        CREATE FUNCTION report_rollups_truncated() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF TG_TABLE_NAME = 'requests' THEN
                DELETE FROM request_day_stats;
            ELSE
                DELETE FROM transaction_day_stats;
            END IF;
            RETURN NULL;
        END
        $fn$
        """

TRIGGERS = [
    "CREATE TRIGGER requests_rollup_insert AFTER INSERT ON requests REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION request_day_stats_apply()",
    "CREATE TRIGGER requests_rollup_update AFTER UPDATE ON requests REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION request_day_stats_apply()",
    "CREATE TRIGGER requests_rollup_delete AFTER DELETE ON requests REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION request_day_stats_apply()",
    "CREATE TRIGGER requests_rollup_truncate AFTER TRUNCATE ON requests "
    "FOR EACH STATEMENT EXECUTE FUNCTION report_rollups_truncated()",
    "CREATE TRIGGER transactions_rollup_insert AFTER INSERT ON transactions REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION transaction_day_stats_apply()",
    "CREATE TRIGGER transactions_rollup_update AFTER UPDATE ON transactions REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION transaction_day_stats_apply()",
    "CREATE TRIGGER transactions_rollup_delete AFTER DELETE ON transactions REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION transaction_day_stats_apply()",
    "CREATE TRIGGER transactions_rollup_truncate AFTER TRUNCATE ON transactions "
    "FOR EACH STATEMENT EXECUTE FUNCTION report_rollups_truncated()",
]

UNINSTALL = [
    "DROP TRIGGER IF EXISTS requests_rollup_insert ON requests",
    "DROP TRIGGER IF EXISTS requests_rollup_update ON requests",
    "DROP TRIGGER IF EXISTS requests_rollup_delete ON requests",
    "DROP TRIGGER IF EXISTS requests_rollup_truncate ON requests",
    "DROP TRIGGER IF EXISTS transactions_rollup_insert ON transactions",
    "DROP TRIGGER IF EXISTS transactions_rollup_update ON transactions",
    "DROP TRIGGER IF EXISTS transactions_rollup_delete ON transactions",
    "DROP TRIGGER IF EXISTS transactions_rollup_truncate ON transactions",
    "DROP FUNCTION IF EXISTS request_day_stats_apply()",
    "DROP FUNCTION IF EXISTS transaction_day_stats_apply()",
    "DROP FUNCTION IF EXISTS report_rollups_truncated()",
]

# (statement, whether it takes the zone as %(zone)s), in one transaction.
REBUILD = [
    ("LOCK TABLE requests, transactions IN SHARE MODE", False),
    ("DELETE FROM report_rollups", False),
    ("INSERT INTO report_rollups (id, time_zone) VALUES (1, %(zone)s)", True),
    ("TRUNCATE request_day_stats, transaction_day_stats", False),
    ("""INSERT INTO request_day_stats (dimension, day, city_id, status, key_id, key_text, requests, result, handover, net)
SELECT d.dimension,
       (timezone(%(zone)s, c.created_at))::date AS day,
       c.city_id,
       c.status,
       CASE d.dimension WHEN 1 THEN coalesce(c.master_id, 0)
                        WHEN 2 THEN coalesce(c.advertising_campaign_id, 0)
                        WHEN 3 THEN (c.call_center_name IS NULL)::int
                        ELSE 0 END AS key_id,
       CASE WHEN d.dimension = 3 THEN coalesce(c.call_center_name, '') ELSE '' END AS key_text,
       sum(c.sign)::int AS requests,
       sum(c.sign * coalesce(c.result, 0)) AS result,
       sum(c.sign * coalesce(c.master_handover, 0)) AS handover,
       sum(c.sign * coalesce(c.net_amount, 0)) AS net
FROM (SELECT 1 AS sign, * FROM requests) AS c CROSS JOIN (VALUES (0), (1), (2), (3)) AS d(dimension)
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(c.sign) <> 0 OR sum(c.sign * coalesce(c.result, 0)) <> 0
    OR sum(c.sign * coalesce(c.master_handover, 0)) <> 0 OR sum(c.sign * coalesce(c.net_amount, 0)) <> 0
ORDER BY 1, 2, 3, 4, 5, 6
""", True),
    ("""INSERT INTO transaction_day_stats (day, city_id, transaction_type_id, transactions, income, expense)
SELECT c.specified_date AS day, c.city_id, c.transaction_type_id,
       sum(c.sign)::int AS transactions,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) AS income,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) AS expense
FROM (SELECT 1 AS sign, * FROM transactions) AS c
GROUP BY 1, 2, 3
HAVING sum(c.sign) <> 0 OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) <> 0
    OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) <> 0
ORDER BY 1, 2, 3
""", False),
]


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
    for statement in (REQUEST_DAY_STATS_APPLY, TRANSACTION_DAY_STATS_APPLY, REPORT_ROLLUPS_TRUNCATED, *TRIGGERS):
        op.execute(statement)
    zone = ZoneInfo(settings.BUSINESS_TZ).key
    connection = op.get_bind()
    for statement, takes_zone in REBUILD:
        connection.exec_driver_sql(statement, {"zone": zone} if takes_zone else {})


def downgrade() -> None:
    for statement in UNINSTALL:
        op.execute(statement)
    op.drop_index("ix_requests_master_id_updated_at", table_name="requests")
    op.drop_index("ix_transaction_day_stats_empty", table_name="transaction_day_stats")
    op.drop_table("transaction_day_stats")
    op.drop_index("ix_request_day_stats_empty", table_name="request_day_stats")
    op.drop_table("request_day_stats")
    op.drop_table("report_rollups")
