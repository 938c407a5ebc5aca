"""Benchmark of the mailbox import: recordings imported per second from a local Dovecot.

    python -m bench.recordings --database-url postgresql://postgres@127.0.0.1:5432/leadline_bench_recordings

A throw-away Dovecot (tests/imap_server.py: plain IMAP on 127.0.0.1, maildir in a temporary folder)
gets `--messages` Mango-style mails (1,000 by default), each with one MP3-looking attachment of
about `--size-kb` KB (300) named `YYYY.MM.DD__HH-MM-SS__<from>__<to>.mp3`; half the callers have a
request near the call time, so matching does real work. The database is created when missing and
migrated to head; its recordings, requests and files tables are emptied. Media goes to a temporary
folder. Then the import runs as the task runs it (`tasks.recordings.run_import`): one first run over
the whole folder, then a second run that must find nothing new.

Printed: messages appended per second (setup), recordings imported per second (wall time of the
first run), the process's CPU seconds and peak memory, the rerun's time, and the counts. Target:
≥ 30 recordings per second. Only 127.0.0.1 is contacted; Dovecot is stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from bench.support import machine_info, prepare_database

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadline_bench_recordings"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
LINE = "74951230000"
TABLES = ("recordings", "files", "request_events", "transactions", "call_legs", "calls", "requests", "jobs",
          "mailbox_states", "advertising_campaigns", "cities")
TARGET_PER_SECOND = 30


def seed(url: str, calls: list[tuple[datetime, str]], share: float, rng: random.Random) -> int:
    """Empty the tables; one city; a request near the call for `share` of the callers. Returns how many."""
    with psycopg.connect(url) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        city = conn.execute("INSERT INTO cities (name) VALUES ('Бенчмарк') RETURNING id").fetchone()[0]
        request_type = conn.execute("SELECT id FROM request_types WHERE name = 'Впервые'").fetchone()[0]
        chosen = [(when, phone) for when, phone in calls if rng.random() < share]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO requests (city_id, request_type_id, client_phone, status, created_at) "
                "VALUES (%s, %s, %s, 'Новая', %s)",
                [(city, request_type, phone, when + timedelta(seconds=rng.randint(-600, 600)))
                 for when, phone in chosen])
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE requests")
    return len(chosen)


def build_mailbox(server, count: int, size: int, rng: random.Random) -> tuple[list[tuple[datetime, str]], float]:
    from models.core.business_time import business_tz
    from tests.imap_server import mango_mail, mp3_bytes, recording_name

    now = datetime.now(timezone.utc).replace(microsecond=0)
    calls = []
    started = time.perf_counter()
    with server.client() as client:
        for n in range(count):
            when = now - timedelta(minutes=30 + n)
            phone = f"7916{n:07d}"
            calls.append((when, phone))
            jitter = rng.randint(-size // 10, size // 10)
            name = recording_name(when.astimezone(business_tz()), phone, LINE)
            client.append("INBOX", mango_mail([(name, mp3_bytes(size + jitter, n))]).as_bytes())
    return calls, time.perf_counter() - started


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
                        help="Redis for the import lock (a database the benchmark may write to)")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size-kb", type=int, default=300)
    parser.add_argument("--matched-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="leadline-bench-recordings-"))
    os.chmod(work, 0o755)
    sys.path.insert(0, str(REPO_ROOT))
    prepare_database(args.database_url)
    # The project reads its settings once, at import: everything is set before the first import.
    os.environ.update({
        "APP_ENV": "development", "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
        "MEDIA_ROOT": str(work / "media"), "QUARANTINE_ROOT": str(work / "quarantine"), "LOG_LEVEL": "WARNING",
    })
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not os.access(binary, os.X_OK):
        raise SystemExit("dovecot is missing: apt-get install -y dovecot-imapd")
    from tests.imap_server import DovecotServer

    server = DovecotServer(work / "dovecot", binary)
    os.environ.update({"IMAP_HOST": server.host, "IMAP_PORT": str(server.port), "IMAP_USER": server.user,
                       "IMAP_PASSWORD": server.password, "IMAP_SECURITY": "plain", "IMAP_FOLDER": "INBOX"})
    server.start()
    try:
        rng = random.Random(args.seed)
        calls, append_seconds = build_mailbox(server, args.messages, args.size_kb * 1024, rng)
        requests = seed(args.database_url, calls, args.matched_share, rng)
        mailbox_bytes = sum(p.stat().st_size for p in (work / "dovecot" / "mail").rglob("*") if p.is_file())

        from models.core.redis import get_redis
        from models.recordings.mailbox import IMPORT_LOCK
        from tasks.recordings import run_import

        get_redis().delete(IMPORT_LOCK)
        rss_before = peak_rss_mb()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        first = run_import(days_back=2, manual=True)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        rss_after = peak_rss_mb()
        wall1 = time.perf_counter()
        second = run_import()
        rerun = time.perf_counter() - wall1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    if first.get("result") != "succeeded":
        raise SystemExit(f"the import failed: {first}")
    per_second = first["imported"] / wall if wall else 0.0
    results: dict[str, Any] = {
        "machine": machine_info(),
        "messages": args.messages, "size_kb": args.size_kb, "mailbox_mb": round(mailbox_bytes / 2 ** 20, 1),
        "append_per_second": round(args.messages / append_seconds, 1), "requests_seeded": requests,
        "imported": first["imported"], "duplicates": first["duplicates"], "skipped": first["skipped"],
        "matched": first["matched"], "unmatched": first["unmatched"], "ambiguous": first["ambiguous"],
        "import_seconds": round(wall, 2), "imported_per_second": round(per_second, 1),
        "mb_per_second": round(mailbox_bytes / 2 ** 20 / wall, 1) if wall else None,
        "process_cpu_seconds": round(cpu, 2), "peak_rss_mb_before": round(rss_before, 1),
        "peak_rss_mb_after": round(rss_after, 1),
        "rerun_seconds": round(rerun, 3), "rerun_imported": second.get("imported"),
        "target_per_second": TARGET_PER_SECOND, "target_met": per_second >= TARGET_PER_SECOND,
    }
    print(f"mailbox: {args.messages} messages, {results['mailbox_mb']} MB, appended at "
          f"{results['append_per_second']}/s; {requests} requests seeded")
    print(f"first run: {first['imported']} imported in {wall:.2f} s = {per_second:.1f} recordings/s "
          f"({results['mb_per_second']} MB/s; target >= {TARGET_PER_SECOND}/s: "
          f"{'met' if results['target_met'] else 'NOT met'})")
    print(f"  matched {first['matched']}, unmatched {first['unmatched']}, ambiguous {first['ambiguous']}, "
          f"duplicates {first['duplicates']}, skipped {first['skipped']}")
    print(f"  process CPU {cpu:.2f} s ({cpu / wall * 100:.0f} % of one core); peak RSS {rss_before:.0f} -> "
          f"{rss_after:.0f} MB")
    print(f"second run: {second.get('imported')} imported in {rerun:.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
