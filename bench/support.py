"""What several benchmarks share: a database of their own, a free port, the machine they ran on."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

from embedded import free_port  # noqa: F401 - one place for a free loopback port

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
        [sys.executable, "-c", "from models.core import migrate; migrate.upgrade()"], cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": url, "APP_ENV": "development", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=300)
    if migrate.returncode != 0:
        raise SystemExit(f"migration failed:\n{migrate.stderr[-3000:]}")


def machine_info() -> dict[str, Any]:
    """What the figures were measured on, printed and saved with them."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "postgres_and_redis": "same machine",
    }
