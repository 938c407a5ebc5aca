"""What several benchmarks share: a database of their own, created when missing and migrated to head."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent


def prepare_database(url: str) -> None:
    """Create the database named in `url` when it is missing and migrate it to head (in a child
    process, so the benchmark's own settings are not read before it sets them)."""
    parts = urlsplit(url)
    name = parts.path.strip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    migrate = subprocess.run(
        [sys.executable, "-c", "from models import migrate; migrate.upgrade()"], cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": url, "APP_ENV": "development", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=300)
    if migrate.returncode != 0:
        raise SystemExit(f"migration failed:\n{migrate.stderr[-3000:]}")
