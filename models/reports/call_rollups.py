"""The daily rollup of inbound calls behind the ROI report, kept exact by PostgreSQL triggers.

`call_day_stats` holds, per business-local day of the call, the campaign's city (0: no campaign),
the campaign (0: none) and, for calls without a campaign, the tracking line, the number of inbound
calls and of missed ones. Three more key columns make the figures that depend on the whole range
(not on one day) exact for any range [a, b] of days:

- `prev_source_day`, `prev_city_day`, `prev_any_day`: the day of the caller's previous inbound call
  on the same source (campaign, or line without a campaign), in the same city, or anywhere
  (`-infinity`: none before; `infinity`: the number is unknown, never a "unique caller"). A call is
  its caller's first in [a, b] exactly when that previous day is before a, so unique callers over
  the range = Σ calls with prev < a.
- `callback_day`: for a missed call, the day it was called back (`called_back_at_sql`), else
  `infinity`; a missed call of [a, b] was called back within the range when callback_day ≤ b.

Those depend on the caller's other calls, so a write recomputes the contributions of every call of
the numbers it touched (before and after the statement) and applies the difference; a transaction
advisory lock per number keeps two writers of one number in order. A change of a campaign's city,
or the deletion of a campaign that had calls, recomputes the rollup (rare, seconds at a million
calls). Like the request rollup, the days are in the zone recorded in `report_rollups`, and the
triggers are idle while it has no row.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base

# The columns of `calls` the contributions read (transition tables have them all).
CALL_COLUMNS = "id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at"
# pg_advisory_xact_lock(ROLLUP_LOCK_CLASS, hashtext(phone)): one writer of a number's calls at a time.
ROLLUP_LOCK_CLASS = 7212
ALL_CALLS = f"SELECT 1 AS sign, {CALL_COLUMNS} FROM calls"  # nosec B608 # module constants
KEY = ("day", "city_id", "campaign_id", "line", "prev_source_day", "prev_city_day", "prev_any_day", "callback_day")


class CallDayStats(Base):
    __tablename__ = "call_day_stats"
    __table_args__ = (Index("ix_call_day_stats_empty", "day", postgresql_where=text("calls = 0")),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    city_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    line: Mapped[str] = mapped_column(String(20), primary_key=True)
    prev_source_day: Mapped[date] = mapped_column(Date, primary_key=True)
    prev_city_day: Mapped[date] = mapped_column(Date, primary_key=True)
    prev_any_day: Mapped[date] = mapped_column(Date, primary_key=True)
    callback_day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)
    missed: Mapped[int] = mapped_column(Integer)


def called_back_at_sql(calls: str = "v") -> str:
    """When a missed inbound call counts as called back: the first answered call (inbound or outbound)
    with the same number after it. This is the one definition of "called back" the ROI report uses;
    when the callback queue lands, this is the place to read the closing time of the call's callback
    item instead (and a migration re-installs the triggers and rebuilds the rollup)."""
    return (f"CASE WHEN {calls}.client_phone IS NOT NULL THEN "
            f"min(CASE WHEN {calls}.answered_at IS NOT NULL THEN {calls}.at END) OVER ("
            f"PARTITION BY {calls}.sign, {calls}.client_phone ORDER BY {calls}.at, {calls}.id "
            "ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END")


# The grouped contributions of a set of call rows (`changed`: sign, then CALL_COLUMNS): the rows of
# each sign are one complete picture of the numbers involved, so the windows partition by sign.
CALL_DELTA = """
SELECT x.day, x.city_id, x.campaign_id, x.line, x.prev_source_day, x.prev_city_day, x.prev_any_day, x.callback_day,
       sum(x.sign)::int AS calls,
       coalesce(sum(x.sign) FILTER (WHERE x.missed), 0)::int AS missed
FROM (
    SELECT w.sign, w.missed, w.city_id, w.campaign_id, w.line,
           (timezone({zone}, w.at))::date AS day,
           CASE WHEN w.client_phone IS NULL THEN 'infinity'::date
                ELSE coalesce((timezone({zone}, w.prev_source_at))::date, '-infinity'::date) END AS prev_source_day,
           CASE WHEN w.client_phone IS NULL THEN 'infinity'::date
                ELSE coalesce((timezone({zone}, w.prev_city_at))::date, '-infinity'::date) END AS prev_city_day,
           CASE WHEN w.client_phone IS NULL THEN 'infinity'::date
                ELSE coalesce((timezone({zone}, w.prev_any_at))::date, '-infinity'::date) END AS prev_any_day,
           CASE WHEN w.missed THEN coalesce((timezone({zone}, w.called_back_at))::date, 'infinity'::date)
                ELSE 'infinity'::date END AS callback_day
    FROM (
        SELECT v.*,
               lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.campaign_id, v.line
                               ORDER BY v.at, v.id) AS prev_source_at,
               lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.city_id
                               ORDER BY v.at, v.id) AS prev_city_at,
               lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound ORDER BY v.at, v.id) AS prev_any_at,
               {called_back_at} AS called_back_at
        FROM (
            SELECT c.sign, c.id, c.client_phone, coalesce(c.started_at, c.created_at) AS at,
                   c.direction = 'in' AS inbound, coalesce(c.missed, false) AS missed, c.answered_at,
                   coalesce(c.campaign_id, 0) AS campaign_id,
                   CASE WHEN c.campaign_id IS NULL THEN coalesce(c.line_number, '') ELSE '' END AS line,
                   coalesce(a.city_id, 0) AS city_id
            FROM ({changed}) AS c LEFT JOIN advertising_campaigns AS a ON a.id = c.campaign_id
        ) AS v
    ) AS w
    WHERE w.inbound
) AS x
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
HAVING sum(x.sign) <> 0 OR coalesce(sum(x.sign) FILTER (WHERE x.missed), 0) <> 0
ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
"""

_KEY_SQL = ", ".join(KEY)
CALL_UPSERT = f"""
INSERT INTO call_day_stats AS s ({_KEY_SQL}, calls, missed)
{{delta}}
ON CONFLICT ({_KEY_SQL}) DO UPDATE
SET calls = s.calls + excluded.calls, missed = s.missed + excluded.missed
"""  # nosec B608 # module constants


def _numbers(operation: str) -> str:
    sources = {"INSERT": ["new_rows"], "DELETE": ["old_rows"], "UPDATE": ["old_rows", "new_rows"]}[operation]
    return " UNION ".join(f"SELECT client_phone FROM {table} WHERE client_phone IS NOT NULL"  # nosec B608
                          for table in sources)


def changed_rows(operation: str) -> str:
    """Before (sign −1) and after (+1) the statement, every call of the numbers it touched, and the
    touched calls without a number themselves."""
    numbers = _numbers(operation)
    before = f"SELECT -1 AS sign, {CALL_COLUMNS} FROM calls WHERE client_phone IN ({numbers})"  # nosec B608
    if operation != "DELETE":
        before += " AND id NOT IN (SELECT id FROM new_rows)"
    if operation != "INSERT":
        before += f" UNION ALL SELECT -1 AS sign, {CALL_COLUMNS} FROM old_rows"  # nosec B608
    after = f"SELECT 1 AS sign, {CALL_COLUMNS} FROM calls WHERE client_phone IN ({numbers})"  # nosec B608
    if operation != "DELETE":
        after += f" UNION ALL SELECT 1 AS sign, {CALL_COLUMNS} FROM new_rows WHERE client_phone IS NULL"  # nosec B608
    return f"{before} UNION ALL {after}"


def _delta(changed: str, zone: str) -> str:
    return CALL_DELTA.format(zone=zone, changed=changed, called_back_at=called_back_at_sql("v"))


def _refill(zone: str) -> str:
    upsert = CALL_UPSERT.format(delta=_delta(ALL_CALLS, zone))
    return f"DELETE FROM call_day_stats;\n{upsert};"  # nosec B608 # module constants


def install_sql() -> list[str]:
    """Functions and triggers (the migration runs these after creating the table)."""
    branches = []
    for i, operation in enumerate(("INSERT", "DELETE", "UPDATE")):
        branches.append(
            f"{'IF' if i == 0 else 'ELSIF'} TG_OP = '{operation}' THEN\n"
            f"PERFORM pg_advisory_xact_lock({ROLLUP_LOCK_CLASS}, hashtext(n.client_phone)) "
            f"FROM ({_numbers(operation)} ORDER BY 1) AS n;\n"
            f"{CALL_UPSERT.format(delta=_delta(changed_rows(operation), 'zone'))};")
    apply_body = "\n".join(branches) + "\nEND IF;"
    return [
        f"""
        CREATE FUNCTION call_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            {apply_body}
            DELETE FROM call_day_stats WHERE calls = 0;
            RETURN NULL;
        END
        $fn$
        """,  # nosec B608 # the f-string joins module constants
        f"""
        CREATE FUNCTION call_day_stats_campaigns_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'UPDATE' THEN
                IF NOT EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id
                               WHERE n.city_id IS DISTINCT FROM o.city_id) THEN
                    RETURN NULL;
                END IF;
            ELSIF NOT EXISTS (SELECT 1 FROM call_day_stats WHERE campaign_id IN (SELECT id FROM old_rows)) THEN
                RETURN NULL;
            END IF;
            LOCK TABLE calls IN SHARE MODE;
            {_refill('zone')}
            RETURN NULL;
        END
        $fn$
        """,  # nosec B608 # the f-string joins module constants
        """
        CREATE FUNCTION call_day_stats_truncated() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM call_day_stats;
            RETURN NULL;
        END
        $fn$
        """,
        "CREATE TRIGGER calls_rollup_insert AFTER INSERT ON calls REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_apply()",
        "CREATE TRIGGER calls_rollup_update AFTER UPDATE ON calls REFERENCING OLD TABLE AS old_rows "
        "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_apply()",
        "CREATE TRIGGER calls_rollup_delete AFTER DELETE ON calls REFERENCING OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_apply()",
        "CREATE TRIGGER calls_rollup_truncate AFTER TRUNCATE ON calls "
        "FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_truncated()",
        "CREATE TRIGGER advertising_campaigns_call_rollup_update AFTER UPDATE ON advertising_campaigns "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_campaigns_changed()",
        "CREATE TRIGGER advertising_campaigns_call_rollup_delete AFTER DELETE ON advertising_campaigns "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_campaigns_changed()",
    ]


def uninstall_sql() -> list[str]:
    statements = [f"DROP TRIGGER IF EXISTS calls_rollup_{event} ON calls"
                  for event in ("insert", "update", "delete", "truncate")]
    statements += [f"DROP TRIGGER IF EXISTS advertising_campaigns_call_rollup_{event} ON advertising_campaigns"
                   for event in ("update", "delete")]
    statements += [f"DROP FUNCTION IF EXISTS {function}()" for function in
                   ("call_day_stats_apply", "call_day_stats_campaigns_changed", "call_day_stats_truncated")]
    return statements


def rebuild_sql() -> list[tuple[str, dict]]:
    """Recompute the rollup from `calls` in the zone recorded in report_rollups (models/reports/rollups.py's
    rebuild sets it first, in the same transaction)."""
    rows = _delta(ALL_CALLS,
                  "(SELECT time_zone FROM report_rollups WHERE id = 1)")
    return [
        ("LOCK TABLE calls IN SHARE MODE", {}),
        ("TRUNCATE call_day_stats", {}),
        (f"INSERT INTO call_day_stats ({_KEY_SQL}, calls, missed) {rows}", {}),  # nosec B608
    ]


def table_rows_sql(zone_literal: str) -> str:
    """The rollup's rows computed from `calls` on the fly (reports use it while the rollup's zone is
    not BUSINESS_TZ): the same key and figures, in `zone_literal` (a quoted zone name)."""
    return _delta(ALL_CALLS, zone_literal)
