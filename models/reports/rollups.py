"""Daily rollups of requests and of the cash book, kept exact by PostgreSQL triggers, so that the
reports over long ranges read a few thousand summed rows instead of every request of the range.

- `request_day_stats`: per business-local day of `created_at`, city and status, the number of
  requests and the sums of result, master handover and net amount, four times over: in total
  (dimension 0), per master (1, key_id = master id, 0 for none), per advertising campaign (2,
  key_id = campaign id, 0 for none) and per operator (3, key_text = call_center_name, key_id = 1
  where it is NULL).
- `transaction_day_stats`: per `specified_date`, city and transaction type, the number of
  transactions and the sums of incomes and of expenses (negative).

Statement-level triggers with transition tables apply every INSERT, UPDATE and DELETE (those of
foreign-key actions included) as one grouped delta per statement, in key order (concurrent writers
take the rows' locks in one order); a row whose count reaches zero is deleted; TRUNCATE empties the
rollup. The local day is computed in the zone recorded in `report_rollups`; reports use the request
rollup only while that zone is BUSINESS_TZ (`rollup_zone_matches`), and `rebuild()` recomputes both
rollups from the tables (in a new zone if it changed, and after a load that skipped triggers).
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Iterator

from sqlalchemy import CheckConstraint, Date, Index, Integer, Numeric, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base
from models.core.business_time import business_tz
from models.reports import call_rollups

TOTAL, BY_MASTER, BY_CAMPAIGN, BY_OPERATOR = 0, 1, 2, 3
ROLLUP_NUMERIC = Numeric(16, 2)


class ReportRollups(Base):
    """One row: the zone the request rollup's days are computed in (no row: triggers idle)."""

    __tablename__ = "report_rollups"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    time_zone: Mapped[str] = mapped_column(Text)


class RequestDayStats(Base):
    __tablename__ = "request_day_stats"
    __table_args__ = (
        # Rows just emptied by a delta, found and deleted by the trigger without scanning the table.
        Index("ix_request_day_stats_empty", "dimension", postgresql_where=text("requests = 0")),
    )

    dimension: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    city_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(50), primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    key_text: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)
    result: Mapped[Decimal] = mapped_column(ROLLUP_NUMERIC)
    handover: Mapped[Decimal] = mapped_column(ROLLUP_NUMERIC)
    net: Mapped[Decimal] = mapped_column(ROLLUP_NUMERIC)


class TransactionDayStats(Base):
    __tablename__ = "transaction_day_stats"
    __table_args__ = (Index("ix_transaction_day_stats_empty", "day", postgresql_where=text("transactions = 0")),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    city_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    transaction_type_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    transactions: Mapped[int] = mapped_column(Integer)
    income: Mapped[Decimal] = mapped_column(ROLLUP_NUMERIC)
    expense: Mapped[Decimal] = mapped_column(ROLLUP_NUMERIC)


# ---- the SQL the migration installs ------------------------------------------------------------------

# The grouped delta of a set of changed request rows (`changed`: sign, then the requests columns).
REQUEST_DELTA = """
SELECT d.dimension,
       (timezone({zone}, c.created_at))::date AS day,
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
FROM ({changed}) AS c CROSS JOIN (VALUES (0), (1), (2), (3)) AS d(dimension)
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(c.sign) <> 0 OR sum(c.sign * coalesce(c.result, 0)) <> 0
    OR sum(c.sign * coalesce(c.master_handover, 0)) <> 0 OR sum(c.sign * coalesce(c.net_amount, 0)) <> 0
ORDER BY 1, 2, 3, 4, 5, 6
"""

TRANSACTION_DELTA = """
SELECT c.specified_date AS day, c.city_id, c.transaction_type_id,
       sum(c.sign)::int AS transactions,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) AS income,
       coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) AS expense
FROM ({changed}) AS c
GROUP BY 1, 2, 3
HAVING sum(c.sign) <> 0 OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount > 0), 0) <> 0
    OR coalesce(sum(c.sign * c.amount) FILTER (WHERE c.amount < 0), 0) <> 0
ORDER BY 1, 2, 3
"""


# In a trigger function: the changed rows with their sign, from the statement's transition tables.
CHANGED_ROWS = {
    "INSERT": "SELECT 1 AS sign, * FROM new_rows",
    "DELETE": "SELECT -1 AS sign, * FROM old_rows",
    "UPDATE": "SELECT -1 AS sign, * FROM old_rows UNION ALL SELECT 1 AS sign, * FROM new_rows",
}


REQUEST_UPSERT = """
INSERT INTO request_day_stats AS s (dimension, day, city_id, status, key_id, key_text, requests, result, handover, net)
{delta}
ON CONFLICT (dimension, day, city_id, status, key_id, key_text) DO UPDATE
SET requests = s.requests + excluded.requests, result = s.result + excluded.result,
    handover = s.handover + excluded.handover, net = s.net + excluded.net
"""

TRANSACTION_UPSERT = """
INSERT INTO transaction_day_stats AS s (day, city_id, transaction_type_id, transactions, income, expense)
{delta}
ON CONFLICT (day, city_id, transaction_type_id) DO UPDATE
SET transactions = s.transactions + excluded.transactions, income = s.income + excluded.income,
    expense = s.expense + excluded.expense
"""


# The same delta, kept in the session's pending table until `rollups_flush()` applies it (`deferred`).
REQUEST_PENDING = """
INSERT INTO pg_temp.request_day_stats_pending (dimension, day, city_id, status, key_id, key_text, requests, result,
                                               handover, net)
{delta}
"""

REQUEST_FLUSH = """
WITH moved AS (DELETE FROM pg_temp.request_day_stats_pending RETURNING *)
INSERT INTO request_day_stats AS s (dimension, day, city_id, status, key_id, key_text, requests, result, handover, net)
SELECT dimension, day, city_id, status, key_id, key_text, sum(requests)::int, sum(result), sum(handover), sum(net)
FROM moved
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(requests) <> 0 OR sum(result) <> 0 OR sum(handover) <> 0 OR sum(net) <> 0
ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (dimension, day, city_id, status, key_id, key_text) DO UPDATE
SET requests = s.requests + excluded.requests, result = s.result + excluded.result,
    handover = s.handover + excluded.handover, net = s.net + excluded.net
"""

DEFER_SETTING = call_rollups.DEFER_SETTING
DEFERRED_TABLES = ("request_day_stats", *call_rollups.PENDING_TABLES)


def _per_operation(upsert: str, delta: str, pending: str | None = None, **values: str) -> str:
    """PL/pgSQL: the upsert of the statement's delta, one static statement per operation (PL/pgSQL
    plans each once per connection; a dynamic EXECUTE would plan it again on every write); with
    `pending`, the insert into the pending table instead while the rollups are deferred."""
    branches = []
    for i, (operation, changed) in enumerate(CHANGED_ROWS.items()):
        rows = delta.format(changed=changed, **values)
        statement = f"{upsert.format(delta=rows)};"
        if pending is not None:
            statement = f"IF deferred THEN\n{pending.format(delta=rows)};\nELSE\n{statement}\nEND IF;"
        branches.append(f"{'IF' if i == 0 else 'ELSIF'} TG_OP = '{operation}' THEN\n{statement}")
    return "\n".join(branches) + "\nEND IF;"


def deferral_sql() -> list[str]:
    """`rollups_defer()` and `rollups_flush()` (see `deferred`)."""
    creates = "\n".join(f"IF to_regclass('pg_temp.{table}_pending') IS NULL THEN "
                        f"CREATE TEMP TABLE {table}_pending (LIKE {table}); END IF;" for table in DEFERRED_TABLES)
    flush = ";\n".join([REQUEST_FLUSH, "DELETE FROM request_day_stats WHERE requests = 0",
                        *call_rollups.flush_sql()])
    return [
        f"""
        CREATE OR REPLACE FUNCTION rollups_defer() RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
            {creates}
            PERFORM set_config('{DEFER_SETTING}', 'on', true);
        END
        $fn$
        """,  # nosec B608 # the f-string joins module constants
        f"""
        CREATE OR REPLACE FUNCTION rollups_flush() RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
            PERFORM set_config('{DEFER_SETTING}', 'off', true);
            {flush};
        END
        $fn$
        """,  # nosec B608 # the f-string joins module constants
    ]


@contextmanager
def deferred(session) -> Iterator[None]:
    """Writes of many requests and calls in one transaction (the Mango worker's batches), with the
    request and call rollups applied once, at the end: inside the block the triggers compute their
    deltas as always but keep them in this session's temporary `*_pending` tables; leaving it, the
    deltas are summed and applied in key order (`rollups_flush()`). A transaction then holds the rollup
    rows shared by everyone (one per day and city, per campaign) only for its last moments, not from
    its first write, and two such transactions take them in one order. The block must end the
    transaction's writes; an error inside it must roll the transaction back (nothing was applied)."""
    session.execute(text("SELECT rollups_defer()"))
    yield
    session.execute(text("SELECT rollups_flush()"))


def install_sql() -> list[str]:
    """Functions and triggers (the migration runs these after creating the tables)."""
    statements = [
        f"""
        CREATE FUNCTION request_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
            deferred boolean := coalesce(current_setting('{DEFER_SETTING}', true), '') = 'on';
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            {_per_operation(REQUEST_UPSERT, REQUEST_DELTA, REQUEST_PENDING, zone="zone")}
            IF NOT deferred THEN
                DELETE FROM request_day_stats WHERE requests = 0;
            END IF;
            RETURN NULL;
        END
        $fn$
        """,  # nosec B608 # the f-string joins module constants
        f"""
        CREATE FUNCTION transaction_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            {_per_operation(TRANSACTION_UPSERT, TRANSACTION_DELTA)}
            DELETE FROM transaction_day_stats WHERE transactions = 0;
            RETURN NULL;
        END
        $fn$
        """,  # nosec B608 # the f-string joins module constants
        """
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
        """,
    ]
    for table, function in (("requests", "request_day_stats_apply"), ("transactions", "transaction_day_stats_apply")):
        statements += [
            f"CREATE TRIGGER {table}_rollup_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER {table}_rollup_update AFTER UPDATE ON {table} "
            f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER {table}_rollup_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            f"CREATE TRIGGER {table}_rollup_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION report_rollups_truncated()",
        ]
    return statements


def uninstall_sql() -> list[str]:
    statements = []
    for table in ("requests", "transactions"):
        for event in ("insert", "update", "delete", "truncate"):
            statements.append(f"DROP TRIGGER IF EXISTS {table}_rollup_{event} ON {table}")
    for function in ("request_day_stats_apply", "transaction_day_stats_apply", "report_rollups_truncated"):
        statements.append(f"DROP FUNCTION IF EXISTS {function}()")
    return statements


def rebuild_sql(zone: str) -> list[tuple[str, dict]]:
    """Recompute the rollups from their tables (calls' too, models/reports/call_rollups.py), the days in
    `zone`: statements and their parameters in the driver's own style (psycopg's), for one transaction."""
    request_rows = REQUEST_DELTA.format(zone="%(zone)s", changed="SELECT 1 AS sign, * FROM requests")
    transaction_rows = TRANSACTION_DELTA.format(changed="SELECT 1 AS sign, * FROM transactions")
    return [
        ("LOCK TABLE requests, transactions IN SHARE MODE", {}),  # no write in between
        ("DELETE FROM report_rollups", {}),
        ("INSERT INTO report_rollups (id, time_zone) VALUES (1, %(zone)s)", {"zone": zone}),
        ("TRUNCATE request_day_stats, transaction_day_stats", {}),
        ("INSERT INTO request_day_stats (dimension, day, city_id, status, key_id, key_text, requests, result, "
         f"handover, net) {request_rows}", {"zone": zone}),
        ("INSERT INTO transaction_day_stats (day, city_id, transaction_type_id, transactions, income, expense) "
         f"{transaction_rows}", {}),
        *call_rollups.rebuild_sql(),  # the call rollup's days in the zone just recorded
    ]


def rebuild(connection, zone: str | None = None) -> None:
    """Recompute both rollups on `connection` (a SQLAlchemy connection, inside its transaction)."""
    for statement, params in rebuild_sql(zone or business_tz().key):
        connection.exec_driver_sql(statement, params)


def rollup_zone_matches(session) -> bool:
    """The request rollup's days are BUSINESS_TZ's days (else reports read the requests table)."""
    zone = session.execute(text("SELECT time_zone FROM report_rollups WHERE id = 1")).scalar()
    return zone == business_tz().key
