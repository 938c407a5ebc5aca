"""The import as the CLI and the worker run it: import, verify, write the report."""
from __future__ import annotations

import time

from models.legacy.importer import Importer, Progress
from models.legacy.report import Report
from models.legacy.verify import Verification, verify


def run_import(source_url: str, *, media_dir: str | None = None, dry_run: bool = False,
               report_path: str | None = None, progress: Progress | None = None,
               batch_size: int = 5000) -> tuple[Report, Verification | None]:
    """Import the old database (and media folder), then verify it (not after a dry run: nothing was
    written). The report is written to `report_path` (Markdown, or CSV for a .csv name) when given."""
    report = Importer(source_url, media_dir=media_dir, dry_run=dry_run, progress=progress,
                      batch_size=batch_size).run()
    verification = None
    if not dry_run:
        started = time.monotonic()
        verification = verify(source_url)
        report.verification = verification.differences
        report.verify_seconds = time.monotonic() - started
    if report_path:
        report.write(report_path)
    return report, verification
