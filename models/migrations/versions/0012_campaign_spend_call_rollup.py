"""Campaign spend and the daily rollup of inbound calls (models/advertising, models/reports/call_rollups.py).

`campaign_spend`: an amount per campaign and period of days (the ROI report prorates it by days).
`call_day_stats`: inbound calls per business-local day, city, campaign (or line without one), with
the counts of first-ever callers and same-day callbacks; `call_day_links`: the day of a repeat
caller's previous call and of a later callback, which make unique callers and called-back missed
calls exact for any range. Both kept by triggers on
`calls` (a write recomputes the contributions of every call of the numbers it touched) and on
`advertising_campaigns` (a change of city recomputes it). Filled here from the existing calls, in the
zone recorded in `report_rollups` (none: the triggers are idle, as the request rollup's).

The SQL is the one models/reports/call_rollups.py generated when this revision was written, frozen.

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FUNCTIONS = [
    """
        CREATE FUNCTION call_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'INSERT' THEN
PERFORM pg_advisory_xact_lock(7212, hashtext(n.client_phone)) FROM (SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL ORDER BY 1) AS n;

WITH p AS MATERIALIZED (
SELECT w.sign, (timezone(zone, w.at))::date AS day, w.city_id, w.campaign_id, w.line, w.missed,
       w.client_phone IS NOT NULL AS known,
       (timezone(zone, w.prev_source_at))::date AS prev_source_day,
       (timezone(zone, w.prev_city_at))::date AS prev_city_day,
       (timezone(zone, w.prev_any_at))::date AS prev_any_day,
       CASE WHEN w.missed THEN (timezone(zone, w.called_back_at))::date END AS callback_day
FROM (
    SELECT v.*,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.campaign_id, v.line
                           ORDER BY v.at, v.id) AS prev_source_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.city_id
                           ORDER BY v.at, v.id) AS prev_city_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound ORDER BY v.at, v.id) AS prev_any_at,
           CASE WHEN v.client_phone IS NOT NULL THEN min(CASE WHEN v.answered_at IS NOT NULL THEN v.at END) OVER (PARTITION BY v.sign, v.client_phone ORDER BY v.at, v.id ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END AS called_back_at
    FROM (
        SELECT c.sign, c.id, c.client_phone, coalesce(c.started_at, c.created_at) AS at,
               c.direction = 'in' AS inbound, coalesce(c.missed, false) AS missed, c.answered_at,
               coalesce(c.campaign_id, 0) AS campaign_id,
               CASE WHEN c.campaign_id IS NULL THEN coalesce(c.line_number, '') ELSE '' END AS line,
               coalesce(a.city_id, 0) AS city_id
        FROM (SELECT -1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls WHERE client_phone IN (SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL) AND id NOT IN (SELECT id FROM new_rows) UNION ALL SELECT 1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls WHERE client_phone IN (SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL) UNION ALL SELECT 1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM new_rows WHERE client_phone IS NULL) AS c LEFT JOIN advertising_campaigns AS a ON a.id = c.campaign_id
    ) AS v
) AS w
WHERE w.inbound
),
stats AS (
    INSERT INTO call_day_stats AS s (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

    ON CONFLICT (day, city_id, campaign_id, line) DO UPDATE SET calls = s.calls + excluded.calls, missed = s.missed + excluded.missed, called_back_same_day = s.called_back_same_day + excluded.called_back_same_day, first_source = s.first_source + excluded.first_source, first_city = s.first_city + excluded.first_city, first_any = s.first_any + excluded.first_any, first_month_city = s.first_month_city + excluded.first_month_city, first_month_any = s.first_month_any + excluded.first_month_any
)
INSERT INTO call_day_links AS s (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (kind, day, city_id, campaign_id, line, ref_day) DO UPDATE SET calls = s.calls + excluded.calls
;
ELSIF TG_OP = 'DELETE' THEN
PERFORM pg_advisory_xact_lock(7212, hashtext(n.client_phone)) FROM (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL ORDER BY 1) AS n;

WITH p AS MATERIALIZED (
SELECT w.sign, (timezone(zone, w.at))::date AS day, w.city_id, w.campaign_id, w.line, w.missed,
       w.client_phone IS NOT NULL AS known,
       (timezone(zone, w.prev_source_at))::date AS prev_source_day,
       (timezone(zone, w.prev_city_at))::date AS prev_city_day,
       (timezone(zone, w.prev_any_at))::date AS prev_any_day,
       CASE WHEN w.missed THEN (timezone(zone, w.called_back_at))::date END AS callback_day
FROM (
    SELECT v.*,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.campaign_id, v.line
                           ORDER BY v.at, v.id) AS prev_source_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.city_id
                           ORDER BY v.at, v.id) AS prev_city_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound ORDER BY v.at, v.id) AS prev_any_at,
           CASE WHEN v.client_phone IS NOT NULL THEN min(CASE WHEN v.answered_at IS NOT NULL THEN v.at END) OVER (PARTITION BY v.sign, v.client_phone ORDER BY v.at, v.id ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END AS called_back_at
    FROM (
        SELECT c.sign, c.id, c.client_phone, coalesce(c.started_at, c.created_at) AS at,
               c.direction = 'in' AS inbound, coalesce(c.missed, false) AS missed, c.answered_at,
               coalesce(c.campaign_id, 0) AS campaign_id,
               CASE WHEN c.campaign_id IS NULL THEN coalesce(c.line_number, '') ELSE '' END AS line,
               coalesce(a.city_id, 0) AS city_id
        FROM (SELECT -1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls WHERE client_phone IN (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL) UNION ALL SELECT -1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM old_rows UNION ALL SELECT 1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls WHERE client_phone IN (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL)) AS c LEFT JOIN advertising_campaigns AS a ON a.id = c.campaign_id
    ) AS v
) AS w
WHERE w.inbound
),
stats AS (
    INSERT INTO call_day_stats AS s (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

    ON CONFLICT (day, city_id, campaign_id, line) DO UPDATE SET calls = s.calls + excluded.calls, missed = s.missed + excluded.missed, called_back_same_day = s.called_back_same_day + excluded.called_back_same_day, first_source = s.first_source + excluded.first_source, first_city = s.first_city + excluded.first_city, first_any = s.first_any + excluded.first_any, first_month_city = s.first_month_city + excluded.first_month_city, first_month_any = s.first_month_any + excluded.first_month_any
)
INSERT INTO call_day_links AS s (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (kind, day, city_id, campaign_id, line, ref_day) DO UPDATE SET calls = s.calls + excluded.calls
;
ELSIF TG_OP = 'UPDATE' THEN
PERFORM pg_advisory_xact_lock(7212, hashtext(n.client_phone)) FROM (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL UNION SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL ORDER BY 1) AS n;

WITH p AS MATERIALIZED (
SELECT w.sign, (timezone(zone, w.at))::date AS day, w.city_id, w.campaign_id, w.line, w.missed,
       w.client_phone IS NOT NULL AS known,
       (timezone(zone, w.prev_source_at))::date AS prev_source_day,
       (timezone(zone, w.prev_city_at))::date AS prev_city_day,
       (timezone(zone, w.prev_any_at))::date AS prev_any_day,
       CASE WHEN w.missed THEN (timezone(zone, w.called_back_at))::date END AS callback_day
FROM (
    SELECT v.*,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.campaign_id, v.line
                           ORDER BY v.at, v.id) AS prev_source_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.city_id
                           ORDER BY v.at, v.id) AS prev_city_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound ORDER BY v.at, v.id) AS prev_any_at,
           CASE WHEN v.client_phone IS NOT NULL THEN min(CASE WHEN v.answered_at IS NOT NULL THEN v.at END) OVER (PARTITION BY v.sign, v.client_phone ORDER BY v.at, v.id ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END AS called_back_at
    FROM (
        SELECT c.sign, c.id, c.client_phone, coalesce(c.started_at, c.created_at) AS at,
               c.direction = 'in' AS inbound, coalesce(c.missed, false) AS missed, c.answered_at,
               coalesce(c.campaign_id, 0) AS campaign_id,
               CASE WHEN c.campaign_id IS NULL THEN coalesce(c.line_number, '') ELSE '' END AS line,
               coalesce(a.city_id, 0) AS city_id
        FROM (SELECT -1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls WHERE client_phone IN (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL UNION SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL) AND id NOT IN (SELECT id FROM new_rows) UNION ALL SELECT -1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM old_rows UNION ALL SELECT 1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls WHERE client_phone IN (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL UNION SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL) UNION ALL SELECT 1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM new_rows WHERE client_phone IS NULL) AS c LEFT JOIN advertising_campaigns AS a ON a.id = c.campaign_id
    ) AS v
) AS w
WHERE w.inbound
),
stats AS (
    INSERT INTO call_day_stats AS s (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

    ON CONFLICT (day, city_id, campaign_id, line) DO UPDATE SET calls = s.calls + excluded.calls, missed = s.missed + excluded.missed, called_back_same_day = s.called_back_same_day + excluded.called_back_same_day, first_source = s.first_source + excluded.first_source, first_city = s.first_city + excluded.first_city, first_any = s.first_any + excluded.first_any, first_month_city = s.first_month_city + excluded.first_month_city, first_month_any = s.first_month_any + excluded.first_month_any
)
INSERT INTO call_day_links AS s (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (kind, day, city_id, campaign_id, line, ref_day) DO UPDATE SET calls = s.calls + excluded.calls
;
END IF;
            DELETE FROM call_day_stats WHERE calls = 0;
            DELETE FROM call_day_links WHERE calls = 0;
            RETURN NULL;
        END
        $fn$
        """,
    """
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
            
WITH p AS MATERIALIZED (
SELECT w.sign, (timezone(zone, w.at))::date AS day, w.city_id, w.campaign_id, w.line, w.missed,
       w.client_phone IS NOT NULL AS known,
       (timezone(zone, w.prev_source_at))::date AS prev_source_day,
       (timezone(zone, w.prev_city_at))::date AS prev_city_day,
       (timezone(zone, w.prev_any_at))::date AS prev_any_day,
       CASE WHEN w.missed THEN (timezone(zone, w.called_back_at))::date END AS callback_day
FROM (
    SELECT v.*,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.campaign_id, v.line
                           ORDER BY v.at, v.id) AS prev_source_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.city_id
                           ORDER BY v.at, v.id) AS prev_city_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound ORDER BY v.at, v.id) AS prev_any_at,
           CASE WHEN v.client_phone IS NOT NULL THEN min(CASE WHEN v.answered_at IS NOT NULL THEN v.at END) OVER (PARTITION BY v.sign, v.client_phone ORDER BY v.at, v.id ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END AS called_back_at
    FROM (
        SELECT c.sign, c.id, c.client_phone, coalesce(c.started_at, c.created_at) AS at,
               c.direction = 'in' AS inbound, coalesce(c.missed, false) AS missed, c.answered_at,
               coalesce(c.campaign_id, 0) AS campaign_id,
               CASE WHEN c.campaign_id IS NULL THEN coalesce(c.line_number, '') ELSE '' END AS line,
               coalesce(a.city_id, 0) AS city_id
        FROM (SELECT 1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls) AS c LEFT JOIN advertising_campaigns AS a ON a.id = c.campaign_id
    ) AS v
) AS w
WHERE w.inbound
),
stats AS (
    INSERT INTO call_day_stats AS s (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

    ON CONFLICT (day, city_id, campaign_id, line) DO UPDATE SET calls = s.calls + excluded.calls, missed = s.missed + excluded.missed, called_back_same_day = s.called_back_same_day + excluded.called_back_same_day, first_source = s.first_source + excluded.first_source, first_city = s.first_city + excluded.first_city, first_any = s.first_any + excluded.first_any, first_month_city = s.first_month_city + excluded.first_month_city, first_month_any = s.first_month_any + excluded.first_month_any
)
INSERT INTO call_day_links AS s (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (kind, day, city_id, campaign_id, line, ref_day) DO UPDATE SET calls = s.calls + excluded.calls
;
            RETURN NULL;
        END
        $fn$
        """,
    """
        CREATE FUNCTION call_day_stats_truncated() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            DELETE FROM call_day_stats;
            DELETE FROM call_day_links;
            RETURN NULL;
        END
        $fn$
        """,
]

TRIGGERS = [
    'CREATE TRIGGER calls_rollup_insert AFTER INSERT ON calls REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_apply()',
    'CREATE TRIGGER calls_rollup_update AFTER UPDATE ON calls REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_apply()',
    'CREATE TRIGGER calls_rollup_delete AFTER DELETE ON calls REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_apply()',
    'CREATE TRIGGER calls_rollup_truncate AFTER TRUNCATE ON calls FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_truncated()',
    'CREATE TRIGGER advertising_campaigns_call_rollup_update AFTER UPDATE ON advertising_campaigns REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_campaigns_changed()',
    'CREATE TRIGGER advertising_campaigns_call_rollup_delete AFTER DELETE ON advertising_campaigns REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION call_day_stats_campaigns_changed()',
]

UNINSTALL = [
    'DROP TRIGGER IF EXISTS calls_rollup_insert ON calls',
    'DROP TRIGGER IF EXISTS calls_rollup_update ON calls',
    'DROP TRIGGER IF EXISTS calls_rollup_delete ON calls',
    'DROP TRIGGER IF EXISTS calls_rollup_truncate ON calls',
    'DROP TRIGGER IF EXISTS advertising_campaigns_call_rollup_update ON advertising_campaigns',
    'DROP TRIGGER IF EXISTS advertising_campaigns_call_rollup_delete ON advertising_campaigns',
    'DROP FUNCTION IF EXISTS call_day_stats_apply()',
    'DROP FUNCTION IF EXISTS call_day_stats_campaigns_changed()',
    'DROP FUNCTION IF EXISTS call_day_stats_truncated()',
]

# Filled from the calls in the zone report_rollups records (no row: nothing, like the triggers).
FILL = [
    """TRUNCATE call_day_stats, call_day_links""",
    """
WITH p AS MATERIALIZED (
SELECT w.sign, (timezone((SELECT time_zone FROM report_rollups WHERE id = 1), w.at))::date AS day, w.city_id, w.campaign_id, w.line, w.missed,
       w.client_phone IS NOT NULL AS known,
       (timezone((SELECT time_zone FROM report_rollups WHERE id = 1), w.prev_source_at))::date AS prev_source_day,
       (timezone((SELECT time_zone FROM report_rollups WHERE id = 1), w.prev_city_at))::date AS prev_city_day,
       (timezone((SELECT time_zone FROM report_rollups WHERE id = 1), w.prev_any_at))::date AS prev_any_day,
       CASE WHEN w.missed THEN (timezone((SELECT time_zone FROM report_rollups WHERE id = 1), w.called_back_at))::date END AS callback_day
FROM (
    SELECT v.*,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.campaign_id, v.line
                           ORDER BY v.at, v.id) AS prev_source_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound, v.city_id
                           ORDER BY v.at, v.id) AS prev_city_at,
           lag(v.at) OVER (PARTITION BY v.sign, v.client_phone, v.inbound ORDER BY v.at, v.id) AS prev_any_at,
           CASE WHEN v.client_phone IS NOT NULL THEN min(CASE WHEN v.answered_at IS NOT NULL THEN v.at END) OVER (PARTITION BY v.sign, v.client_phone ORDER BY v.at, v.id ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) END AS called_back_at
    FROM (
        SELECT c.sign, c.id, c.client_phone, coalesce(c.started_at, c.created_at) AS at,
               c.direction = 'in' AS inbound, coalesce(c.missed, false) AS missed, c.answered_at,
               coalesce(c.campaign_id, 0) AS campaign_id,
               CASE WHEN c.campaign_id IS NULL THEN coalesce(c.line_number, '') ELSE '' END AS line,
               coalesce(a.city_id, 0) AS city_id
        FROM (SELECT 1 AS sign, id, direction, client_phone, line_number, campaign_id, missed, answered_at, started_at, created_at FROM calls) AS c LEFT JOIN advertising_campaigns AS a ON a.id = c.campaign_id
    ) AS v
) AS w
WHERE w.inbound
),
stats AS (
    INSERT INTO call_day_stats AS s (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

    ON CONFLICT (day, city_id, campaign_id, line) DO UPDATE SET calls = s.calls + excluded.calls, missed = s.missed + excluded.missed, called_back_same_day = s.called_back_same_day + excluded.called_back_same_day, first_source = s.first_source + excluded.first_source, first_city = s.first_city + excluded.first_city, first_any = s.first_any + excluded.first_any, first_month_city = s.first_month_city + excluded.first_month_city, first_month_any = s.first_month_any + excluded.first_month_any
)
INSERT INTO call_day_links AS s (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

ON CONFLICT (kind, day, city_id, campaign_id, line, ref_day) DO UPDATE SET calls = s.calls + excluded.calls
""",
]


def upgrade() -> None:
    op.create_table(
        "campaign_spend",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("date_from", sa.Date(), nullable=False),
        sa.Column("date_to", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_campaign_spend_amount_not_negative")),
        sa.CheckConstraint("date_from <= date_to", name=op.f("ck_campaign_spend_period_in_order")),
        sa.ForeignKeyConstraint(["campaign_id"], ["advertising_campaigns.id"], ondelete="CASCADE",
                                name=op.f("fk_campaign_spend_campaign_id_advertising_campaigns")),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_campaign_spend_created_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_spend")),
    )
    op.create_index("ix_campaign_spend_campaign_id_date_from", "campaign_spend", ["campaign_id", "date_from"])
    op.create_index("ix_campaign_spend_date_to", "campaign_spend", ["date_to"])
    op.create_table(
        "call_day_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("city_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line", sa.String(length=20), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in (
            "calls", "missed", "called_back_same_day", "first_source", "first_city", "first_any", "first_month_city",
            "first_month_any")),
        sa.PrimaryKeyConstraint("day", "city_id", "campaign_id", "line", name=op.f("pk_call_day_stats")),
    )
    op.create_index("ix_call_day_stats_empty", "call_day_stats", ["day"], postgresql_where=sa.text("calls = 0"))
    op.create_table(
        "call_day_links",
        sa.Column("kind", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("city_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("campaign_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line", sa.String(length=20), nullable=False),
        sa.Column("ref_day", sa.Date(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "day", "city_id", "campaign_id", "line", "ref_day",
                                name=op.f("pk_call_day_links")),
    )
    op.create_index("ix_call_day_links_kind_ref_day", "call_day_links", ["kind", "ref_day"])
    op.create_index("ix_call_day_links_empty", "call_day_links", ["kind"], postgresql_where=sa.text("calls = 0"))
    for statement in (*FUNCTIONS, *TRIGGERS):
        op.execute(statement)
    connection = op.get_bind()
    if connection.exec_driver_sql("SELECT 1 FROM report_rollups WHERE id = 1").scalar():
        for statement in FILL:
            connection.exec_driver_sql(statement)


def downgrade() -> None:
    for statement in UNINSTALL:
        op.execute(statement)
    op.drop_index("ix_call_day_links_empty", table_name="call_day_links")
    op.drop_index("ix_call_day_links_kind_ref_day", table_name="call_day_links")
    op.drop_table("call_day_links")
    op.drop_index("ix_call_day_stats_empty", table_name="call_day_stats")
    op.drop_table("call_day_stats")
    op.drop_index("ix_campaign_spend_date_to", table_name="campaign_spend")
    op.drop_index("ix_campaign_spend_campaign_id_date_from", table_name="campaign_spend")
    op.drop_table("campaign_spend")
