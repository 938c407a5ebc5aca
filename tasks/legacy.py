"""The import of the old backend as a job (POST /api/admin/import-legacy), on the heavy queue.

The source is LEGACY_DATABASE_URL and LEGACY_MEDIA_DIR, never a request's: the API takes no database
address from a client. The job row shows the table being imported and how far it is; its result is
the report's summary (and its Markdown); a verification that finds differences fails the job with
them. A redelivered message finds its job finished and does nothing; a run that died meanwhile is run
again, and the import's own mapping makes that a continuation."""
from __future__ import annotations

import logging
import time

from models.legacy.importer import ImportRefused
from models.legacy.service import run_import
from models.legacy.source import SourceUnavailable
from models.ops import jobs
from settings import settings
from tasks.celery_app import celery_app

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0
REPORT_MAX_CHARS = 200_000


class JobProgress:
    """Writes the import's progress into the job row, at most once a second (its own commits)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.last = 0.0
        self.tables: dict[str, dict[str, int]] = {}

    def __call__(self, table: str, done: int, total: int) -> None:
        self.tables[table] = {"done": done, "total": total}
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_SECONDS and done < total:
            return
        self.last = now
        jobs.record_progress(self.job_id, {"table": table, "done": done, "total": total, "tables": self.tables})


@celery_app.task(name="legacy.import", soft_time_limit=settings.LEGACY_IMPORT_TIME_LIMIT - 60,
                 time_limit=settings.LEGACY_IMPORT_TIME_LIMIT)
def import_legacy(job_id: str) -> None:
    if not jobs.claim(job_id):
        return  # finished already: a redelivery does nothing
    params = jobs.params_of(job_id)
    try:
        report, verification = run_import(settings.LEGACY_DATABASE_URL, media_dir=settings.LEGACY_MEDIA_DIR,
                                          dry_run=bool(params.get("dry_run")), progress=JobProgress(job_id))
    except (ImportRefused, SourceUnavailable) as exc:
        jobs.fail(job_id, str(exc))
        return
    except Exception as exc:
        jobs.fail(job_id, f"{type(exc).__name__}: {str(exc)[:500]}")
        raise
    result = {**report.summary(), "report": report.markdown()[:REPORT_MAX_CHARS]}
    if verification is not None and not verification.ok:
        jobs.fail(job_id, f"Сверка нашла расхождений: {len(verification.differences)}", result=result)
        return
    jobs.succeed(job_id, result)
    log.info("legacy import job %s done in %.1f s", job_id, report.seconds)
