"""Benchmark of the Mango webhook pipeline as production runs it: gunicorn (APP_ENV=production), a
real light worker, PostgreSQL and Redis on this machine.

    python -m bench.telephony --database-url postgresql://postgres@127.0.0.1:5432/leadline_bench_telephony

The database is created when missing and migrated to head; its telephony and request tables are
emptied and one city with ten campaign lines is loaded. The Redis database (`--redis-url`, db 13 by
default) is flushed: it must be one the benchmark owns. Every delivery is signed
(sha256(key + json + salt)) like Mango's, so the signature check is part of the cost.

Measured:
1. accept — deliveries accepted per second and the p50/p99 latency of the answer, at concurrency 1,
   16 and 64 (`--accept-seconds` each, `--repeat` runs, the median reported with the range), with no
   worker running: only what the API does (check, insert, commit, queue, answer). Every delivery is a
   distinct call event, so none is a cheap duplicate.
   Load from wrk (with a Lua script cycling through pre-signed bodies) when installed, else Python.
2. backlog — 10,000 deliveries (2,000 calls of 5 events: IVR, operator Appeared/Connected/
   Disconnected, summary; a tenth of the callers call twice) accepted with no worker, then the light
   workers started as the Procfile starts them (`--worker-processes` 2 of `--worker-pool` threads ×
   `--worker-concurrency` 4): deliveries folded into calls and requests per second, from the first to
   the last processed row, the wall time from the workers' start until none is pending, and until the
   queue is empty too. Once per `--fold-batch` size (MANGO_FOLD_BATCH; 1 folds one row a transaction)
   and `--rounds` times, the sizes back to back in each round so that the other work on the machine
   weighs on both alike: the median of the rounds is reported, and the ratio.
3. end to end — `--rate` deliveries/s (100) for `--e2e-seconds` (60), paced (open loop), with the light
   worker running: accept latency of every delivery and the time from posting a call's summary until its
   request is visible in the database (a poller reads new requests every 5 ms), p50/p95.

Targets: ≥ 1,000 deliveries/s accepted with p99 ≤ 50 ms at concurrency 16; end to end p95 ≤ 500 ms;
≥ 400 deliveries/s processed from a backlog of 5,000 with the default MANGO_FOLD_BATCH (before issue 20, one
task and one transaction a delivery: BEFORE_ISSUE_20, measured on this machine). The old backend, which does
all the work in the HTTP request, manages 34 deliveries/s on the same machine. Only 127.0.0.1 is contacted;
every phase is bounded in time.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import psutil
import psycopg

from bench.support import free_port, machine_info, prepare_database
from settings import settings

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/leadline_bench_telephony"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
KEY = "bench0vpbx0key0000000000000"
SALT = "bench-salt-" + "0" * 21
LINES = [f"7495100{n:04d}" for n in range(10)]
EVENT_PATH = "/api/webhook/mango/events/"
TABLES = ("mango_events", "call_legs", "calls", "recordings", "request_events", "transactions", "requests",
          "advertising_campaigns", "cities")
OLD_BACKEND_RPS = 34
# Folding a backlog of 5,000 before issue 20 (one task and one transaction a delivery), this machine, quiet
# (bench/README.md): 147.5/s and 191.4/s in two runs of 2026-12-06.
BEFORE_ISSUE_20 = "147–191/s"


# ---- helpers ---------------------------------------------------------------------------------------

def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered)))) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def compact(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"))


def signed_body(payload: dict) -> str:
    raw = compact(payload)
    sign = hashlib.sha256((KEY + raw + SALT).encode()).hexdigest()
    return urlencode({"vpbx_api_key": KEY, "sign": sign, "json": raw})


# ---- deliveries --------------------------------------------------------------------------------------

def call_deliveries(entry: str, client: str, line: str, t0: int) -> list[tuple[str, dict]]:
    """One answered incoming call as Mango reports it: 4 call events and the summary."""
    caller = {"number": client}
    op = {"extension": "105", "number": "sip:petrova@vpbx400123456.mangosip.ru", "line_number": line,
          "acd_group": "200"}

    def event(leg: str, seq: int, state: str, ts: int, location: str = "abonent", **extra) -> tuple[str, dict]:
        to = op if location == "abonent" else {"number": line, "line_number": line}
        return "call", {"entry_id": entry, "call_id": f"{entry}:{leg}", "timestamp": ts, "seq": seq,
                        "call_state": state, "location": location, "from": caller, "to": to, **extra}

    return [
        event("ivr", 1, "Appeared", t0, "ivr"),
        event("op", 1, "Appeared", t0 + 6),
        event("op", 2, "Connected", t0 + 12),
        event("op", 3, "Disconnected", t0 + 95, disconnect_reason=1110),
        ("summary", {"entry_id": entry, "call_direction": 1, "from": caller,
                     "to": {"extension": "105", "number": op["number"]}, "line_number": line,
                     "create_time": t0, "forward_time": t0 + 6, "talk_time": t0 + 12, "end_time": t0 + 95,
                     "entry_result": 1, "disconnect_reason": 1110}),
    ]


def distinct_events(prefix: str, count: int) -> list[tuple[str, str]]:
    """`count` distinct signed call events (the first notification of as many calls)."""
    t0 = int(time.time()) - 3600
    out = []
    for n in range(count):
        entry = f"{prefix}{n:08d}"
        _, payload = call_deliveries(entry, f"7916{n % 10_000_000:07d}", LINES[n % len(LINES)], t0)[1]
        out.append(("call", signed_body(payload)))
    return out


def phone_for(n: int, rng: random.Random, repeat_share: float = 0.1) -> str:
    """Mostly new callers; a share calls again (a repeat caller: attached or Повтор)."""
    if n > 10 and rng.random() < repeat_share:
        n = rng.randrange(0, n)
    return f"7926{n:07d}"


# ---- the database ------------------------------------------------------------------------------------


def reset_data(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        city = conn.execute("INSERT INTO cities (name) VALUES ('Бенчмарк') RETURNING id").fetchone()[0]
        for n, line in enumerate(LINES):
            conn.execute("INSERT INTO advertising_campaigns (city_id, name, phone_number, phone, is_active) "
                         "VALUES (%s, %s, %s, %s, true)", (city, f"Линия {n}", line, line))
    vacuum(url)


def vacuum(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE mango_events, calls, call_legs, requests, request_events")


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def queue_length(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).llen("light"))


def inbox_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM mango_events GROUP BY status").fetchall())


# ---- processes -----------------------------------------------------------------------------------------

class Processes:
    def __init__(self, args, work_dir: Path):
        self.args = args
        self.work_dir = work_dir
        self.env = {**os.environ, "APP_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(36),
                    "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "CELERY_BROKER_URL": "",
                    "FLOWER_PASSWORD": "bench-dummy-flower-password", "COOKIE_SECURE": "false",
                    "MANGO_API_KEY": KEY, "MANGO_API_SALT": SALT, "MANGO_ALLOWED_IPS": "127.0.0.1",
                    "MANGO_SWEEP_AFTER_SECONDS": "3600", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(REPO_ROOT)}
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.starts = 0
        self.port = free_port()

    def _spawn(self, command: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.work_dir / log_name).open("ab")
        process = subprocess.Popen(command, cwd=REPO_ROOT, env={**self.env, **(env or {})}, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return process

    def api_command(self) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{self.port}", "--workers",
                   str(self.args.api_workers), "--timeout", "60", "--graceful-timeout", "10", "--backlog", "2048"]
        if self.args.api_threads > 1:
            command += ["--worker-class", "gthread", "--threads", str(self.args.api_threads)]
        return command + ["api:create_app()"]

    def start_api(self) -> None:
        self.api = self._spawn(self.api_command(), "api.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{self.tail('api.log')}")
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
                connection.request("GET", "/api/health")
                if connection.getresponse().status == 200:
                    workers = psutil.Process(self.api.pid).children()
                    if len(workers) >= self.args.api_workers:
                        time.sleep(1)
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the API did not start:\n{self.tail('api.log')}")

    def start_worker(self, **env: str) -> float:
        """Start the light worker(s) (`--worker-processes`), with `env` added to their environment;
        returns when every one consumes (its log line 'ready')."""
        self.starts += 1
        logs = [f"worker{self.starts}-{number}.log" for number in range(self.args.worker_processes)]
        for number, log in enumerate(logs):
            command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--queues", "light", "--hostname",
                       f"bench-light-{os.getpid()}-{number}@%h", "--concurrency", str(self.args.worker_concurrency),
                       "--pool", self.args.worker_pool, "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
            self.workers.append(self._spawn(command, log, env))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            for worker, log in zip(self.workers, logs):
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited:\n{self.tail(log)}")
            if all(self.logged(log, "ready.") for log in logs):
                return time.monotonic()
            time.sleep(0.05)
        raise SystemExit(f"the worker did not start:\n{self.tail(logs[0])}")

    def stop_worker(self) -> None:
        for worker in self.workers:
            self._stop(worker)
        self.workers = []

    def stop(self) -> None:
        self.stop_worker()
        self._stop(self.api)
        self.api = None

    @staticmethod
    def _stop(process: subprocess.Popen | None) -> None:
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def logged(self, name: str, text: str) -> bool:
        """Whether the log says `text` anywhere (a worker that started first may have logged a lot since)."""
        try:
            return text in (self.work_dir / name).read_text(errors="replace")
        except OSError:
            return False

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.work_dir / name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# ---- HTTP clients ----------------------------------------------------------------------------------------

class Poster:
    """One keep-alive connection posting form bodies; reconnects when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def post(self, event_type: str, body: str) -> tuple[int, float, dict]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        started = time.perf_counter()
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                self.connection.request("POST", EVENT_PATH + event_type, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.connection.close()
                    self.connection = None
                elapsed = time.perf_counter() - started
                return response.status, elapsed, json.loads(data or b"{}")
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                started = time.perf_counter()
        raise RuntimeError("unreachable")


def wrk_run(port: int, bodies: list[tuple[str, str]], concurrency: int, seconds: int, work_dir: Path) -> dict:
    """wrk with a Lua script: each connection walks its own slice of the pre-signed bodies."""
    data = work_dir / f"bodies-{concurrency}.txt"
    data.write_text("\n".join(f"{t}\t{b}" for t, b in bodies) + "\n")
    script = work_dir / f"post-{concurrency}.lua"
    script.write_text(LUA.replace("__BODIES__", str(data)).replace("__PATH__", EVENT_PATH))
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--timeout", "10s",
               "-s", str(script), f"http://{HOST}:{port}", "--", str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    marker = "BENCHJSON "
    for line in out.stdout.splitlines():
        if line.startswith(marker):
            result = json.loads(line[len(marker):])
            result["generator"] = "wrk"
            return result
    raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")


LUA = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  bodies = {}
  local n = 0
  local total = tonumber(args[1])
  for line in io.lines("__BODIES__") do
    if n % total == id then
      local tab = string.find(line, "\t")
      table.insert(bodies, {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)})
    end
    n = n + 1
  end
  index = 0
  non2xx = 0
  headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
end
function request()
  index = index % #bodies + 1
  local item = bodies[index]
  return wrk.format("POST", "__PATH__" .. item[1], headers, item[2])
end
function response(status, headers, body)
  if status ~= 200 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("non2xx") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, '
    .. '"non_2xx": %d, "socket_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, bad, e.connect + e.read + e.write, e.timeout))
end
"""


def python_run(port: int, bodies: list[tuple[str, str]], concurrency: int, seconds: int) -> dict:
    """Threads with keep-alive connections (used when wrk is missing; competes for the same cores)."""
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    cursor = iter(range(len(bodies) * 100))

    def run():
        poster, mine, bad = Poster(port), [], 0
        while time.monotonic() < stop_at:
            with lock:
                n = next(cursor)
            event_type, body = bodies[n % len(bodies)]
            try:
                status, elapsed, _ = poster.post(event_type, body)
            except OSError:
                bad += 1
                continue
            mine.append(elapsed)
            bad += status != 200
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(run)
    elapsed = time.monotonic() - started
    return {"requests": len(latencies), "seconds": round(elapsed, 3), "p50_ms": ms(percentile(latencies, 50)),
            "p99_ms": ms(percentile(latencies, 99)), "max_ms": ms(max(latencies) if latencies else None),
            "non_2xx": errors[0], "socket_errors": 0, "timeouts": 0, "generator": "python"}


# ---- phases ---------------------------------------------------------------------------------------------

def settle_api(url: str, quiet_s: float = 1.0, limit_s: float = 60.0) -> None:
    """Wait until requests still queued in the API's listen backlog are answered (the inbox stops growing)."""
    deadline = time.monotonic() + limit_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        count = sum(inbox_counts(url).values())
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)


def accept_once(args, procs: Processes, work_dir: Path, concurrency: int, run: int) -> dict:
    settle_api(args.database_url)
    reset_data(args.database_url)
    flush_redis(args.redis_url)
    expected = max(5000, int(args.accept_seconds * 2500 * (1 if concurrency == 1 else 1.6)))
    bodies = distinct_events(f"acc{concurrency}r{run}-", expected)
    if args.load_generator == "wrk":
        result = wrk_run(procs.port, bodies, concurrency, args.accept_seconds, work_dir)
    else:
        result = python_run(procs.port, bodies, concurrency, args.accept_seconds)
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    settle_api(args.database_url)
    counts = inbox_counts(args.database_url)
    result["stored"] = sum(counts.values())
    result["queued"] = queue_length(args.redis_url)
    result["wrapped"] = result["requests"] > len(bodies)  # bodies reused: duplicates are cheaper
    print(f"  concurrency {concurrency:>2} run {run}: {result['rps']:,.1f} deliveries/s, p50 {result['p50_ms']} ms, "
          f"p99 {result['p99_ms']} ms, non-2xx {result['non_2xx']}, stored {result['stored']:,}, "
          f"queued {result['queued']:,}", flush=True)
    return result


def accept_phase(args, procs: Processes, work_dir: Path) -> dict[str, dict]:
    """Each level `--repeat` times (the machine's other work shows as run-to-run spread); the run
    with the median rate is the one reported, with the range of rates seen."""
    results = {}
    for concurrency in args.concurrency:
        runs = [accept_once(args, procs, work_dir, concurrency, run) for run in range(1, args.repeat + 1)]
        runs.sort(key=lambda r: r["rps"])
        median = dict(runs[len(runs) // 2])
        median["rps_range"] = [runs[0]["rps"], runs[-1]["rps"]]
        median["runs"] = [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "non_2xx")} for r in runs]
        results[str(concurrency)] = median
    return results


def post_all(port: int, deliveries: list[tuple[str, str]], concurrency: int) -> tuple[int, float]:
    chunks = [deliveries[i::concurrency] for i in range(concurrency)]
    failures = [0]

    def run(chunk):
        poster = Poster(port)
        for event_type, body in chunk:
            status, _, _ = poster.post(event_type, body)
            if status != 200:
                failures[0] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, chunks))
    return failures[0], time.monotonic() - started


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuMeter:
    """CPU time spent for the benchmark, less sensitive to the other work on a shared machine than
    rates are: the light workers (their whole process trees) and the PostgreSQL backends connected to
    the benchmark's database. Redis' server is left out: it serves other databases than ours."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.before = self._backends()

    def _backends(self) -> dict[int, float]:
        seen = {}
        for process in psutil.process_iter(["name", "cmdline"]):
            try:
                command = " ".join(process.info["cmdline"] or [])
                if command.startswith("postgres:") and f" {self.database} " in command:
                    seen[process.pid] = _cpu_seconds(process)
            except psutil.Error:
                continue
        return seen

    def postgres(self) -> float:
        return sum(cpu - self.before.get(pid, 0.0) for pid, cpu in self._backends().items())

    @staticmethod
    def workers(workers: list[subprocess.Popen]) -> float:
        total = 0.0
        for worker in workers:
            try:
                root = psutil.Process(worker.pid)
                for process in [root, *root.children(recursive=True)]:
                    total += _cpu_seconds(process)
            except psutil.Error:
                continue
        return total


def backlog_once(args, procs: Processes, batch: int) -> dict:
    settle_api(args.database_url)
    reset_data(args.database_url)
    flush_redis(args.redis_url)
    rng = random.Random(args.seed)
    calls = args.backlog // 5
    t0 = int(time.time()) - 7200
    deliveries = []
    for n in range(calls):
        for event_type, payload in call_deliveries(f"backlog-{n:07d}", phone_for(n, rng), LINES[n % len(LINES)],
                                                   t0 + n):
            deliveries.append((event_type, signed_body(payload)))
    failures, posted_in = post_all(procs.port, deliveries, 16)
    counts = inbox_counts(args.database_url)
    print(f"  {len(deliveries):,} deliveries accepted in {posted_in:.1f} s ({failures} failures); "
          f"inbox {counts}, queue {queue_length(args.redis_url):,}", flush=True)
    vacuum(args.database_url)
    meter = CpuMeter(urlsplit(args.database_url).path.strip("/"))
    ready = procs.start_worker(MANGO_FOLD_BATCH=str(batch))
    started_cpu = meter.workers(procs.workers)  # the workers' own start (imports, connections)
    deadline = time.monotonic() + args.backlog_timeout
    folded_at = drained_at = None
    while time.monotonic() < deadline:
        if folded_at is None and inbox_counts(args.database_url).get("pending", 0) == 0:
            folded_at = time.monotonic()
        if folded_at is not None and queue_length(args.redis_url) == 0:
            drained_at = time.monotonic()
            break
        time.sleep(0.1)
    wall = (folded_at or time.monotonic()) - ready
    drained = (drained_at or time.monotonic()) - ready
    worker_cpu = meter.workers(procs.workers) - started_cpu
    postgres_cpu = meter.postgres()
    procs.stop_worker()
    with psycopg.connect(args.database_url) as conn:
        first, last, processed = conn.execute(
            "SELECT min(processed_at), max(processed_at), count(*) FROM mango_events WHERE status = 'processed'"
        ).fetchone()
        failed = conn.execute("SELECT count(*) FROM mango_events WHERE status = 'failed'").fetchone()[0]
        attempts = conn.execute("SELECT max(attempts) FROM mango_events").fetchone()[0]
        requests = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        calls_made = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        linked = conn.execute("SELECT count(*) FROM calls WHERE request_id IS NOT NULL").fetchone()[0]
    span = (last - first).total_seconds() if first and last else None
    result = {
        "fold_batch": batch, "deliveries": len(deliveries), "processed": processed, "failed": failed,
        "max_attempts": attempts, "calls": calls_made, "calls_with_request": linked, "requests": requests,
        "worker_processes": args.worker_processes, "worker_concurrency": args.worker_concurrency,
        "processing_span_s": round(span, 2) if span else None,
        "rate_per_s": round(processed / span, 1) if span else None,
        "wall_from_worker_ready_s": round(wall, 2),
        "rate_wall_per_s": round(processed / wall, 1) if wall else None,
        "queue_drained_s": round(drained, 2) if drained_at else None,
        "worker_cpu_ms_per_delivery": round(worker_cpu * 1000 / processed, 3) if processed else None,
        "postgres_cpu_ms_per_delivery": round(postgres_cpu * 1000 / processed, 3) if processed else None,
    }
    cpu = (worker_cpu + postgres_cpu) / processed if processed else None
    # What both cores could fold if they did nothing else (Redis, the scheduler and the other work on
    # the machine left out): an estimate to compare set-ups with, not a measured rate.
    result["cpu_ms_per_delivery"] = round(cpu * 1000, 3) if cpu else None
    result["cores_bound_rate_per_s"] = round((os.cpu_count() or 1) / cpu, 1) if cpu else None
    print(f"  MANGO_FOLD_BATCH={batch}: processed {processed:,} in {result['processing_span_s']} s: "
          f"{result['rate_per_s']:,} deliveries/s ({result['rate_wall_per_s']:,}/s counting from worker ready; "
          f"queue empty after {result['queue_drained_s']} s); {calls_made:,} calls, {requests:,} requests, "
          f"{failed} failed; CPU per delivery: workers {result['worker_cpu_ms_per_delivery']} ms + PostgreSQL "
          f"{result['postgres_cpu_ms_per_delivery']} ms (all cores on it alone: "
          f"{result['cores_bound_rate_per_s']}/s)", flush=True)
    return result


def backlog_phase(args, procs: Processes) -> dict:
    """Every `--fold-batch` size once per round, back to back; the median round of each size."""
    runs: dict[int, list[dict]] = {batch: [] for batch in args.fold_batch}
    for round_number in range(1, args.rounds + 1):
        for batch in args.fold_batch:
            print(f" round {round_number}, MANGO_FOLD_BATCH={batch}", flush=True)
            runs[batch].append(backlog_once(args, procs, batch))
    results = {}
    for batch, measured in runs.items():
        ordered = sorted(measured, key=lambda r: r["rate_per_s"] or 0)
        median = dict(ordered[len(ordered) // 2])
        median["rounds"] = [{k: r[k] for k in ("rate_per_s", "rate_wall_per_s", "queue_drained_s", "calls",
                                               "requests", "failed", "cpu_ms_per_delivery")} for r in measured]
        cpu = sorted(r["cpu_ms_per_delivery"] or 0 for r in measured)
        median["median_cpu_ms_per_delivery"] = cpu[len(cpu) // 2]
        results[str(batch)] = median
    if len(runs) > 1:  # the ratio of each round, its two runs back to back under the same other load
        first, last = min(runs), max(runs)
        results["ratios"] = [round(b["rate_per_s"] / a["rate_per_s"], 2) if a["rate_per_s"] else None
                             for a, b in zip(runs[first], runs[last])]
    return results


def e2e_phase(args, procs: Processes) -> dict:
    settle_api(args.database_url)
    reset_data(args.database_url)
    flush_redis(args.redis_url)
    procs.start_worker()
    # Warm up (pool processes connect, statements get prepared), then measure the steady state.
    warm = []
    for n in range(60):
        for event_type, payload in call_deliveries(f"warm-{n:05d}", f"7904{n:07d}", LINES[n % len(LINES)],
                                                   int(time.time()) - 900):
            warm.append((event_type, signed_body(payload)))
    post_all(procs.port, warm, 4)
    deadline = time.monotonic() + 60
    while inbox_counts(args.database_url).get("pending", 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    rng = random.Random(args.seed + 1)
    total = args.rate * args.e2e_seconds
    calls = total // 5
    t0 = int(time.time()) - 600
    schedule: list[tuple[float, str, str, str | None]] = []  # (offset, type, body, phone when summary)
    interval = 1.0 / args.rate
    slot = 0
    for n in range(calls):
        phone = f"7903{n:07d}" if rng.random() > 0.1 or n < 10 else f"7903{rng.randrange(0, n):07d}"
        for event_type, payload in call_deliveries(f"e2e-{n:07d}", phone, LINES[n % len(LINES)], t0 + n):
            schedule.append((slot * interval, event_type, signed_body(payload),
                             phone if event_type == "summary" else None))
            slot += 1
    sent_summary: dict[str, float] = {}
    seen_request: dict[str, float] = {}
    accept: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_polling = threading.Event()

    def poll():
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            last_id = 0
            while not stop_polling.is_set():
                rows = conn.execute("SELECT id, client_phone FROM requests WHERE id > %s ORDER BY id",
                                    (last_id,)).fetchall()
                now = time.monotonic()
                for request_id, phone in rows:
                    last_id = request_id
                    seen_request.setdefault(phone, now)
                time.sleep(0.005)

    senders = 32  # open loop: a slow answer must not delay the next delivery
    start = time.monotonic() + 0.5

    def send(lane: int):
        poster = Poster(procs.port)
        for offset, event_type, body, phone in schedule[lane::senders]:
            delay = start + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if phone is not None:
                with lock:
                    sent_summary.setdefault(phone, time.monotonic())
            try:
                status, elapsed, _ = poster.post(event_type, body)
            except OSError:
                status, elapsed = 0, None
            with lock:
                if status != 200:
                    errors[0] += 1
                else:
                    accept.append(elapsed)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    busy_before = psutil.cpu_times()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, range(senders)))
    sent_for = time.monotonic() - start
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(seen_request) < len(sent_summary) * 0.9:
        time.sleep(0.1)
    time.sleep(2)
    stop_polling.set()
    poller.join(5)
    busy_after = psutil.cpu_times()
    procs.stop_worker()
    # A repeat caller within the window joins the open request: only first calls make new requests.
    latencies = [seen_request[p] - sent_summary[p] for p in seen_request if p in sent_summary]
    cores = ((busy_after.user + busy_after.system) - (busy_before.user + busy_before.system)) / sent_for
    counts = inbox_counts(args.database_url)
    with psycopg.connect(args.database_url) as conn:
        # The same interval as the database saw it: stored (received_at) -> committed with its effects.
        server = [row[0] for row in conn.execute(
            "SELECT extract(epoch FROM processed_at - received_at) FROM mango_events WHERE event_type = 'summary'"
            " AND status = 'processed' AND entry_id LIKE 'e2e-%'").fetchall()]
    result = {
        "server_summary_p50_ms": ms(percentile(server, 50)), "server_summary_p95_ms": ms(percentile(server, 95)),
        "server_summary_max_ms": ms(max(server) if server else None),
        "rate": args.rate, "seconds": args.e2e_seconds, "deliveries": len(schedule), "sent_in_s": round(sent_for, 1),
        "achieved_rate": round(len(schedule) / sent_for, 1), "errors": errors[0], "inbox": counts,
        "accept_p50_ms": ms(percentile(accept, 50)), "accept_p99_ms": ms(percentile(accept, 99)),
        "requests_seen": len(latencies), "request_visible_p50_ms": ms(percentile(latencies, 50)),
        "request_visible_p95_ms": ms(percentile(latencies, 95)),
        "request_visible_max_ms": ms(max(latencies) if latencies else None),
        "machine_cores_busy": round(cores, 2),
    }
    print(f"  {result['deliveries']:,} deliveries at {result['achieved_rate']}/s: accept p50 "
          f"{result['accept_p50_ms']} / p99 {result['accept_p99_ms']} ms; request visible p50 "
          f"{result['request_visible_p50_ms']} / p95 {result['request_visible_p95_ms']} ms "
          f"({result['requests_seen']} requests); inbox {counts}; in the database: stored -> processed p50 "
          f"{result['server_summary_p50_ms']} / p95 {result['server_summary_p95_ms']} / max "
          f"{result['server_summary_max_ms']} ms", flush=True)
    return result


# ---- report ------------------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def print_report(results: dict) -> None:
    m = results["machine"]
    print(f"\nleadline Mango webhook — {m['cpus']} cores {m['cpu_model']}, {m['memory_gb']} GB, Python {m['python']}; "
          f"API: {results['api_command']}; light workers {results['worker_processes']} × "
          f"{results['worker_pool']} {results['worker_concurrency']}")
    rows = []
    for concurrency, r in results.get("accept", {}).items():
        target = ""
        if concurrency == "16":
            target = f"≥ 1,000/s, p99 ≤ 50 ms: {verdict(r['rps'] >= 1000 and r['p99_ms'] <= 50)}"
        spread = "" if len(r.get("runs", [])) < 2 else \
            f" (median of {len(r['runs'])} runs: {r['rps_range'][0]:,.0f}–{r['rps_range'][1]:,.0f}/s)"
        rows.append((f"accepted at concurrency {concurrency} ({r['generator']})",
                     f"{r['rps']:,.1f}/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, {r['non_2xx']} non-2xx{spread}",
                     target, f"{OLD_BACKEND_RPS}/s"))
    backlog = {k: v for k, v in results.get("backlog", {}).items() if k != "ratios"}
    for batch, b in backlog.items():
        rounds = b.get("rounds", [])
        spread = "" if len(rounds) < 2 else \
            f"; median of {len(rounds)} rounds: " + ", ".join(f"{r['rate_per_s']}" for r in rounds)
        default = int(batch) == settings.MANGO_FOLD_BATCH
        rows.append((f"processing a backlog of {b['deliveries']:,}, MANGO_FOLD_BATCH={batch}"
                     + (" (default)" if default else ""),
                     f"{b['rate_per_s']:,}/s ({b['rate_wall_per_s']:,}/s from worker ready{spread}); "
                     f"{b['calls']:,} calls, {b['requests']:,} requests; CPU {b['median_cpu_ms_per_delivery']} ms "
                     f"a delivery (workers + PostgreSQL, median)",
                     f"≥ 400/s (before: {BEFORE_ISSUE_20}): {verdict((b['rate_per_s'] or 0) >= 400)}" if default
                     else "", ""))
    if len(backlog) > 1:
        slowest, fastest = min(backlog, key=int), max(backlog, key=int)
        before, after = backlog[slowest]["rate_per_s"] or 0, backlog[fastest]["rate_per_s"] or 0
        ratios = results["backlog"].get("ratios") or []
        cpu_before = backlog[slowest]["median_cpu_ms_per_delivery"] or 0
        cpu_after = backlog[fastest]["median_cpu_ms_per_delivery"] or 0
        rows.append((f"MANGO_FOLD_BATCH={fastest} against {slowest}",
                     (f"× {after / before:.2f} (rounds: {', '.join(f'× {r}' for r in ratios)})" if before else "-")
                     + (f"; CPU a delivery × {cpu_after / cpu_before:.2f}" if cpu_before else ""), "", ""))
    if "e2e" in results:
        e = results["e2e"]
        rows.append((f"accept → request visible at {e['achieved_rate']}/s for {e['seconds']} s",
                     f"p50 {e['request_visible_p50_ms']} ms, p95 {e['request_visible_p95_ms']} ms "
                     f"({e['requests_seen']} requests; accept p99 {e['accept_p99_ms']} ms)",
                     f"p95 ≤ 500 ms: {verdict((e['request_visible_p95_ms'] or 1e9) <= 500)}", ""))
    headers = ("metric", "result", "target", "old backend")
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(4)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="a Redis database the benchmark may flush")
    parser.add_argument("--api-workers", type=int, default=2 * cores + 1, help="gunicorn workers")
    parser.add_argument("--api-threads", type=int, default=1, help="> 1: gthread workers with this many threads")
    parser.add_argument("--worker-processes", type=int, default=2,
                        help="light worker processes (2, as the Procfile's light and light2)")
    parser.add_argument("--worker-concurrency", type=int, default=4,
                        help="threads (or pool processes) of each light worker (4, as in the Procfile)")
    parser.add_argument("--worker-pool", choices=("threads", "prefork"), default="threads",
                        help="the light worker's pool (threads, as the Procfile's light worker)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--accept-seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="runs per accept level; the median is reported")
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--backlog-timeout", type=int, default=600)
    parser.add_argument("--fold-batch", type=int, nargs="+", default=[1, settings.MANGO_FOLD_BATCH],
                        help="MANGO_FOLD_BATCH of the workers in the backlog phase, each size measured "
                             f"(default: 1, one row a task as before batches, and the default "
                             f"{settings.MANGO_FOLD_BATCH})")
    parser.add_argument("--rounds", type=int, default=3, help="backlog runs per size, sizes back to back")
    parser.add_argument("--rate", type=int, default=100, help="deliveries/s for the end-to-end phase")
    parser.add_argument("--e2e-seconds", type=int, default=60)
    parser.add_argument("--phases", nargs="+", default=["accept", "backlog", "e2e"],
                        choices=["accept", "backlog", "e2e"])
    parser.add_argument("--load-generator", choices=("wrk", "python"),
                        default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    for url in (args.database_url, args.redis_url):
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"{url}: the benchmark only talks to this machine")
    if not urlsplit(args.database_url).path.strip("/"):
        parser.error("--database-url must name a database")

    prepare_database(args.database_url)
    results: dict[str, Any] = {"started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
                               "machine": machine_info(), "worker_concurrency": args.worker_concurrency,
                               "worker_processes": args.worker_processes, "worker_pool": args.worker_pool}
    with tempfile.TemporaryDirectory(prefix="leadline-bench-mango-") as tmp:
        procs = Processes(args, Path(tmp))
        results["api_command"] = " ".join(procs.api_command()[2:])
        try:
            procs.start_api()
            print(f"API on port {procs.port}: {results['api_command']}", flush=True)
            if "accept" in args.phases:
                print(f"accept: {args.accept_seconds} s per concurrency level ({args.load_generator}) ...", flush=True)
                results["accept"] = accept_phase(args, procs, Path(tmp))
            if "backlog" in args.phases:
                print(f"backlog of {args.backlog:,} deliveries ...", flush=True)
                results["backlog"] = backlog_phase(args, procs)
            if "e2e" in args.phases:
                print(f"end to end: {args.rate} deliveries/s for {args.e2e_seconds} s ...", flush=True)
                results["e2e"] = e2e_phase(args, procs)
        finally:
            procs.stop()
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
