"""The daily rollups of inbound calls behind the ROI report, kept exact by PostgreSQL triggers.

- `call_day_stats`: per business-local day, campaign city (0: no campaign), campaign (0: none) and,
  for calls without a campaign, tracking line: inbound calls, missed ones, missed ones called back
  the same day, and the calls that are their caller's first ever on the source (campaign, or line
  without one), in the city, anywhere, and first in their calendar month in the city and anywhere.
- `call_day_links`: what the first table cannot hold for an arbitrary range [a, b]: per call whose
  caller called before on an earlier day, the day of that previous call (`kind` 1: same source,
  2: same city, 3: anywhere), and per missed call called back on a later day, the day of the
  callback (`kind` 4; `called_back_at_sql` is the one definition of "called back").

A call is its caller's first in [a, b] when its previous call is before a: first-ever calls, plus
the links with ref_day < a; a missed call of [a, b] is called back within the range when it was
called back the same day, or has a link with ref_day ≤ b. Only repeat calls and late callbacks
have links, so a report over a year reads a few thousand rows of the first table and few links.

Those figures depend on the caller's other calls, so a write recomputes the contributions of every
call of the numbers it touched (before and after the statement) and applies the difference; a
transaction advisory lock per number keeps two writers of one number in order. A change of a
campaign's city, or the deletion of a campaign that had calls, recomputes both rollups (rare;
seconds at a million calls). Days are in the zone recorded in `report_rollups`; the triggers are idle
while it has no row, as the request rollup's.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Index, Integer, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from models.core.base import Base

# The columns of `calls` the contributions read (transition tables have them all).
CALL_COLUMNS = "id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at"
ALL_CALLS = f"SELECT 1 AS sign, {CALL_COLUMNS} FROM calls"  # nosec B608 # module constants
# pg_advisory_xact_lock(ROLLUP_LOCK_CLASS, hashtext(phone)): one writer of a number's calls at a time.
# While this transaction-local setting is 'on', the triggers keep their deltas in session tables that
# models/reports/rollups.py's `deferred` applies before the commit.
DEFER_SETTING = "leadline.defer_rollups"
ROLLUP_LOCK_CLASS = 7212
SAME_SOURCE, SAME_CITY, ANYWHERE, CALLED_BACK = 1, 2, 3, 4
KEY = ("day", "city_id", "campaign_id", "line")
COUNTS = ("calls", "missed", "called_back_same_day", "first_source", "first_city", "first_any", "first_month_city",
          "first_month_any")
LINK_KEY = ("kind", *KEY, "ref_day")


class CallDayStats(Base):
    __tablename__ = "call_day_stats"
    __table_args__ = (Index("ix_call_day_stats_empty", "day", postgresql_where=text("calls = 0")),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    city_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    line: Mapped[str] = mapped_column(String(20), primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)
    missed: Mapped[int] = mapped_column(Integer)
    called_back_same_day: Mapped[int] = mapped_column(Integer)
    first_source: Mapped[int] = mapped_column(Integer)
    first_city: Mapped[int] = mapped_column(Integer)
    first_any: Mapped[int] = mapped_column(Integer)
    first_month_city: Mapped[int] = mapped_column(Integer)
    first_month_any: Mapped[int] = mapped_column(Integer)


class CallDayLinks(Base):
    __tablename__ = "call_day_links"
    __table_args__ = (
        # "previous call before a": the links of a long range are found from the other end.
        Index("ix_call_day_links_kind_ref_day", "kind", "ref_day"),
        Index("ix_call_day_links_empty", "kind", postgresql_where=text("calls = 0")),
    )

    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    city_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    line: Mapped[str] = mapped_column(String(20), primary_key=True)
    ref_day: Mapped[date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


def called_back_at_sql(calls: str = "v") -> str:
    """When a missed inbound call counts as called back: the first answered call (inbound or outbound)
    with the same number after it. This is the one definition of "called back" the ROI report uses;
    when the callback queue lands, this is the place to read the closing time of the call's callback
    item instead (and a migration re-installs the triggers and rebuilds the rollups)."""
    return (f"CASE WHEN {calls}.client_phone IS NOT NULL THEN "
            f"min(CASE WHEN {calls}.answered_at IS NOT NULL THEN {calls}.at END) OVER ("
            f"PARTITION BY {calls}.sign, {calls}.client_phone ORDER BY {calls}.at, {calls}.id "
            "ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END")


# Per inbound call of a set of call rows (`changed`: sign, then CALL_COLUMNS): its day and key, and the
# days of the caller's previous inbound call (same source, city, anywhere) and of its callback. The
# rows of each sign are one complete picture of the numbers involved, so the windows partition by sign.
PER_CALL = """
SELECT w.sign, (timezone({zone}, w.at))::date AS day, w.city_id, w.campaign_id, w.line, w.missed,
       w.client_phone IS NOT NULL AS known,
       (timezone({zone}, w.prev_source_at))::date AS prev_source_day,
       (timezone({zone}, w.prev_city_at))::date AS prev_city_day,
       (timezone({zone}, w.prev_any_at))::date AS prev_any_day,
       CASE WHEN w.missed THEN (timezone({zone}, w.called_back_at))::date END AS callback_day
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
"""

# The grouped contributions of the per-call rows `p` to each table.
STATS_DELTA = """
SELECT * FROM (
    SELECT p.day, p.city_id, p.campaign_id, p.line,
           sum(p.sign)::int AS calls,
           coalesce(sum(p.sign) FILTER (WHERE p.missed), 0)::int AS missed,
           coalesce(sum(p.sign) FILTER (WHERE p.callback_day = p.day), 0)::int AS called_back_same_day,
           coalesce(sum(p.sign) FILTER (WHERE p.known AND p.prev_source_day IS NULL), 0)::int AS first_source,
           coalesce(sum(p.sign) FILTER (WHERE p.known AND p.prev_city_day IS NULL), 0)::int AS first_city,
           coalesce(sum(p.sign) FILTER (WHERE p.known AND p.prev_any_day IS NULL), 0)::int AS first_any,
           coalesce(sum(p.sign) FILTER (WHERE p.known AND (p.prev_city_day IS NULL
                    OR p.prev_city_day < date_trunc('month', p.day)::date)), 0)::int AS first_month_city,
           coalesce(sum(p.sign) FILTER (WHERE p.known AND (p.prev_any_day IS NULL
                    OR p.prev_any_day < date_trunc('month', p.day)::date)), 0)::int AS first_month_any
    FROM p
    GROUP BY 1, 2, 3, 4
) AS d
WHERE calls <> 0 OR missed <> 0 OR called_back_same_day <> 0 OR first_source <> 0 OR first_city <> 0
   OR first_any <> 0 OR first_month_city <> 0 OR first_month_any <> 0
ORDER BY 1, 2, 3, 4
"""

LINKS_DELTA = """
SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6
"""

_KEY_SQL, _COUNTS_SQL, _LINK_KEY_SQL = ", ".join(KEY), ", ".join(COUNTS), ", ".join(LINK_KEY)
_ADD_COUNTS = ", ".join(f"{name} = s.{name} + excluded.{name}" for name in COUNTS)
# Both upserts in one statement, the per-call rows computed once.
UPSERT = f"""
WITH p AS MATERIALIZED ({{per_call}}),
stats AS (
    INSERT INTO call_day_stats AS s ({_KEY_SQL}, {_COUNTS_SQL})
    {STATS_DELTA}
    ON CONFLICT ({_KEY_SQL}) DO UPDATE SET {_ADD_COUNTS}
)
INSERT INTO call_day_links AS s ({_LINK_KEY_SQL}, calls)
{LINKS_DELTA}
ON CONFLICT ({_LINK_KEY_SQL}) DO UPDATE SET calls = s.calls + excluded.calls
"""  # nosec B608 # module constants


# The same deltas, kept in the session's pending tables until `flush_sql` applies them (see
# models/reports/rollups.py, `deferred`).
DEFERRED = f"""
WITH p AS MATERIALIZED ({{per_call}}),
stats AS (
    INSERT INTO pg_temp.call_day_stats_pending ({_KEY_SQL}, {_COUNTS_SQL})
    {STATS_DELTA}
)
INSERT INTO pg_temp.call_day_links_pending ({_LINK_KEY_SQL}, calls)
{LINKS_DELTA}
"""  # nosec B608 # module constants

_SUM_COUNTS = ", ".join(f"sum({name})::int" for name in COUNTS)
_ANY_COUNT = " OR ".join(f"sum({name}) <> 0" for name in COUNTS)
PENDING_TABLES = ("call_day_stats", "call_day_links")


def flush_sql() -> list[str]:
    """Apply the pending deltas of this transaction, grouped and in key order, and empty them."""
    return [
        f"""WITH moved AS (DELETE FROM pg_temp.call_day_stats_pending RETURNING *)
        INSERT INTO call_day_stats AS s ({_KEY_SQL}, {_COUNTS_SQL})
        SELECT {_KEY_SQL}, {_SUM_COUNTS} FROM moved GROUP BY {_KEY_SQL} HAVING {_ANY_COUNT} ORDER BY {_KEY_SQL}
        ON CONFLICT ({_KEY_SQL}) DO UPDATE SET {_ADD_COUNTS}""",  # nosec B608 # module constants
        f"""WITH moved AS (DELETE FROM pg_temp.call_day_links_pending RETURNING *)
        INSERT INTO call_day_links AS s ({_LINK_KEY_SQL}, calls)
        SELECT {_LINK_KEY_SQL}, sum(calls)::int FROM moved GROUP BY {_LINK_KEY_SQL} HAVING sum(calls) <> 0
        ORDER BY {_LINK_KEY_SQL}
        ON CONFLICT ({_LINK_KEY_SQL}) DO UPDATE SET calls = s.calls + excluded.calls""",  # nosec B608
        "DELETE FROM call_day_stats WHERE calls = 0",
        "DELETE FROM call_day_links WHERE calls = 0",
    ]


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


def per_call_sql(changed: str, zone: str) -> str:
    return PER_CALL.format(zone=zone, changed=changed, called_back_at=called_back_at_sql("v"))


def _upsert(changed: str, zone: str) -> str:
    return UPSERT.format(per_call=per_call_sql(changed, zone))


def _upsert_or_defer(changed: str, zone: str) -> str:
    return (f"IF deferred THEN\n{DEFERRED.format(per_call=per_call_sql(changed, zone))};\n"
            f"ELSE\n{_upsert(changed, zone)};\nEND IF")


# Most updates of a call (every folded Mango event touches its row) change nothing the contributions read:
# then the statement's delta is zero and the trigger ends before locking or recomputing anything.
_OLD_VALUES = ", ".join(f"o.{name}" for name in CALL_COLUMNS.split(", ") if name != "id")
_NEW_VALUES = ", ".join(f"n.{name}" for name in CALL_COLUMNS.split(", ") if name != "id")
_CHANGED = f"WHERE ({_OLD_VALUES}) IS DISTINCT FROM ({_NEW_VALUES})"
UNCHANGED_EXIT = (
    "IF NOT EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id " + _CHANGED + ") THEN\n"  # nosec B608
    "    RETURN NULL;\n"
    "END IF;\n"
)


# Calls created bare (the Mango worker inserts a call by its entry id alone, then fills it in): no number
# and not inbound, so they count nowhere and change no other call's figures.
BARE_EXIT = (
    "IF NOT EXISTS (SELECT 1 FROM new_rows WHERE client_phone IS NOT NULL OR direction = 'in') THEN\n"
    "    RETURN NULL;\n"
    "END IF;\n"
)


def install_sql() -> list[str]:
    """Functions and triggers (the migration runs these after creating the tables)."""
    branches = []
    for i, operation in enumerate(("INSERT", "DELETE", "UPDATE")):
        branches.append(
            f"{'IF' if i == 0 else 'ELSIF'} TG_OP = '{operation}' THEN\n"
            + {"INSERT": BARE_EXIT, "UPDATE": UNCHANGED_EXIT}.get(operation, "") +
            f"PERFORM pg_advisory_xact_lock({ROLLUP_LOCK_CLASS}, hashtext(n.client_phone)) "
            f"FROM ({_numbers(operation)} ORDER BY 1) AS n;\n"
            f"{_upsert_or_defer(changed_rows(operation), 'zone')};")
    apply_body = "\n".join(branches) + "\nEND IF;"
    return [
        f"""
        CREATE FUNCTION call_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
            deferred boolean := coalesce(current_setting('{DEFER_SETTING}', true), '') = 'on';
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            {apply_body}
            IF NOT deferred THEN
                DELETE FROM call_day_stats WHERE calls = 0;
                DELETE FROM call_day_links WHERE calls = 0;
            END IF;
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
            DELETE FROM call_day_stats;
            DELETE FROM call_day_links;
            {_upsert(ALL_CALLS, 'zone')};
            RETURN NULL;
        END
        $fn$
        """,  # nosec B608 # the f-string joins module constants
        """
        CREATE FUNCTION call_day_stats_truncated() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM call_day_stats;
            DELETE FROM call_day_links;
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
    """Recompute both call rollups from `calls` in the zone recorded in report_rollups
    (models/reports/rollups.py's rebuild sets it first, in the same transaction)."""
    return [
        ("LOCK TABLE calls IN SHARE MODE", {}),
        ("TRUNCATE call_day_stats, call_day_links", {}),
        (_upsert(ALL_CALLS, "(SELECT time_zone FROM report_rollups WHERE id = 1)"), {}),
    ]


def table_rows_sql(zone_literal: str) -> tuple[str, str]:
    """Both rollups' rows computed from `calls` on the fly (reports use them while the rollups' zone is
    not BUSINESS_TZ): (call_day_stats rows, call_day_links rows), in `zone_literal` (a quoted zone)."""
    with_rows = f"WITH p AS MATERIALIZED ({per_call_sql(ALL_CALLS, zone_literal)}) "
    return with_rows + STATS_DELTA, with_rows + LINKS_DELTA
