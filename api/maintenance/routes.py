"""Database maintenance (admin): the last report of each task, and running one now.

The tasks (tasks/maintenance.py) run nightly from beat; each run is a jobs row of kind
maintenance.<name> whose result is its report. A run skipped because another maintenance task
held the lock is a failed job saying so; the report shown stays the last one that completed.
"""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select

from api.errors import ApiError
from api.jobs.routes import JobAcceptedSchema, JobSchema, enqueue_job
from api.listing import json_response
from api.security import roles_required
from models.db import Session
from models.ops import Job

blp = Blueprint("maintenance", __name__, url_prefix="/api/maintenance", description="Database maintenance")

NAMES = ("analyze", "vacuum", "index_report", "purge")
TITLES = {
    "analyze": "ANALYZE горячих таблиц",
    "vacuum": "VACUUM (ANALYZE) горячих таблиц",
    "index_report": "Отчёт об индексах и размерах таблиц",
    "purge": "Удаление устаревших записей",
}


class MaintenanceReportSchema(Schema):
    name = fields.String()
    title = fields.String()
    last_run = fields.Nested(JobSchema, allow_none=True, metadata={"description": "the newest run, any outcome"})
    report = fields.Nested(JobSchema, allow_none=True, metadata={"description": "the newest completed run"})


def _job(job: Job | None) -> dict | None:
    if job is None:
        return None
    iso = (lambda v: v.isoformat() if v else None)
    return {"id": str(job.id), "kind": job.kind, "status": job.status, "params": job.params or {},
            "result": job.result, "error": job.error, "attempts": job.attempts, "created_at": iso(job.created_at),
            "started_at": iso(job.started_at), "finished_at": iso(job.finished_at)}


def _report(name: str) -> dict:
    kind = f"maintenance.{name}"
    newest = select(Job).where(Job.kind == kind).order_by(Job.created_at.desc()).limit(1)
    last_run = Session.scalars(newest).first()
    report = Session.scalars(newest.where(Job.status == "succeeded")).first()
    return {"name": name, "title": TITLES[name], "last_run": _job(last_run), "report": _job(report)}


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
        return json_response([_report(name) for name in NAMES])


@blp.route("/reports/<name>")
class MaintenanceReport(MethodView):
    @roles_required()
    @blp.response(200, MaintenanceReportSchema)
    def get(self, name: str):
        """The newest run and completed report of one task: analyze, vacuum, index_report, purge (admin)."""
        return json_response(_report(_known(name)))


@blp.route("/<name>/run")
class MaintenanceRun(MethodView):
    @roles_required()
    @blp.response(202, JobAcceptedSchema)
    def post(self, name: str):
        """Run a maintenance task now (admin): 202 and a job; refused by the task itself (the job
        says so) while another maintenance task runs."""
        from tasks.maintenance import MAINTENANCE_TASKS

        job = enqueue_job(f"maintenance.{_known(name)}", MAINTENANCE_TASKS[name])
        return json_response({"job_id": str(job.id), "status": job.status}, 202)
