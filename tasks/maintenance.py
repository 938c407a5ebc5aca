"""Database and platform maintenance."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from models.core import probes
from models.core.db import Session, get_engine, unit_of_work
from models.core.redis import SingleFlight, get_redis, key
from models.ops import jobs
from settings import settings
from tasks.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name="maintenance.heartbeat", soft_time_limit=10, time_limit=20)
def heartbeat() -> None:
    """Enqueued by beat on a fixed interval; readiness reads how fresh it is."""
    get_redis().set(probes.HEARTBEAT_KEY, f"{time.time():.3f}", ex=24 * 3600)


# ---- database maintenance -----------------------------------------------------------------------------
# Nightly from beat (beat/schedule.py), or on demand through POST /api/maintenance/<name>/run. Each
# run is a jobs row of kind maintenance.<name> whose result is the report the API shows. One Redis
# lock covers them all, so two never run at once: a run that finds the lock taken records that it
# was skipped and why.

HOT_TABLES = ("requests", "transactions", "mango_events", "calls", "call_legs", "recordings", "files", "jobs")
MAINTENANCE_LOCK = key("lock", "maintenance")
MAINTENANCE_LOCK_SECONDS = 3600  # longer than the longest task's hard limit
SKIPPED_PREFIX = "Пропущено"
LOCK_TIMEOUT = "10s"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@contextmanager
def autocommit_connection() -> Iterator[Connection]:
    """VACUUM cannot run inside a transaction block; nor should a long ANALYZE hold one."""
    with get_engine().connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SET statement_timeout = 0"))
        # Never queue behind a long lock (and block everyone queued behind us): skip the table.
        conn.execute(text("SELECT set_config('lock_timeout', :t, false)"), {"t": LOCK_TIMEOUT})
        yield conn


def _quoted(table: str) -> str:
    if table not in HOT_TABLES:
        raise ValueError(f"not a maintained table: {table}")
    return f'"{table}"'


LOCKED = "таблица занята другой операцией, пропущена"


def _locked(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "55P03"  # lock_not_available: lock_timeout expired


def analyze_tables() -> dict[str, Any]:
    tables = []
    with autocommit_connection() as conn:
        for table in HOT_TABLES:
            started = time.monotonic()
            try:
                conn.execute(text(f"ANALYZE {_quoted(table)}"))
            except OperationalError as exc:
                if not _locked(exc):
                    raise
                tables.append({"table": table, "skipped": LOCKED})
                continue
            tables.append({"table": table, "seconds": round(time.monotonic() - started, 3)})
    return {"tables": tables}


def _table_stats(conn: Connection, table: str) -> dict[str, Any]:
    row = conn.execute(text(
        "SELECT s.n_live_tup, s.n_dead_tup, pg_total_relation_size(s.relid) AS total_bytes "
        "FROM pg_stat_user_tables s WHERE s.schemaname = current_schema() AND s.relname = :t"
    ), {"t": table}).mappings().first()
    return dict(row) if row else {}


def vacuum_tables() -> dict[str, Any]:
    tables = []
    with autocommit_connection() as conn:
        for table in HOT_TABLES:
            started = time.monotonic()
            try:  # e.g. a long ALTER holds the table: skip it, the others go on
                before = _table_stats(conn, table)
                conn.execute(text(f"VACUUM (ANALYZE) {_quoted(table)}"))
                after = _table_stats(conn, table)
            except OperationalError as exc:
                if not _locked(exc):
                    raise
                tables.append({"table": table, "skipped": LOCKED})
                continue
            tables.append({
                "table": table,
                "seconds": round(time.monotonic() - started, 3),
                "dead_rows_before": before.get("n_dead_tup"),
                "live_rows": after.get("n_live_tup"),
                "total_bytes": after.get("total_bytes"),
            })
    return {"tables": tables}


def index_report() -> dict[str, Any]:
    """Index usage and table sizes. An index never scanned since the statistics were reset, that
    enforces nothing (not unique, not a primary key), is flagged unused: a candidate to drop."""
    with autocommit_connection() as conn:
        indexes = [dict(row) for row in conn.execute(text(
            "SELECT s.relname AS table, s.indexrelname AS index, s.idx_scan AS scans, "
            "       pg_relation_size(s.indexrelid) AS size_bytes, i.indisunique AS is_unique, "
            "       i.indisprimary AS is_primary "
            "FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid "
            "WHERE s.schemaname = current_schema() "
            "ORDER BY pg_relation_size(s.indexrelid) DESC, s.indexrelname"
        )).mappings()]
        tables = [dict(row) for row in conn.execute(text(
            "SELECT s.relname AS table, pg_total_relation_size(s.relid) AS total_bytes, "
            "       pg_relation_size(s.relid) AS table_bytes, pg_indexes_size(s.relid) AS index_bytes, "
            "       s.n_live_tup AS live_rows, s.n_dead_tup AS dead_rows, s.seq_scan AS seq_scans, "
            "       s.idx_scan AS index_scans, greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum, "
            "       greatest(s.last_analyze, s.last_autoanalyze) AS last_analyze "
            "FROM pg_stat_user_tables s WHERE s.schemaname = current_schema() "
            "ORDER BY pg_total_relation_size(s.relid) DESC, s.relname"
        )).mappings()]
        database = conn.execute(text(
            "SELECT pg_database_size(current_database()) AS size_bytes, stats_reset "
            "FROM pg_stat_database WHERE datname = current_database()"
        )).mappings().first()
    for index in indexes:
        index["unused"] = index["scans"] == 0 and not index["is_unique"] and not index["is_primary"]
    for table in tables:
        for name in ("last_vacuum", "last_analyze"):
            table[name] = table[name].isoformat() if table[name] else None
    stats_reset = database["stats_reset"] if database else None
    return {
        "database_bytes": database["size_bytes"] if database else None,
        "stats_since": stats_reset.isoformat() if stats_reset else None,
        "unused_indexes": [f"{i['table']}.{i['index']}" for i in indexes if i["unused"]],
        "indexes": indexes,
        "tables": tables,
    }


PURGES = {
    # name: (DELETE of one batch, the retention setting in days)
    "mango_events": (
        "DELETE FROM mango_events WHERE id IN (SELECT id FROM mango_events WHERE status = 'processed' "
        "AND processed_at < :cutoff ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)",
        "RETENTION_INBOX_DAYS",
    ),
    # Finished jobs only; the newest of each kind stays, so the last report of a task never goes.
    "jobs": (
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status IN ('succeeded', 'failed') "
        "AND coalesce(finished_at, created_at) < :cutoff "
        "AND id NOT IN (SELECT DISTINCT ON (kind) id FROM jobs ORDER BY kind, created_at DESC) "
        "ORDER BY created_at LIMIT :batch FOR UPDATE SKIP LOCKED)",
        "RETENTION_JOBS_DAYS",
    ),
    # Resolved alerts only: a firing one is current, whatever its age.
    "alerts": (
        "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE status = 'resolved' "
        "AND resolved_at < :cutoff ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)",
        "RETENTION_ALERTS_DAYS",
    ),
    # Telegram messages once sent (or given up): their text holds clients' names and phones.
    "telegram_outbox": (
        "DELETE FROM telegram_outbox WHERE id IN (SELECT id FROM telegram_outbox WHERE status <> 'pending' "
        "AND created_at < :cutoff ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED)",
        "RETENTION_TELEGRAM_DAYS",
    ),
}


def purge_old_rows(now: datetime | None = None) -> dict[str, Any]:
    """Delete rows past their retention in batches, one short unit of work per batch."""
    now = now or _utcnow()
    batch = max(1, settings.MAINTENANCE_BATCH_SIZE)
    report: dict[str, Any] = {}
    for name, (sql, setting_name) in PURGES.items():
        days = getattr(settings, setting_name)
        cutoff = now - timedelta(days=days)
        deleted = batches = 0
        while True:
            with unit_of_work():
                count = Session.execute(text(sql), {"cutoff": cutoff, "batch": batch}).rowcount
            deleted += count
            batches += 1
            if count < batch:
                break
        report[name] = {"deleted": deleted, "batches": batches, "older_than_days": days,
                        "cutoff": cutoff.isoformat()}
    with unit_of_work():
        expired = Session.execute(text("DELETE FROM alert_silences WHERE until < :now"), {"now": now}).rowcount
    report["alert_silences"] = {"deleted": expired}
    return report


MAINTENANCE_WORK: dict[str, Callable[[], dict[str, Any]]] = {
    "analyze": analyze_tables,
    "vacuum": vacuum_tables,
    "index_report": index_report,
    "purge": purge_old_rows,
}


def _skip(job_id: str, holder: str) -> dict[str, Any]:
    running = holder.split(":", 1)[0] if holder else "?"
    jobs.fail(job_id, f"{SKIPPED_PREFIX}: уже выполняется обслуживание «{running}»",
              result={"skipped": True, "running": running})
    log.warning("maintenance: %s skipped, %s is running", job_id, running)
    return {"skipped": True, "running": running}


def run_maintenance(name: str, job_id: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Run one maintenance task under the shared lock, recording it in its job row."""
    work = MAINTENANCE_WORK[name]
    if job_id is None:  # from beat: the run gets its own row, found again when its message is redelivered
        job_id = jobs.ensure_job(f"maintenance.{name}", {"trigger": "beat"}, run_id)
    if not jobs.claim(job_id):
        return {"skipped": True, "reason": "finished"}  # a redelivery of a finished run
    # The job id in the token: a run redelivered after its worker died takes its own lock back.
    lock = SingleFlight(MAINTENANCE_LOCK, MAINTENANCE_LOCK_SECONDS, token=f"{name}:{job_id}")
    if not lock.acquire():
        return _skip(job_id, lock.holder() or "")
    try:
        started = time.monotonic()
        result = work()
        result["seconds"] = round(time.monotonic() - started, 3)
        jobs.succeed(job_id, result)
        log.info("maintenance.%s finished in %.1f s", name, result["seconds"])
        return {"ok": True}
    except Exception as exc:
        jobs.fail(job_id, f"{type(exc).__name__}: {str(exc)[:500]}")
        raise
    finally:
        lock.release()


@celery_app.task(name="maintenance.analyze", bind=True, soft_time_limit=1800, time_limit=1900)
def analyze(self, job_id: str | None = None) -> dict[str, Any]:
    """ANALYZE of the hot tables: fresh planner statistics."""
    return run_maintenance("analyze", job_id, self.request.id)


@celery_app.task(name="maintenance.vacuum", bind=True, soft_time_limit=3300, time_limit=3500)
def vacuum(self, job_id: str | None = None) -> dict[str, Any]:
    """VACUUM (ANALYZE) of the hot tables, outside any transaction."""
    return run_maintenance("vacuum", job_id, self.request.id)


@celery_app.task(name="maintenance.index_report", bind=True, soft_time_limit=300, time_limit=360)
def index_report_task(self, job_id: str | None = None) -> dict[str, Any]:
    """Index usage and table sizes, stored as the job's result."""
    return run_maintenance("index_report", job_id, self.request.id)


@celery_app.task(name="maintenance.purge", bind=True, soft_time_limit=1800, time_limit=1900)
def purge(self, job_id: str | None = None) -> dict[str, Any]:
    """Retention: processed inbox rows, finished jobs and resolved alerts past their days."""
    return run_maintenance("purge", job_id, self.request.id)
