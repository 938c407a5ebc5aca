"""Benchmark of the file pipeline: uploads accepted per second by the API, and files validated per
second by one heavy worker, for 1 MB JPEG photos and 5 MB MP3 recordings.

    python -m bench.files [--database-url postgresql://postgres@127.0.0.1:5432/leadline_bench_files]
                          [--redis-url redis://127.0.0.1:6379/13] [--jpegs 200] [--mp3s 60] [--clients 4]
                          [--backend local|s3] [--s3-endpoint http://127.0.0.1:9000]

What runs, all on 127.0.0.1 and bounded in count and time:
1. the database (created if missing, migrated, its files/jobs emptied) gets a city, an admin and 50
   requests; the Redis database given is flushed (it must be one nobody else uses);
2. gunicorn serves `api:create_app()` (APP_ENV=production, sync workers = 2 × cores + 1) with media
   and quarantine in a temporary folder; `--clients` threads upload the files over keep-alive HTTP
   connections: uploads accepted per second (every answer must be a 202). No worker runs yet, so
   the validations queue up in Redis;
3. one `celery worker -Q heavy -c 1` (one process: "per heavy worker") drains the queue: files
   validated per second, from the first to the last `validated_at`, plus the mean time a job ran;
4. for reference, the validator alone (storage.validation.validate in this process, no database).
Target: ≥ 20 validated files/s per worker for 1 MB JPEG.

`--backend s3` runs every scenario twice, on local disk and then on an S3 bucket (STORAGE_BACKEND=s3, a
new bucket per scenario), and prints both with the ratio: uploads stream to a multipart upload, the worker
downloads each file to validate it and promotes it with a server-side copy. The S3 server is moto's
standalone server started here on 127.0.0.1 (a Python process on the same 2 cores, slower than MinIO),
or the one `--s3-endpoint` names (its credentials from S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import random
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.support import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadline_bench_files"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
ADMIN_LOGIN, ADMIN_PASSWORD = "bench_files_admin", "bench-files-password-1"
REQUESTS = 50
BOUNDARY = "benchBoundary" + secrets.token_hex(8)
TARGET_JPEG_PER_SECOND = 20.0


# ---- samples -------------------------------------------------------------------------------------------

def jpeg_sample(target_bytes: int = 1024 * 1024) -> bytes:
    """A photo-like JPEG of about `target_bytes` (noise over a gradient compresses like a real photo)."""
    from PIL import Image

    side = 1000
    while True:
        rng = random.Random(side)
        noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        out = io.BytesIO()
        noise.save(out, "JPEG", quality=70)
        if out.tell() >= target_bytes * 0.95 or side > 4000:
            return out.getvalue()
        side = int(side * (target_bytes / out.tell()) ** 0.5) + 8


def mp3_sample(target_bytes: int = 5 * 1024 * 1024) -> bytes:
    """MPEG-1 Layer III frames at 128 kbit/s, 44.1 kHz with an ID3v2 tag: about `target_bytes`."""
    tag = b"ID3\x03\x00\x00" + bytes([0, 0, 0, 20]) + b"TIT2" + struct.pack(">I", 10) + b"\x00\x00\x00bench call"
    frame = b"\xff\xfb\x90\x64" + bytes(range(256)) + b"\x55" * (417 - 4 - 256)
    return tag + frame * (target_bytes // len(frame))


def multipart(name: str, data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


# ---- processes -----------------------------------------------------------------------------------------

def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, 9)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # moto keeps an object in memory up to this size and writes a bigger one (the 5 MB MP3s) to a temporary
    # file in Python on every PUT and every copy; the files of the bench fit in memory.
    env = dict(os.environ)
    env.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(64 * 1024 * 1024))
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/moto-api/")
            conn.getresponse().read()
            conn.close()
            return process, f"http://{HOST}:{port}"
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError("moto's S3 server did not start within 60 s")


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The settings of a new bucket on `endpoint` (created here)."""
    import boto3

    env = {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": endpoint, "S3_BUCKET": bucket, "S3_REGION": "us-east-1",
           "S3_ACCESS_KEY_ID": os.environ.get("S3_ACCESS_KEY_ID", "bench-access-key"),
           "S3_SECRET_ACCESS_KEY": os.environ.get("S3_SECRET_ACCESS_KEY", "bench-secret-access-key")}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=env["S3_ACCESS_KEY_ID"],
                 aws_secret_access_key=env["S3_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
    return env


def service_env(args, media: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        APP_ENV="production", SECRET_KEY=secrets.token_urlsafe(36), DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url, FLOWER_PASSWORD="bench-dummy-flower-password", COOKIE_SECURE="false",
        MANGO_ENABLED="false",  # no Mango here: production refuses an unsigned webhook
        RATE_LIMIT_PER_CLIENT="1000000 per minute", RATE_LIMIT_PER_USER="1000000 per minute",
        MEDIA_ROOT=str(media / "media"), QUARANTINE_ROOT=str(media / "quarantine"), PYTHONPATH=str(REPO_ROOT),
        PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING",
    )
    return env


def start_api(env: dict[str, str], workers: int, port: int, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", str(workers),
             "--timeout", "120", "api:create_app()"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                conn.close()
                return process
        except OSError:
            pass
        time.sleep(0.2)
    stop(process)
    raise RuntimeError("the API did not start within 60 s")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "heavy", "-c", "1", "--pool", "prefork",
             "-n", f"bench-files-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
             "--loglevel", "WARNING"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


# ---- database ------------------------------------------------------------------------------------------

def prepare_database(url: str) -> list[int]:
    """Create and migrate the database if needed; empty files and jobs; return the bench request ids."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin_url = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{parsed.database}"')
    from models.core import migrate

    migrate.upgrade(url)
    from models.people.passwords import hash_password

    plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("TRUNCATE files, jobs RESTART IDENTITY CASCADE")
        city = conn.execute("SELECT id FROM cities WHERE name = 'Бенчмарк'").fetchone()
        if city is None:
            city = conn.execute("INSERT INTO cities (name) VALUES ('Бенчмарк') RETURNING id").fetchone()
        role = conn.execute("SELECT id FROM roles WHERE name = 'admin'").fetchone()
        conn.execute(
            "INSERT INTO users (login, password_hash, role_id, status, full_name) VALUES (%s, %s, %s, 'active', %s) "
            "ON CONFLICT DO NOTHING", (ADMIN_LOGIN, hash_password(ADMIN_PASSWORD), role[0], "Бенчмарк файлов"),
        )
        conn.execute("UPDATE users SET password_hash = %s, status = 'active' WHERE login = %s",
                     (hash_password(ADMIN_PASSWORD), ADMIN_LOGIN))
        request_type = conn.execute("SELECT id FROM request_types WHERE name = 'Впервые'").fetchone()
        ids = [row[0] for row in conn.execute(
            "SELECT id FROM requests WHERE city_id = %s ORDER BY id LIMIT %s", (city[0], REQUESTS)).fetchall()]
        while len(ids) < REQUESTS:
            ids.append(conn.execute(
                "INSERT INTO requests (city_id, request_type_id, client_phone, client_name, status) "
                "VALUES (%s, %s, '79990000000', 'Бенчмарк', 'В работе') RETURNING id", (city[0], request_type[0]),
            ).fetchone()[0])
    return ids


def file_stats(url: str) -> dict:
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as conn:
        counts = dict(conn.execute("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        first, last, n = conn.execute(
            "SELECT min(validated_at), max(validated_at), count(*) FROM files WHERE validated_at IS NOT NULL"
        ).fetchone()
        job_ms = conn.execute(
            "SELECT avg(extract(epoch FROM finished_at - started_at)) * 1000 FROM jobs WHERE finished_at IS NOT NULL"
        ).fetchone()[0]
    return {"counts": counts, "first": first, "last": last, "validated": n, "job_ms": float(job_ms or 0)}


# ---- scenarios -----------------------------------------------------------------------------------------

def login(port: int) -> str:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    conn.request("POST", "/api/auth/login", json.dumps({"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD}),
                 {"Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"login failed: {body}")
    return body["access_token"]


def upload_all(port: int, token: str, paths: list[str], body: bytes, clients: int) -> tuple[float, list[int]]:
    statuses: list[int] = []
    lock = threading.Lock()
    queue = list(paths)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
               "Content-Length": str(len(body))}

    def client() -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                path = queue.pop()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            with lock:
                statuses.append(response.status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, statuses


def run_scenario(args, label: str, name: str, data: bytes, count: int, endpoint: str, request_ids: list[int],
                 workdir: Path, s3_endpoint: str | None = None) -> dict:
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    backend = "s3" if s3_endpoint else "local"
    label = f"{label} {backend}"
    media = workdir / label.replace(" ", "-")
    media.mkdir()
    env = service_env(args, media)
    if s3_endpoint:
        env.update(s3_env(s3_endpoint, f"bench-{uuid.uuid4().hex[:12]}"))
    prepare_database(args.database_url)
    port = free_port()
    api = start_api(env, args.api_workers, port, workdir / f"gunicorn-{label.replace(' ', '-')}.log")
    worker = None
    try:
        token = login(port)
        body = multipart(name, data)
        paths = [f"/api/requests/{request_ids[i % len(request_ids)]}/{endpoint}" for i in range(count)]
        elapsed, statuses = upload_all(port, token, paths, body, args.clients)
        accepted = statuses.count(202)
        if accepted != count:
            raise RuntimeError(f"{label}: {count - accepted} uploads not accepted: {sorted(set(statuses))}")
        started = time.perf_counter()
        worker = start_worker(env, workdir / f"worker-{label.replace(' ', '-')}.log")
        deadline = time.monotonic() + args.timeout
        while True:
            stats = file_stats(args.database_url)
            if stats["counts"].get("pending", 0) == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: still pending after {args.timeout} s: {stats['counts']}")
            time.sleep(0.25)
        drained = time.perf_counter() - started
    finally:
        stop(worker)
        stop(api)
    span = (stats["last"] - stats["first"]).total_seconds()
    return {
        "label": label, "count": count, "size_mb": len(data) / 1024 / 1024, "upload_s": elapsed,
        "accepted_per_s": count / elapsed, "mb_per_s": count * len(data) / 1024 / 1024 / elapsed,
        "counts": stats["counts"], "validated_per_s": (stats["validated"] - 1) / span if span > 0 else float("inf"),
        "job_ms": stats["job_ms"], "drain_s": drained,
    }


def validator_alone(data: bytes, name: str, kind: str, repeats: int) -> float:
    from storage.kinds import KINDS
    from storage.validation import validate

    with tempfile.NamedTemporaryFile(suffix="." + name.rsplit(".", 1)[1]) as handle:
        handle.write(data)
        handle.flush()
        validate(handle.name, KINDS[kind], name)  # warm up imports
        started = time.perf_counter()
        for _ in range(repeats):
            validate(handle.name, KINDS[kind], name)
        return repeats / (time.perf_counter() - started)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except OSError:
        memory = 0.0
    return (f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="a Redis database nobody else uses: flushed")
    parser.add_argument("--jpegs", type=int, default=200)
    parser.add_argument("--mp3s", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--api-workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--backend", choices=("local", "s3"), default="local",
                        help="s3: each scenario on local disk, then on S3, side by side")
    parser.add_argument("--s3-endpoint", default=None, help="an S3 server to use instead of starting moto's")
    args = parser.parse_args()
    os.environ.update(DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, APP_ENV="development")

    print(f"machine: {machine()}")
    jpeg, mp3 = jpeg_sample(), mp3_sample()
    request_ids = prepare_database(args.database_url)
    workdir = Path(tempfile.mkdtemp(prefix="bench-files-"))
    moto = None
    try:
        endpoints: list[str | None] = [None]
        if args.backend == "s3":
            endpoint = args.s3_endpoint
            if endpoint is None:
                moto, endpoint = start_moto(workdir / "moto.log")
            endpoints.append(endpoint)
        scenarios = [("jpeg-1mb", "photo.jpg", jpeg, args.jpegs, "upload-bso"),
                     ("mp3-5mb", "call.mp3", mp3, args.mp3s, "upload-recording")]
        results = [run_scenario(args, label, name, data, count, endpoint_path, request_ids, workdir, s3)
                   for label, name, data, count, endpoint_path in scenarios for s3 in endpoints]
        alone = {"jpeg-1mb": validator_alone(jpeg, "photo.jpg", "bso", 50),
                 "mp3-5mb": validator_alone(mp3, "call.mp3", "recording", 20)}
    finally:
        stop(moto)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"API: gunicorn, {args.api_workers} sync workers, {args.clients} upload clients; "
          f"worker: one heavy worker process (prefork, concurrency 1)")
    header = (f"{'scenario':<16} {'files':>5} {'size':>7} {'accepted/s':>11} {'MB/s in':>8} {'validated/s':>12} "
              f"{'job ms':>7} {'validator alone/s':>18}  result")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['label']:<16} {r['count']:>5} {r['size_mb']:>5.1f}MB {r['accepted_per_s']:>11.1f} "
              f"{r['mb_per_s']:>8.1f} {r['validated_per_s']:>12.1f} {r['job_ms']:>7.1f} "
              f"{alone[r['label'].split()[0]]:>18.1f}  {r['counts']}")
    if args.backend == "s3":
        where = "moto's server on this machine" if args.s3_endpoint is None else args.s3_endpoint
        for local, remote in zip(results[::2], results[1::2]):
            print(f"S3 ({where}) against local disk, {local['label'].split()[0]}: uploads accepted "
                  f"{remote['accepted_per_s'] / local['accepted_per_s']:.2f}×, validated "
                  f"{remote['validated_per_s'] / local['validated_per_s']:.2f}× (1.00 = as fast as local disk)")
    jpeg_rate = results[0]["validated_per_s"]
    verdict = "meets" if jpeg_rate >= TARGET_JPEG_PER_SECOND else "MISSES"
    print(f"target ≥ {TARGET_JPEG_PER_SECOND:.0f} validated 1 MB JPEG/s per worker: {verdict} ({jpeg_rate:.1f}/s)")


if __name__ == "__main__":
    main()
