"""What several benchmarks share: a database of their own, a free port, the machine they ran on, and
the `make run` stack (started exactly as `make run` starts it, with a var folder and ports of its own;
its processes by role)."""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import requests

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


# ---- the `make run` stack ------------------------------------------------------------------------

def role(process: psutil.Process, parent_role: str | None) -> str:
    """What a process of the stack is, from its command line (a child takes its parent's role)."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return parent_role or "?"
    if (" stack" in command and "flask" in command) or "-m supervise" in command:
        return "stack"
    if "supervisord" in command:
        return "supervisor"
    if "honcho" in command:
        return "honcho"
    if "gunicorn" in command:
        return "api"
    if "celery" in command:
        for name in ("flower", "beat"):
            if f" {name}" in command:
                return name
        for queue in ("light", "heavy"):
            if f"--queues {queue}" in command:
                return queue
    return parent_role or process.name()


def tree(root: psutil.Process) -> list[tuple[psutil.Process, str]]:
    """Every process of the stack's tree (depth first, a parent before its children) with its role."""
    found: list[tuple[psutil.Process, str]] = []

    def walk(process: psutil.Process, parent_role: str | None) -> None:
        name = role(process, parent_role)
        found.append((process, name))
        try:
            children = process.children()
        except psutil.Error:
            children = []
        for child in children:
            walk(child, name)

    walk(root, None)
    return found


def start_stack(var_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None
                ) -> tuple[subprocess.Popen, dict[str, str]]:
    """`flask --app api stack` as `make run` runs it, default settings but for free ports and `var_dir`
    (embedded PostgreSQL and Redis of its own), output to `log_path`, in a session of its own (a
    Ctrl-C meant for the benchmark does not reach it). Returns the process and its environment."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR",
                           "API_WORKERS")}
    env.update(APP_ENV="development", LEADLINE_VAR_DIR=str(var_dir), XDG_RUNTIME_DIR=str(var_dir / "run"),
               API_PORT=str(free_port()), FLOWER_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    env.update(extra_env or {})
    flask = str(Path(sys.executable).parent / "flask")
    with open(log_path, "wb") as out:
        process = subprocess.Popen([flask, "--app", "api", "stack"], cwd=REPO_ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    return process, env


def wait_ready(process: subprocess.Popen, api: str, log_path: Path, timeout: float = 180) -> None:
    """Until /api/health/ready answers 200 with both workers answering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the stack ended early:\n{log_path.read_text(errors='replace')[-5000:]}")
        try:
            answer = requests.get(f"{api}/health/ready", timeout=5)
            detail = answer.json()["checks"]["worker"]["detail"] if answer.status_code == 200 else ""
            if "light@" in detail and "heavy@" in detail:
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the stack was not ready in {timeout} s:\n{log_path.read_text(errors='replace')[-5000:]}")


def embedded_call(env: dict[str, str], statement: str, timeout: float = 120) -> str:
    """Run `import embedded; <statement>` in a child process with the stack's environment (its var
    folder: the embedded module reads it at import); returns what it printed."""
    done = subprocess.run([sys.executable, "-c", f"import embedded; {statement}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"embedded: {statement}: {done.stderr[-2000:]}")
    return done.stdout.strip()


def stop_stack(process: subprocess.Popen, env: dict[str, str]) -> None:
    """SIGTERM to the stack (it stops its processes, then the embedded services), SIGKILL to its
    process group after 90 s and to any process of its tree still there (supervisord runs in a
    session of its own); then the embedded services are stopped in any case."""
    try:
        processes = [found for found, _role in tree(psutil.Process(process.pid))]
    except psutil.Error:
        processes = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    for left in processes:
        try:
            if left.is_running() and left.status() != psutil.STATUS_ZOMBIE:
                left.kill()
        except psutil.Error:
            pass
    subprocess.run([sys.executable, "-c", "import embedded; embedded.stop_all()"], cwd=REPO_ROOT,
                   env=env, capture_output=True, timeout=60)
