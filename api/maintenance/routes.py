"""Database maintenance (admin): the last report of each task, and running one now.

The tasks (tasks/maintenance.py) run nightly from beat; each run is a jobs row of kind
maintenance.<name> whose result is its report. A run skipped because another maintenance task
held the lock is a failed job saying so; the report shown stays the last one that completed.
"""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from sqlalchemy import select

from api.errors import ApiError
from api.extensions import Blueprint
from api.jobs.schemas import JobAcceptedSchema
from api.maintenance.schemas import MaintenanceReportSchema
from api.security import roles_required
from models.core.db import Session
from models.ops.tables import Job
from tasks import queue

blp = Blueprint("maintenance", __name__, url_prefix="/api/maintenance", description="Database maintenance")

NAMES = ("analyze", "vacuum", "index_report", "purge")
TITLES = {
    "analyze": "ANALYZE горячих таблиц",
    "vacuum": "VACUUM (ANALYZE) горячих таблиц",
    "index_report": "Отчёт об индексах и размерах таблиц",
    "purge": "Удаление устаревших записей",
}


def _report(name: str) -> dict:
    kind = f"maintenance.{name}"
    newest = select(Job).where(Job.kind == kind).order_by(Job.created_at.desc()).limit(1)
    last_run = Session.scalars(newest).first()
    report = Session.scalars(newest.where(Job.status == "succeeded")).first()
    return {"name": name, "title": TITLES[name], "last_run": last_run, "report": report}


def _known(name: str) -> str:
    if name not in NAMES:
        raise ApiError(404, "Нет такой задачи обслуживания", code="not_found")
    return name


@blp.route("/reports")
class MaintenanceReports(MethodView):
    @roles_required()
    @blp.response(200, MaintenanceReportSchema(many=True))
    def get(self):
        """The newest run and the newest completed report of every maintenance task (admin)."""
        return [_report(name) for name in NAMES]


@blp.route("/reports/<name>")
class MaintenanceReport(MethodView):
    @roles_required()
    @blp.response(200, MaintenanceReportSchema)
    def get(self, name: str):
        """The newest run and completed report of one task: analyze, vacuum, index_report, purge (admin)."""
        return _report(_known(name))


@blp.route("/<name>/run")
class MaintenanceRun(MethodView):
    @roles_required()
    @blp.response(202, JobAcceptedSchema)
    def post(self, name: str):
        """Run a maintenance task now (admin): 202 and a job; refused by the task itself (the job
        says so) while another maintenance task runs."""
        kind = f"maintenance.{_known(name)}"  # a run's job kind is its task's name
        job = queue.enqueue_job(kind, kind, created_by_id=g.current_user.id)
        return {"job_id": job.id, "status": job.status}
