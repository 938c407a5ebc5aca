"""Benchmark of the import of the old backend: a full import, then a delta after a day of changes.

    python -m bench.legacy_import --database-url postgresql://postgres@127.0.0.1:5432/leadline_bench_legacy

An old database is built in PostgreSQL with the old schema (tests/legacy_source.py, the tests' own
builder) and filled with `--requests` requests (100,000), `--transactions` cash rows (20,000), 60
users (40 masters, 15 employees, 5 administrators, bcrypt hashes) and about `--files` file paths
(5,000) whose bytes (`--file-kb` each, one in eight missing) are written to a temporary old media
folder. leadline's database is created when missing, migrated to head and emptied; its MEDIA_ROOT is
a temporary folder on the same filesystem (so files are hard-linked, as in a deployment that mounts
both on one volume; every file is still read whole for its SHA-256).

Then `flask --app api import-legacy` runs as a child process, twice: the full import, then the
delta after `change()` touched 1 % of the requests (updated and added) and some cash rows. Both runs
include the verification at their end. Printed: wall time of each run, the child's peak RSS, rows
per second, and the targets: full ≤ 60 s, delta ≤ 10 s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.support import machine_info, prepare_database

REPO_ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).with_name("flask"))
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadline_bench_legacy"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
TARGET_FULL_SECONDS, TARGET_DELTA_SECONDS = 60, 10


def empty_target(url: str) -> None:
    with psycopg.connect(url) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT IN "
            "('alembic_version', 'roles', 'request_types', 'transaction_types', 'report_rollups')")]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        conn.execute("DELETE FROM request_types WHERE name NOT IN ('Впервые', 'Повтор')")
        conn.execute("DELETE FROM transaction_types WHERE name NOT IN ('Приход', 'Расход')")


def build_source(url: str, args, media: Path) -> dict:
    from tests import legacy_source

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    source = legacy_source.create_database(admin, parts.path.strip("/"))
    started = time.monotonic()
    with psycopg.connect(source) as conn:
        legacy_source.create_schema(conn)
        generated = legacy_source.fill(conn, requests=args.requests, transactions=args.transactions, masters=40,
                                       employees=15, administrators=5, files=args.files, media=media,
                                       file_size=args.file_kb * 1024)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"seconds": round(time.monotonic() - started, 1), "files_present": len(generated.present_files),
            "files_missing": len(generated.missing_files)}


def run_import(env: dict, source: str, media: Path, report: Path) -> dict:
    """One `flask --app api import-legacy` run as a child process: wall and CPU time, peak RSS (sampled
    every 50 ms) and its console summary."""
    import psutil

    started = time.monotonic()
    process = psutil.Popen([FLASK, "--app", "api", "import-legacy", "--source", source, "--media", str(media),
                            "--report", str(report)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    peak = cpu = 0.0
    while process.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
            times = process.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    stdout, stderr = process.communicate()
    seconds = time.monotonic() - started
    if process.returncode != 0:
        print(stdout[-4000:], stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"import-legacy exited {process.returncode}")
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "peak_rss_mb": round(peak / 2 ** 20, 1),
            "summary": [line for line in stdout.splitlines() if line.strip()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--source-url", default=None, help="default: <database>_old_backend on the same server")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=5_000)
    parser.add_argument("--file-kb", type=int, default=100)
    parser.add_argument("--changed", type=float, default=0.01, help="share of requests changed before the delta")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    source_url = args.source_url or args.database_url + "_old_backend"

    prepare_database(args.database_url)
    empty_target(args.database_url)
    work = Path(tempfile.mkdtemp(prefix="leadline-bench-legacy-"))
    try:
        media, target_media = work / "old-media", work / "media"
        setup = build_source(source_url, args, media)
        print(f"old database built in {setup['seconds']} s ({args.requests} requests, {args.transactions} cash rows, "
              f"60 users, {setup['files_present']} files present + {setup['files_missing']} missing)")
        env = {**os.environ, "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "APP_ENV": "development",
               "MEDIA_ROOT": str(target_media), "QUARANTINE_ROOT": str(work / "quarantine"),
               "PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "WARNING", "MANGO_ENABLED": "false"}
        full = run_import(env, source_url, media, work / "full-report.markdown")
        print(f"full import: {full['seconds']} s wall, {full['cpu_seconds']} s CPU (importer process), "
              f"peak RSS {full['peak_rss_mb']} MB, {args.requests / full['seconds']:.0f} requests/s")
        for line in full["summary"]:
            if not line.startswith("    "):
                print("  " + line)
        from tests import legacy_source

        with psycopg.connect(source_url) as conn:
            changes = legacy_source.change(conn, fraction=args.changed)
        delta = run_import(env, source_url, media, work / "delta-report.markdown")
        print(f"delta import ({changes}): {delta['seconds']} s wall, {delta['cpu_seconds']} s CPU, "
              f"peak RSS {delta['peak_rss_mb']} MB")
        for line in delta["summary"]:
            if not line.startswith("    "):
                print("  " + line)
        verdict = {"full_ok": full["seconds"] <= TARGET_FULL_SECONDS,
                   "delta_ok": delta["seconds"] <= TARGET_DELTA_SECONDS}
        print(f"targets: full ≤ {TARGET_FULL_SECONDS} s: {'met' if verdict['full_ok'] else 'MISSED'}; "
              f"delta ≤ {TARGET_DELTA_SECONDS} s: {'met' if verdict['delta_ok'] else 'MISSED'}")
        figures = {"machine": machine_info(), "setup": setup, "full": full, "delta": delta, "changes": changes,
                   "targets": verdict, "args": {k: str(v) for k, v in vars(args).items()}}
        if args.json:
            args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
