"""The import of the old backend as a job, for an operator without a shell on the server (admin).

The old database and media folder are the settings LEGACY_DATABASE_URL and LEGACY_MEDIA_DIR: a
request never names a database address or a folder (it would let the API be pointed at any host of
the network or any folder of the server)."""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from sqlalchemy import select

from api.errors import ApiError
from api.extensions import Blueprint
from api.jobs.schemas import JobAcceptedSchema
from api.legacy.schemas import ImportStartSchema, ImportStateSchema
from api.security import roles_required
from models.core.db import Session
from models.core.enums import ADMIN
from models.ops.tables import Job
from settings import settings
from tasks import queue

blp = Blueprint("legacy", __name__, url_prefix="/api/admin", description="Moving in from the old backend")
JOB_KIND = "legacy.import"


@blp.route("/import-legacy")
class LegacyImport(MethodView):
    @roles_required(ADMIN)
    @blp.response(200, ImportStateSchema)
    def get(self):
        """Whether the import is configured, and the last import job (its progress, summary, report)."""
        last = Session.scalars(select(Job).where(Job.kind == JOB_KIND).order_by(Job.created_at.desc()).limit(1)).first()
        return {"configured": bool(settings.LEGACY_DATABASE_URL), "last_job": last}

    @roles_required(ADMIN)
    @blp.arguments(ImportStartSchema)
    @blp.response(202, JobAcceptedSchema)
    @blp.alt_response(409, description="Not configured, or an import is queued or running")
    def post(self, body):
        """Import the old backend's database and media folder (again: only what changed) as a job on
        the heavy queue; 202 and the job, whose row shows the progress and then the report."""
        if not settings.LEGACY_DATABASE_URL:
            raise ApiError(409, "Импорт не настроен: задайте LEGACY_DATABASE_URL (адрес старой базы)",
                           code="legacy_not_configured")
        busy = Session.scalar(select(Job.id).where(Job.kind == JOB_KIND, Job.status.in_(("queued", "running")))
                              .limit(1))
        if busy is not None:
            raise ApiError(409, "Импорт из старой системы уже выполняется", code="legacy_import_running")
        job = queue.enqueue_job(JOB_KIND, JOB_KIND, {"dry_run": body["dry_run"]}, created_by_id=g.current_user.id)
        return {"job_id": job.id, "status": job.status}
