"""Database maintenance against the real PostgreSQL: each task runs and leaves a report the API
shows, two never run at once, and the purges delete only what is past its retention."""
from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

import tasks.maintenance as maintenance
from models.core.db import Session
from models.core.redis import get_redis
from models.ops import jobs
from models.ops.tables import Alert, AlertSilence, Job
from models.telephony.tables import MangoEvent
from settings import settings
from tests.factories import create_user
from tests.support import bearer, wait_for

NOW = datetime.now(timezone.utc)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture()
def admin(committed, client):
    user = create_user("admin")
    response = client.post("/api/auth/login", json={"login": user.login, "password": "correct-horse-42"})
    return bearer(response.json["access_token"])


def jobs_of(kind: str) -> list[Job]:
    Session.rollback()
    rows = Session.scalars(select(Job).where(Job.kind == kind).order_by(Job.created_at)).all()
    Session.rollback()
    return rows


def test_analyze_and_vacuum_cover_the_hot_tables_and_report_through_the_api(admin, client):
    maintenance.analyze()
    maintenance.vacuum()
    for name in ("analyze", "vacuum"):
        [job] = jobs_of(f"maintenance.{name}")
        assert job.status == "succeeded" and job.params == {"trigger": "beat"}
        assert [t["table"] for t in job.result["tables"]] == list(maintenance.HOT_TABLES)
        response = client.get(f"/api/maintenance/reports/{name}", headers=admin)
        assert response.status_code == 200
        body = response.json
        assert body["report"]["id"] == str(job.id) and body["last_run"]["id"] == str(job.id)
        assert body["report"]["result"]["tables"][0]["table"] == "requests"

    # VACUUM ran for real: PostgreSQL itself records it on each table.
    vacuumed = Session.execute(text(
        "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL AND relname = ANY(:t)"
    ), {"t": list(maintenance.HOT_TABLES)}).scalars().all()
    Session.rollback()
    assert set(vacuumed) == set(maintenance.HOT_TABLES)


def test_a_table_locked_by_someone_else_is_skipped_and_the_rest_vacuumed(admin, monkeypatch):
    monkeypatch.setattr(maintenance, "LOCK_TIMEOUT", "200ms")
    from models.core.db import get_engine

    with get_engine().connect() as other:
        other.execute(text("LOCK TABLE recordings IN ACCESS EXCLUSIVE MODE"))  # e.g. a long migration
        maintenance.vacuum()
        other.rollback()
    [job] = jobs_of("maintenance.vacuum")
    tables = {t["table"]: t for t in job.result["tables"]}
    assert job.status == "succeeded" and set(tables) == set(maintenance.HOT_TABLES)
    assert tables["recordings"] == {"table": "recordings", "skipped": maintenance.LOCKED}
    assert all("seconds" in t for name, t in tables.items() if name != "recordings")


def test_index_report_flags_unused_indexes(admin, client):
    with maintenance.autocommit_connection() as conn:
        conn.execute(text("CREATE INDEX IF NOT EXISTS ix_test_jobs_error ON jobs (error)"))
    try:
        maintenance.index_report_task()
    finally:
        with maintenance.autocommit_connection() as conn:
            conn.execute(text("DROP INDEX IF EXISTS ix_test_jobs_error"))
    report = client.get("/api/maintenance/reports/index_report", headers=admin).json["report"]["result"]
    indexes = {f"{i['table']}.{i['index']}": i for i in report["indexes"]}
    assert indexes["jobs.ix_test_jobs_error"]["scans"] == 0 and indexes["jobs.ix_test_jobs_error"]["unused"]
    assert "jobs.ix_test_jobs_error" in report["unused_indexes"]
    # Primary keys and unique indexes enforce something: never proposed for removal.
    assert indexes["jobs.pk_jobs"]["is_primary"] and "jobs.pk_jobs" not in report["unused_indexes"]
    tables = {t["table"]: t for t in report["tables"]}
    assert set(maintenance.HOT_TABLES) <= set(tables)
    assert tables["jobs"]["total_bytes"] >= tables["jobs"]["table_bytes"] + tables["jobs"]["index_bytes"] - 8192
    assert report["database_bytes"] > 0


def test_a_run_while_another_holds_the_lock_is_skipped_and_says_so(admin, client):
    maintenance.analyze()
    holder = get_redis().lock(maintenance.MAINTENANCE_LOCK, timeout=60)
    assert holder.acquire(blocking=False, token=f"vacuum:{uuid.uuid4()}")
    try:
        assert maintenance.analyze() == {"skipped": True, "running": "vacuum"}
    finally:
        holder.release()
    first, skipped = jobs_of("maintenance.analyze")
    assert skipped.status == "failed" and skipped.error == "Пропущено: уже выполняется обслуживание «vacuum»"
    assert skipped.result == {"skipped": True, "running": "vacuum"}
    body = client.get("/api/maintenance/reports/analyze", headers=admin).json
    assert body["last_run"]["id"] == str(skipped.id) and body["last_run"]["error"].startswith("Пропущено")
    assert body["report"]["id"] == str(first.id)  # the last completed report is still shown
    # Free again: the next run works.
    maintenance.analyze()
    assert jobs_of("maintenance.analyze")[-1].status == "succeeded"


def test_a_run_redelivered_after_its_worker_died_takes_its_own_lock_back(admin):
    """The dead attempt's lock (same job, same token) does not make the redelivery skip itself."""
    job = jobs.create_job("maintenance.analyze", {"trigger": "manual"})
    Session.commit()
    left_behind = get_redis().lock(maintenance.MAINTENANCE_LOCK, timeout=60)
    assert left_behind.acquire(blocking=False, token=f"analyze:{job.id}")  # the attempt that died
    assert maintenance.analyze(str(job.id)) == {"ok": True}
    [run] = jobs_of("maintenance.analyze")
    assert run.id == job.id and run.status == "succeeded"
    assert get_redis().get(maintenance.MAINTENANCE_LOCK) is None  # released after the run


def test_purge_deletes_only_what_is_old(admin, client, monkeypatch):
    monkeypatch.setattr(maintenance, "settings", dataclasses.replace(
        settings, RETENTION_INBOX_DAYS=30, RETENTION_JOBS_DAYS=30, RETENTION_ALERTS_DAYS=90, MAINTENANCE_BATCH_SIZE=2))

    def event(key, status, received, processed=None):
        return MangoEvent(dedupe_key=key, event_type="call", status=status, received_at=received,
                          processed_at=processed, payload={})

    Session.add_all([
        event("old-processed-1", "processed", days_ago(45), days_ago(45)),
        event("old-processed-2", "processed", days_ago(40), days_ago(40)),
        event("old-processed-3", "processed", days_ago(31), days_ago(31)),
        event("recent-processed", "processed", days_ago(40), days_ago(10)),  # processed late: kept
        event("old-pending", "pending", days_ago(60)),
        event("old-failed", "failed", days_ago(60), days_ago(60)),  # an admin may still replay it
    ])
    Session.add_all([
        Job(kind="ping", status="succeeded", created_at=days_ago(50), finished_at=days_ago(50)),
        Job(kind="ping", status="failed", created_at=days_ago(45), finished_at=days_ago(45)),
        Job(kind="ping", status="succeeded", created_at=days_ago(40), finished_at=days_ago(40)),
        Job(kind="files.validate", status="running", created_at=days_ago(60)),  # unfinished: kept
        Job(kind="ping", status="succeeded", created_at=days_ago(35), finished_at=days_ago(5)),  # finished lately
    ])
    Session.add_all([
        Alert(rule="beat_silent", severity="critical", status="resolved", message="a", fired_at=days_ago(120),
              resolved_at=days_ago(100)),
        Alert(rule="inbox_lag", severity="warning", status="resolved", message="b", fired_at=days_ago(95),
              resolved_at=days_ago(91)),
        Alert(rule="host_cpu", severity="warning", status="resolved", message="c", fired_at=days_ago(100),
              resolved_at=days_ago(10)),
        Alert(rule="disk_media", severity="critical", status="firing", message="d", fired_at=days_ago(200)),
    ])
    Session.add_all([
        AlertSilence(rule="host_cpu", until=days_ago(1)),
        AlertSilence(rule="host_memory", until=NOW + timedelta(hours=1)),
    ])
    Session.commit()

    maintenance.purge()

    Session.rollback()
    assert set(Session.scalars(select(MangoEvent.dedupe_key))) == {"recent-processed", "old-pending", "old-failed"}
    remaining_jobs = Session.execute(select(Job.kind, Job.status, Job.finished_at)
                                     .where(Job.kind != "maintenance.purge").order_by(Job.created_at)).all()
    assert [(k, s) for k, s, _ in remaining_jobs] == [("files.validate", "running"), ("ping", "succeeded")]
    assert remaining_jobs[1].finished_at > days_ago(6)
    assert set(Session.scalars(select(Alert.rule))) == {"host_cpu", "disk_media"}
    assert set(Session.scalars(select(AlertSilence.rule))) == {"host_memory"}
    Session.rollback()

    report = client.get("/api/maintenance/reports/purge", headers=admin).json["report"]["result"]
    assert report["mango_events"]["deleted"] == 3 and report["mango_events"]["batches"] == 2
    assert report["jobs"]["deleted"] == 3 and report["alerts"]["deleted"] == 2
    assert report["alert_silences"]["deleted"] == 1


def test_purge_deletes_old_telegram_messages_once_they_are_done_with(committed, monkeypatch):
    from models.telegram.tables import TelegramOutbox

    monkeypatch.setattr(maintenance, "settings", dataclasses.replace(settings, RETENTION_TELEGRAM_DAYS=30))
    Session.add_all([TelegramOutbox(chat_id="1", kind="reply", text=name, status=status, created_at=created)
                     for name, status, created in (("old sent", "sent", days_ago(40)),
                                                   ("old failed", "failed", days_ago(31)),
                                                   ("old pending", "pending", days_ago(40)),  # still to send
                                                   ("recent sent", "sent", days_ago(5)))])
    Session.commit()
    maintenance.purge()
    Session.rollback()
    assert set(Session.scalars(select(TelegramOutbox.text))) == {"old pending", "recent sent"}


def test_purge_keeps_the_newest_report_of_each_task_however_old(admin, monkeypatch):
    monkeypatch.setattr(maintenance, "settings", dataclasses.replace(settings, RETENTION_JOBS_DAYS=1))
    Session.add(Job(kind="maintenance.vacuum", status="succeeded", result={"tables": []},
                    created_at=days_ago(400), finished_at=days_ago(400)))
    Session.commit()
    maintenance.purge()
    assert len(jobs_of("maintenance.vacuum")) == 1


def test_run_through_the_api_and_the_heavy_worker(admin, client, celery_worker_thread):
    response = client.post("/api/maintenance/index_report/run", headers=admin)
    assert response.status_code == 202
    job_id = response.json["job_id"]

    def finished():
        body = client.get(f"/api/jobs/{job_id}", headers=admin).json
        return body if body["status"] in ("succeeded", "failed") else None

    job = wait_for(finished, timeout=60)
    assert job["status"] == "succeeded" and job["kind"] == "maintenance.index_report"
    reports = {r["name"]: r for r in client.get("/api/maintenance/reports", headers=admin).json}
    assert set(reports) == {"analyze", "vacuum", "index_report", "purge"}
    assert reports["index_report"]["report"]["id"] == job_id
    assert reports["vacuum"]["report"] is None and reports["vacuum"]["last_run"] is None


def test_unknown_task_is_a_404(admin, client):
    for method, path in (("GET", "/api/maintenance/reports/drop_everything"),
                         ("POST", "/api/maintenance/drop_everything/run")):
        response = client.open(path, method=method, headers=admin)
        assert response.status_code == 404 and response.json["detail"] == "Нет такой задачи обслуживания"
    Session.rollback()
    assert Session.scalar(select(func.count()).select_from(Job)) == 0


def test_beat_runs_the_maintenance_at_night_on_the_heavy_queue():
    from beat.schedule import SCHEDULE

    entries = {name: e for name, e in SCHEDULE.items() if e["task"].startswith("maintenance.")
               and e["task"] != "maintenance.heartbeat"}
    assert {e["task"] for e in entries.values()} == {f"maintenance.{n}" for n in maintenance.MAINTENANCE_WORK}
    for entry in entries.values():
        assert entry["options"]["queue"] == "heavy"
        start = settings.MAINTENANCE_HOUR_UTC
        assert entry["schedule"].hour <= {start, (start + 1) % 24} and len(entry["schedule"].hour) == 1


@pytest.mark.parametrize("role", ["manager", "director", "callcentr", "avitolog", "master"])
def test_only_administrators_run_maintenance(committed, client, role):
    user = create_user(role)
    token = client.post("/api/auth/login", json={"login": user.login, "password": "correct-horse-42"}).json
    response = client.post("/api/maintenance/vacuum/run", headers=bearer(token["access_token"]))
    assert response.status_code == 403 and response.json["detail"] == "Недостаточно прав"
    Session.rollback()
    assert Session.scalar(select(func.count()).select_from(Job)) == 0
