"""Background jobs: their state, and a no-op job that proves the workers run."""
from __future__ import annotations

import uuid

from flask import g
from flask.views import MethodView

from api.errors import ApiError
from api.extensions import Blueprint
from api.jobs.schemas import JobAcceptedSchema, JobSchema
from api.security import login_required, roles_required
from models.core.db import Session
from models.core.enums import ADMIN, MANAGER
from models.ops.tables import Job
from tasks import queue

blp = Blueprint("jobs", __name__, url_prefix="/api/jobs", description="Background jobs")


@blp.route("/<job_id>")
class JobItem(MethodView):
    @login_required
    @blp.response(200, JobSchema)
    def get(self, job_id: str):
        """State of a job: queued, running, succeeded or failed."""
        try:
            key = uuid.UUID(job_id)
        except ValueError:
            raise ApiError(404, "Задача не найдена", code="job_not_found")
        job = Session.get(Job, key)
        user = g.current_user
        if job is None or (job.created_by_id != user.id and user.role_name not in (ADMIN, MANAGER)):
            raise ApiError(404, "Задача не найдена", code="job_not_found")
        return job


@blp.route("/ping")
class JobPing(MethodView):
    @roles_required(ADMIN)
    @blp.response(202, JobAcceptedSchema)
    def post(self):
        """Enqueue a no-op job (admin): shows that a worker picks up and finishes work."""
        job = queue.enqueue_job("ping", "jobs.ping", created_by_id=g.current_user.id)
        return {"job_id": job.id, "status": job.status}
