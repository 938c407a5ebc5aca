"""Rollups: writes that change nothing they count skip them; batches apply theirs at the end.

1. `call_day_stats_apply` (migration 0012) recomputed the contributions of every call of the caller's
   number for every statement that touched a call, and every folded Mango event writes its call's
   row. It now ends before locking or recomputing anything when an UPDATE changed none of the
   rollup's columns (direction, client_phone, line_number, campaign_id, missed, answered_at,
   started_at, created_at) of any row, and when an INSERT added only bare calls (no number, not
   inbound: the worker creates a call by its entry id, then fills it in). Their delta is zero.
2. Deferred rollups for transactions that write many requests and calls (the Mango worker's batches,
   models/reports/rollups.py `deferred`): `rollups_defer()` sets `leadline.defer_rollups` for the
   transaction, and while it is on, `call_day_stats_apply` and `request_day_stats_apply` (migration
   0007) compute their deltas as before but keep them in the session's temporary `*_pending` tables;
   `rollups_flush()` sums them and applies them in key order. Concurrent batches no longer hold the
   rollup rows every write shares (one per day and city, one per campaign) from their first write to
   their commit, nor take them in opposite orders (deadlocks).

The SQL is the one models/reports/call_rollups.py and rollups.py generated when this revision was
written, frozen.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

CALL_DAY_STATS_APPLY = """
        CREATE OR REPLACE FUNCTION call_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
            deferred boolean := coalesce(current_setting('leadline.defer_rollups', true), '') = 'on';
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'INSERT' THEN
IF NOT EXISTS (SELECT 1 FROM new_rows WHERE client_phone IS NOT NULL OR direction = 'in') THEN
    RETURN NULL;
END IF;
PERFORM pg_advisory_xact_lock(7212, hashtext(n.client_phone)) FROM (SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL ORDER BY 1) AS n;
IF deferred THEN

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
    INSERT INTO pg_temp.call_day_stats_pending (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

)
INSERT INTO pg_temp.call_day_links_pending (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

;
ELSE

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
END IF;
ELSIF TG_OP = 'DELETE' THEN
PERFORM pg_advisory_xact_lock(7212, hashtext(n.client_phone)) FROM (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL ORDER BY 1) AS n;
IF deferred THEN

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
    INSERT INTO pg_temp.call_day_stats_pending (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

)
INSERT INTO pg_temp.call_day_links_pending (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

;
ELSE

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
END IF;
ELSIF TG_OP = 'UPDATE' THEN
IF NOT EXISTS (SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE (o.direction, o.client_phone, o.line_number, o.campaign_id, o.missed, o.answered_at, o.started_at, o.created_at) IS DISTINCT FROM (n.direction, n.client_phone, n.line_number, n.campaign_id, n.missed, n.answered_at, n.started_at, n.created_at)) THEN
    RETURN NULL;
END IF;
PERFORM pg_advisory_xact_lock(7212, hashtext(n.client_phone)) FROM (SELECT client_phone FROM old_rows WHERE client_phone IS NOT NULL UNION SELECT client_phone FROM new_rows WHERE client_phone IS NOT NULL ORDER BY 1) AS n;
IF deferred THEN

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
    INSERT INTO pg_temp.call_day_stats_pending (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
    
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

)
INSERT INTO pg_temp.call_day_links_pending (kind, day, city_id, campaign_id, line, ref_day, calls)

SELECT l.kind, p.day, p.city_id, p.campaign_id, p.line, l.ref_day, sum(p.sign)::int AS calls
FROM p CROSS JOIN LATERAL (VALUES (1, p.prev_source_day), (2, p.prev_city_day), (3, p.prev_any_day),
                                  (4, p.callback_day)) AS l(kind, ref_day)
WHERE l.ref_day IS NOT NULL AND CASE WHEN l.kind = 4 THEN l.ref_day > p.day ELSE p.known AND l.ref_day < p.day END
GROUP BY 1, 2, 3, 4, 5, 6
HAVING sum(p.sign) <> 0
ORDER BY 1, 2, 3, 4, 5, 6

;
ELSE

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
END IF;
            IF NOT deferred THEN
                DELETE FROM call_day_stats WHERE calls = 0;
                DELETE FROM call_day_links WHERE calls = 0;
            END IF;
            RETURN NULL;
        END
        $fn$
        """

REQUEST_DAY_STATS_APPLY = """
        CREATE OR REPLACE FUNCTION request_day_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text;
            deferred boolean := coalesce(current_setting('leadline.defer_rollups', true), '') = 'on';
        BEGIN
            SELECT time_zone INTO zone FROM report_rollups WHERE id = 1;
            IF zone IS NULL THEN
                RETURN NULL;
            END IF;
            IF TG_OP = 'INSERT' THEN
IF deferred THEN

INSERT INTO pg_temp.request_day_stats_pending (dimension, day, city_id, status, key_id, key_text, requests, result,
                                               handover, net)

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

;
ELSE

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
END IF;
ELSIF TG_OP = 'DELETE' THEN
IF deferred THEN

INSERT INTO pg_temp.request_day_stats_pending (dimension, day, city_id, status, key_id, key_text, requests, result,
                                               handover, net)

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

;
ELSE

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
END IF;
ELSIF TG_OP = 'UPDATE' THEN
IF deferred THEN

INSERT INTO pg_temp.request_day_stats_pending (dimension, day, city_id, status, key_id, key_text, requests, result,
                                               handover, net)

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

;
ELSE

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
END IF;
            IF NOT deferred THEN
                DELETE FROM request_day_stats WHERE requests = 0;
            END IF;
            RETURN NULL;
        END
        $fn$
        """

ROLLUPS_DEFER = """
        CREATE OR REPLACE FUNCTION rollups_defer() RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
            IF to_regclass('pg_temp.request_day_stats_pending') IS NULL THEN CREATE TEMP TABLE request_day_stats_pending (LIKE request_day_stats); END IF;
IF to_regclass('pg_temp.call_day_stats_pending') IS NULL THEN CREATE TEMP TABLE call_day_stats_pending (LIKE call_day_stats); END IF;
IF to_regclass('pg_temp.call_day_links_pending') IS NULL THEN CREATE TEMP TABLE call_day_links_pending (LIKE call_day_links); END IF;
            PERFORM set_config('leadline.defer_rollups', 'on', true);
        END
        $fn$
        """

ROLLUPS_FLUSH = """
        CREATE OR REPLACE FUNCTION rollups_flush() RETURNS void LANGUAGE plpgsql AS $fn$
        BEGIN
            PERFORM set_config('leadline.defer_rollups', 'off', true);
            
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
;
DELETE FROM request_day_stats WHERE requests = 0;
WITH moved AS (DELETE FROM pg_temp.call_day_stats_pending RETURNING *)
        INSERT INTO call_day_stats AS s (day, city_id, campaign_id, line, calls, missed, called_back_same_day, first_source, first_city, first_any, first_month_city, first_month_any)
        SELECT day, city_id, campaign_id, line, sum(calls)::int, sum(missed)::int, sum(called_back_same_day)::int, sum(first_source)::int, sum(first_city)::int, sum(first_any)::int, sum(first_month_city)::int, sum(first_month_any)::int FROM moved GROUP BY day, city_id, campaign_id, line HAVING sum(calls) <> 0 OR sum(missed) <> 0 OR sum(called_back_same_day) <> 0 OR sum(first_source) <> 0 OR sum(first_city) <> 0 OR sum(first_any) <> 0 OR sum(first_month_city) <> 0 OR sum(first_month_any) <> 0 ORDER BY day, city_id, campaign_id, line
        ON CONFLICT (day, city_id, campaign_id, line) DO UPDATE SET calls = s.calls + excluded.calls, missed = s.missed + excluded.missed, called_back_same_day = s.called_back_same_day + excluded.called_back_same_day, first_source = s.first_source + excluded.first_source, first_city = s.first_city + excluded.first_city, first_any = s.first_any + excluded.first_any, first_month_city = s.first_month_city + excluded.first_month_city, first_month_any = s.first_month_any + excluded.first_month_any;
WITH moved AS (DELETE FROM pg_temp.call_day_links_pending RETURNING *)
        INSERT INTO call_day_links AS s (kind, day, city_id, campaign_id, line, ref_day, calls)
        SELECT kind, day, city_id, campaign_id, line, ref_day, sum(calls)::int FROM moved GROUP BY kind, day, city_id, campaign_id, line, ref_day HAVING sum(calls) <> 0
        ORDER BY kind, day, city_id, campaign_id, line, ref_day
        ON CONFLICT (kind, day, city_id, campaign_id, line, ref_day) DO UPDATE SET calls = s.calls + excluded.calls;
DELETE FROM call_day_stats WHERE calls = 0;
DELETE FROM call_day_links WHERE calls = 0;
        END
        $fn$
        """


def upgrade() -> None:
    for statement in (CALL_DAY_STATS_APPLY, REQUEST_DAY_STATS_APPLY, ROLLUPS_DEFER, ROLLUPS_FLUSH):
        op.execute(statement)


def _frozen(filename: str):
    spec = importlib.util.spec_from_file_location(filename[:-3], Path(__file__).with_name(filename))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS rollups_flush()")
    op.execute("DROP FUNCTION IF EXISTS rollups_defer()")
    # The functions as migrations 0012 and 0007 froze them.
    op.execute(_frozen("0012_campaign_spend_call_rollup.py").FUNCTIONS[0]
               .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute(_frozen("0007_report_rollups.py").REQUEST_DAY_STATS_APPLY
               .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
