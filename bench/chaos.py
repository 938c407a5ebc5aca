"""Faults injected into a running `make run` stack under a steady load: what was answered, how fast
it came back, whether accepted work was lost or done twice.

    python -m bench.chaos                       # every fault in turn (about 15 minutes)
    python -m bench.chaos --fault heavy         # one fault (repeatable)
    python -m bench.chaos --quick               # shorter outages and waits (a trial run)
    python -m bench.chaos --fault redis --redis-seconds 150   # a longer Redis outage

The stack runs exactly as `make run` runs it (`flask --app api stack`, default settings, embedded
PostgreSQL and Redis in a var folder of its own, free ports; bench.support.start_stack) with an
administrator whose strong password is given by ADMIN_PASSWORD, and demo data (`flask --app api
seed-demo`: cities, campaigns, requests). Client threads keep a steady load on it:

- uploads: a ~100 KB JPEG to POST /api/requests/<demo request>/upload-bso, about 1/s;
- Mango webhooks: answered incoming calls on a demo campaign's line, 5 deliveries each (4 call
  events and the summary, bench.telephony.call_deliveries), a unique entry id and client phone per
  call, about 3 deliveries/s; a delivery not answered 200 is sent again a second later, as Mango does;
- reads: GET /api/requests?page=1&page_size=20, about 2/s;
- writes: POST /api/requests (a new client phone) and PUT of the request just created, about 1/s.

The user's calls stay well under RATE_LIMIT_PER_USER (about 4/s of 10/s), webhooks are not counted.
Faults, one after the other, each after the previous one's work is done:

| fault | what is done |
| --- | --- |
| api | SIGKILL of one gunicorn worker (its master starts another) |
| light | SIGKILL of the light worker (threads pool: one process), right after a burst of deliveries |
| heavy | SIGKILL of the heavy worker's main process while it validates an upload |
| heavy-child | SIGKILL of the heavy worker's pool child while it validates an upload |
| beat, flower | SIGKILL of the process |
| redis | the embedded Redis stopped (SHUTDOWN NOSAVE; SIGKILL with --redis-kill) for 60 s, then started |
|       | again by `embedded.redis_url()` (the same var folder: the same port) |
| postgres | the embedded PostgreSQL stopped (`pg_ctl stop -m fast`, embedded.stop_postgres) for 20 s, |
|          | then started again (`embedded.postgres_url()`) |

Per fault: the answers by status from the injection until every kind of call has succeeded again
after the fault ended (the window); the time from the fault's end to the first success of each kind
(a kill ends when it is sent); for a kill, the time until the replacement process runs (found by pid
in the stack's process tree) and, for a worker, answers a ping; the work accepted since the previous
fault (uploads answered 202, deliveries answered 200) against the work done once it has drained (files
`ready`, inbox rows `processed`, a call with its summary per call whose summary was accepted, one
request per call's phone), read in the database; duplicates the schema allows to see (a file linked to
its request twice, two requests for one call's client phone, an accepted request missing); for a
worker kill, the time from the kill until the work it held (the upload it validated, the deliveries
pending) was done; and which other processes of the stack were restarted meanwhile.

Targets (issue 17): zero accepted work lost or done twice; every process back within 10 s of its
death; API serving again within 5 s of Redis or PostgreSQL returning; work held by a killed worker
done within 60 s.

The stack is stopped with SIGTERM and its embedded services are stopped at the end, on Ctrl-C or an
error too (bench.support.stop_stack). Figures depend on the machine and on what else runs on it:
the load average at the start and the end is printed with the machine.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import requests

from bench.files import BOUNDARY, jpeg_sample, multipart
from bench.support import REPO_ROOT, embedded_call, machine_info, start_stack, stop_stack, tree, wait_ready
from bench.telephony import call_deliveries, signed_body

KINDS = ("upload", "webhook", "read", "write")
KILLS = ("api", "light", "heavy", "heavy-child", "beat", "flower")
FAULTS = (*KILLS, "redis", "postgres")
OK = {"upload": (202,), "webhook": (200,), "read": (200,), "write": (200, 201)}
TARGET_BACK_S = 10.0
TARGET_SERVING_S = 5.0
TARGET_HELD_S = 60.0
TIMEOUT = 15.0
ADMIN_LOGIN = "admin"


def now() -> float:
    return time.monotonic()


# ---- the load ------------------------------------------------------------------------------------

@dataclass
class Load:
    """Client threads with their answers: (monotonic time, kind, HTTP status or None for no answer)."""

    api: str
    password: str
    request_ids: list[int]
    city_id: int
    line: str
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    answers: list[tuple[float, str, int | None]] = field(default_factory=list)
    uploads: dict[int, float] = field(default_factory=dict)  # file id -> accepted at
    deliveries: dict[tuple[str, int], float] = field(default_factory=dict)  # (entry, index) -> accepted at
    phones: dict[str, str] = field(default_factory=dict)  # entry -> client phone
    created: dict[int, float] = field(default_factory=dict)  # request id -> created at
    stop: threading.Event = field(default_factory=threading.Event)
    token: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0

    def __post_init__(self) -> None:
        self.photo = multipart("photo.jpg", jpeg_sample(100 * 1024))

    # -- plumbing
    def next_serial(self) -> int:
        with self._lock:
            self._serial += 1
            return self._serial

    def record(self, kind: str, status: int | None) -> None:
        self.answers.append((now(), kind, status))

    def login(self) -> None:
        try:
            answer = requests.post(f"{self.api}/auth/login", json={"login": ADMIN_LOGIN, "password": self.password},
                                   timeout=TIMEOUT)
            if answer.status_code == 200:
                self.token = answer.json()["access_token"]
        except (requests.RequestException, ValueError, KeyError):
            pass

    def call(self, http: requests.Session, kind: str, method: str, path: str, **kwargs) -> requests.Response | None:
        headers = dict(kwargs.pop("headers", {}))
        if kind != "webhook":
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            answer = http.request(method, f"{self.api}{path}", headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException:
            self.record(kind, None)
            return None
        self.record(kind, answer.status_code)
        if answer.status_code == 401 and kind != "webhook":
            self.login()
        return answer

    def paced(self, interval: float, step) -> None:
        http = requests.Session()
        while not self.stop.is_set():
            started = now()
            step(http)
            self.stop.wait(max(0.05, interval - (now() - started)))

    # -- the kinds of work
    def upload_one(self, http: requests.Session) -> None:
        request_id = self.request_ids[self.next_serial() % len(self.request_ids)]
        answer = self.call(http, "upload", "POST", f"/requests/{request_id}/upload-bso", data=self.photo,
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        if answer is not None and answer.status_code == 202:
            self.uploads[answer.json()["file_id"]] = now()

    def read_one(self, http: requests.Session) -> None:
        self.call(http, "read", "GET", "/requests", params={"page": 1, "page_size": 20})

    def write_loop(self) -> None:
        http = requests.Session()
        last: int | None = None
        while not self.stop.is_set():
            started = now()
            if last is None:
                n = self.next_serial()
                answer = self.call(http, "write", "POST", "/requests",
                                   json={"client_phone": f"7916{n:07d}", "city_id": self.city_id,
                                         "problem": f"chaos {self.tag} {n}"})
                if answer is not None and answer.status_code in (200, 201):
                    last = answer.json()["id"]
                    self.created[last] = now()
            else:
                self.call(http, "write", "PUT", f"/requests/{last}", json={"problem": f"chaos {self.tag} edited"})
                last = None
            self.stop.wait(max(0.05, 1.0 - (now() - started)))

    def new_call(self, prefix: str = "") -> tuple[str, list[tuple[str, str]]]:
        n = self.next_serial()
        entry = f"chaos-{self.tag}-{prefix}{n:07d}"
        phone = f"7925{n:07d}"
        self.phones[entry] = phone
        deliveries = call_deliveries(entry, phone, self.line, int(time.time()) - 120)
        return entry, [(event_type, signed_body(payload)) for event_type, payload in deliveries]

    def deliver(self, http: requests.Session, entry: str, index: int, event_type: str, body: str,
                give_up_at: float) -> bool:
        """One delivery, sent again every second until answered 200 (as Mango retries)."""
        while not self.stop.is_set() and now() < give_up_at:
            answer = self.call(http, "webhook", "POST", f"/webhook/mango/events/{event_type}", data=body,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
            if answer is not None and answer.status_code == 200:
                self.deliveries[(entry, index)] = now()
                return True
            self.stop.wait(1.0)
        return False

    def webhook_loop(self) -> None:
        http = requests.Session()
        while not self.stop.is_set():
            entry, bodies = self.new_call()
            for index, (event_type, body) in enumerate(bodies):
                started = now()
                self.deliver(http, entry, index, event_type, body, now() + 600)
                self.stop.wait(max(0.05, 0.33 - (now() - started)))

    def burst(self, kind: str, count: int, entries: list[str] | None = None) -> list[int]:
        """`count` uploads, or calls (5 deliveries each, their entry ids added to `entries` as they
        start), sent at once from 4 threads; returns the ids of the uploads accepted."""
        def one(_n: int) -> int | None:
            http = requests.Session()
            if kind == "upload":
                before = set(self.uploads)
                self.upload_one(http)
                return next(iter(set(self.uploads) - before), None)
            entry, bodies = self.new_call("b")
            if entries is not None:
                entries.append(entry)
            for index, (event_type, body) in enumerate(bodies):
                self.deliver(http, entry, index, event_type, body, now() + 30)
            return None

        with ThreadPoolExecutor(4) as pool:
            return [found for found in pool.map(one, range(count)) if found is not None]

    def start(self) -> list[threading.Thread]:
        self.login()
        if not self.token:
            raise SystemExit("could not sign in as the administrator")
        threads = [threading.Thread(target=self.paced, args=(1.0, self.upload_one), daemon=True),
                   threading.Thread(target=self.paced, args=(0.5, self.read_one), daemon=True),
                   threading.Thread(target=self.write_loop, daemon=True),
                   threading.Thread(target=self.webhook_loop, daemon=True)]
        for thread in threads:
            thread.start()
        return threads


# ---- the database and the processes --------------------------------------------------------------

class Database:
    """Reads of the stack's embedded PostgreSQL (its socket URL), each on a fresh connection: it may be
    down, and a read that fails is answered None."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://")

    def rows(self, sql: str, params: tuple = ()) -> list[tuple] | None:
        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.Error:
            return None

    def work(self, load: Load, file_ids: list[int], entries: list[str], created: list[int]) -> dict | None:
        files = self.rows("SELECT status, count(*) FROM files WHERE id = ANY(%s) GROUP BY status", (file_ids,))
        inbox = self.rows("SELECT entry_id, status, count(*) FROM mango_events WHERE entry_id = ANY(%s) "
                          "GROUP BY entry_id, status", (entries,))
        calls = self.rows("SELECT entry_id FROM calls WHERE entry_id = ANY(%s) AND summary_received", (entries,))
        phones = [load.phones[entry] for entry in entries]
        per_phone = self.rows("SELECT client_phone, count(*) FROM requests WHERE client_phone = ANY(%s) "
                              "GROUP BY client_phone", (phones,))
        linked_twice = self.rows(
            "SELECT count(*) FROM (SELECT e.new_value FROM request_events e "
            "JOIN files f ON f.storage_path = e.new_value WHERE f.id = ANY(%s) AND e.field = 'bso_file_path' "
            "GROUP BY e.new_value HAVING count(*) > 1) twice",
            (file_ids,))
        kept = self.rows("SELECT count(*) FROM requests WHERE id = ANY(%s)", (created,))
        if None in (files, inbox, calls, per_phone, linked_twice, kept):
            return None
        return {"files": dict(files), "inbox": inbox, "calls": {row[0] for row in calls},
                "per_phone": dict(per_phone), "linked_twice": linked_twice[0][0], "kept": kept[0][0]}

    def still_pending_rows(self, ids: list[int]) -> int | None:
        found = self.rows("SELECT count(*) FROM mango_events WHERE id = ANY(%s) AND status = 'pending'", (ids,))
        return None if found is None else found[0][0]

    def pending_files(self, file_ids: list[int]) -> int | None:
        found = self.rows("SELECT count(*) FROM files WHERE id = ANY(%s) AND status = 'pending'", (file_ids,))
        return None if found is None else found[0][0]


def processes(stack_pid: int) -> dict[str, list[psutil.Process]]:
    """The stack's processes by role; `<role>` is the program supervisord runs, `<role>-child` its
    children (gunicorn's workers, the heavy worker's pool process)."""
    found: dict[str, list[psutil.Process]] = {}
    parents: dict[int, str] = {}
    for process, name in tree(psutil.Process(stack_pid)):
        try:
            parent_pid = process.ppid()
        except psutil.Error:
            continue
        key = f"{name}-child" if parents.get(parent_pid) == name else name
        parents[process.pid] = name
        found.setdefault(key, []).append(process)
    return found


def pids(stack_pid: int) -> dict[str, set[int]]:
    try:
        return {name: {p.pid for p in found} for name, found in processes(stack_pid).items()}
    except psutil.Error:
        return {}


QUEUE_OF = {"light": "light", "heavy": "heavy", "heavy-child": "heavy"}
VICTIM_ROLE = {"api": "api-child", "light": "light", "heavy": "heavy", "heavy-child": "heavy-child",
               "beat": "beat", "flower": "flower"}


class Workers:
    """Pings one worker by name through the stack's Redis (the replacement answers once it consumes)."""

    def __init__(self, redis_url: str) -> None:
        from celery import Celery

        self.app = Celery("chaos", broker=redis_url)
        self.app.conf.broker_connection_retry_on_startup = False
        self.app.conf.broker_connection_timeout = 2

    def answers(self, name: str) -> bool:
        try:
            return bool(self.app.control.ping(destination=[name], timeout=1.0))
        except Exception:  # noqa: BLE001 - Redis away or restarting: not answering
            return False


class Broker:
    """What kombu's Redis transport records: `unacked` (delivery tag -> [message, exchange, routing key])
    holds every message a worker received and has not acknowledged; the queues are lists."""

    def __init__(self, url: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def held(self, queue: str) -> dict[str, dict[str, Any]]:
        """The messages of `queue` held by a worker: delivery tag -> task name, task id and arguments."""
        found = {}
        for tag, raw in self.redis.hgetall("unacked").items():
            message, _exchange, routing_key = json.loads(raw)
            if routing_key != queue:
                continue
            headers = message.get("headers") or {}
            try:
                arguments = ast.literal_eval(headers.get("argsrepr") or "()")
            except (ValueError, SyntaxError):
                arguments = ()
            found[tag.decode()] = {"task": headers.get("task"), "id": headers.get("id"), "args": list(arguments)}
        return found

    def tags(self) -> set[str] | None:
        try:
            return {tag.decode() for tag in self.redis.hkeys("unacked")}
        except Exception:  # noqa: BLE001 - Redis away
            return None

    def outstanding(self, queue: str) -> set[str] | None:
        """Task ids still waiting in `queue` or held by a worker."""
        try:
            ids = set()
            for raw in self.redis.lrange(queue, 0, -1):
                ids.add((json.loads(raw).get("headers") or {}).get("id"))
            for raw in self.redis.hvals("unacked"):
                ids.add(((json.loads(raw)[0]).get("headers") or {}).get("id"))
            return ids
        except Exception:  # noqa: BLE001 - Redis away
            return None


def flower_answers(port: str) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
        return True
    except requests.RequestException:
        return False


# ---- one fault -----------------------------------------------------------------------------------

@dataclass
class Context:
    args: argparse.Namespace
    stack: subprocess.Popen
    env: dict[str, str]
    load: Load
    db: Database
    workers: Workers
    broker: Broker
    redis_url: str
    log_path: Path
    mark: float = 0.0  # work accepted since this belongs to the next fault


def orphans(ctx: Context) -> list[str]:
    """Processes of this stack (its var folder in their environment) outside its tree: a dead
    process's children left running (not the embedded PostgreSQL and Redis, which are apart anyway)."""
    inside = {pid for found in pids(ctx.stack.pid).values() for pid in found}
    var_dir = ctx.env["LEADLINE_VAR_DIR"]
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            command = " ".join(process.info["cmdline"] or [])
            if process.pid in inside or "celery" not in command:
                continue
            if process.environ().get("LEADLINE_VAR_DIR") == var_dir:
                found.append(f"{process.pid} {command[:80]}")
        except psutil.Error:
            continue
    return found


def status_class(status: int | None) -> str:
    if status is None:
        return "err"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def log_lines_since(path: Path, offset: int) -> list[str]:
    with open(path, "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace").splitlines()


def inject(ctx: Context, fault: str) -> dict[str, Any]:
    """Injects the fault; returns what happened until it ended (a kill ends when sent)."""
    info: dict[str, Any] = {}
    if fault in KILLS:
        role = VICTIM_ROLE[fault]
        queue = QUEUE_OF.get(fault)
        if queue:
            # Work flowing in while the worker dies: a burst (uploads for the heavy queue, calls for the
            # light one) running in the background, and the kill when the worker holds messages.
            kind, count = ("upload", 16) if queue == "heavy" else ("webhook", 24)
            info["burst"] = threading.Thread(target=ctx.load.burst, args=(kind, count), daemon=True)
            info["burst"].start()
            time.sleep(1.0)
        before = pids(ctx.stack.pid)
        deadline = now() + 15.0  # the heavy pool's child is forked when its first task arrives
        while not before.get(role) and now() < deadline:
            time.sleep(0.1)
            before = pids(ctx.stack.pid)
        victims = sorted(before.get(role, ()))
        if not victims:
            raise RuntimeError(f"no {role} process in the stack: {before}")
        victim = victims[0]
        if queue:
            # Frozen (SIGSTOP) while the broker's record of what it holds is read, then killed: the
            # same as a kill at that instant, with its held messages known.
            wanted = "files.validate" if queue == "heavy" else "telephony.fold_inbox"
            for attempt in range(40):
                os.kill(victim, signal.SIGSTOP)
                info["held"] = ctx.broker.held(queue)
                if any(m["task"] == wanted for m in info["held"].values()) or (info["held"] and attempt >= 30):
                    break
                os.kill(victim, signal.SIGCONT)
                time.sleep(0.25)
            tasks = Counter(message["task"] for message in info["held"].values())
            info["held_kind"] = ", ".join(f"{count} {task}" for task, count in tasks.items()) or None
        info.update(victim=victim, before=before, injected=now())
        os.kill(victim, signal.SIGKILL)
        info["ended"] = info["injected"]
    elif fault == "redis":
        info["before"] = pids(ctx.stack.pid)
        info["injected"] = now()
        if ctx.args.redis_kill:
            pid = int((Path(ctx.env["LEADLINE_VAR_DIR"]) / "redis" / "redis.pid").read_text())
            os.kill(pid, signal.SIGKILL)
        else:
            import redis

            try:
                redis.Redis.from_url(ctx.redis_url).shutdown(nosave=True)
            except redis.ConnectionError:
                pass
        time.sleep(ctx.args.redis_seconds)
        url = embedded_call(ctx.env, "print(embedded.redis_url())")
        info["ended"] = now()
        info["same_address"] = url == ctx.redis_url
    elif fault == "postgres":
        info["before"] = pids(ctx.stack.pid)
        info["injected"] = now()
        embedded_call(ctx.env, "embedded.stop_postgres()")
        stopped = now()
        time.sleep(max(0.0, ctx.args.postgres_seconds - (stopped - info["injected"])))
        embedded_call(ctx.env, "embedded.postgres_url()")
        info["ended"] = now()
    return info


def wait_back(ctx: Context, fault: str, info: dict[str, Any], limit: float) -> None:
    """For a kill: when the replacement runs (a new pid of the role in the tree) and answers."""
    role = VICTIM_ROLE[fault]
    old = info["before"].get(role, set())
    deadline = info["injected"] + limit
    while now() < deadline:
        new = pids(ctx.stack.pid).get(role, set()) - old
        if new and len(pids(ctx.stack.pid).get(role, set())) >= len(old):
            info["back_s"] = now() - info["injected"]
            info["new_pid"] = min(new)
            break
        time.sleep(0.05)
    if "back_s" not in info:
        return
    hostname = socket.gethostname()
    probe = {"light": lambda: ctx.workers.answers(f"light@{hostname}"),
             "heavy": lambda: ctx.workers.answers(f"heavy@{hostname}"),
             "flower": lambda: flower_answers(ctx.env["FLOWER_PORT"])}.get(fault)
    if probe is None:
        return
    while now() < deadline:
        if probe():
            info["ready_s"] = now() - info["injected"]
            return
        time.sleep(0.2)


def recovery(ctx: Context, ended: float, limit: float) -> dict[str, float | None]:
    """Seconds from `ended` to the first success of each kind of call (None: none within `limit`)."""
    deadline = ended + limit
    while True:
        firsts: dict[str, float | None] = {kind: None for kind in KINDS}
        for at, kind, status in list(ctx.load.answers):
            if at >= ended and status in OK[kind] and firsts[kind] is None:
                firsts[kind] = at - ended
        if all(value is not None for value in firsts.values()) or now() > deadline:
            return firsts
        time.sleep(0.2)


def drain(ctx: Context, file_ids: list[int], entries: list[str], created: list[int], info: dict[str, Any],
          limit: float, accepted_deliveries: list) -> dict | None:
    """Waits until the work accepted is done (or `limit`); notes when the held work was done."""
    deadline = now() + limit
    held = info.get("held") or {}
    state = None
    while True:
        if held and "held_requeued_s" not in info:
            tags = ctx.broker.tags()
            if tags is not None and not tags & set(held):
                info["held_requeued_s"] = now() - info["injected"]
        if held and "held_done_s" not in info and held_work_done(ctx, held, QUEUE_OF[info["fault"]]):
            info["held_done_s"] = now() - info["injected"]
        state = ctx.db.work(ctx.load, file_ids, entries, created)
        if state is not None:
            pending_files = state["files"].get("pending", 0)
            pending_inbox = sum(count for _e, status, count in state["inbox"] if status == "pending")
            held_open = held and "held_done_s" not in info
            if not pending_files and not pending_inbox and not held_open and \
                    len(state["calls"]) >= len(expected_calls(accepted_deliveries)):
                return state
        if now() > deadline:
            return state
        time.sleep(1.0)


def held_work_done(ctx: Context, held: dict[str, dict[str, Any]], queue: str) -> bool:
    """Whether the effects of the held messages are in the database (an inbox row processed, a file
    decided); for another task, whether its message is gone from the broker (run and acknowledged)."""
    rows = [m["args"][0] for m in held.values() if m["task"] == "telephony.process_event" and m["args"]]
    files = [m["args"][0] for m in held.values() if m["task"] == "files.validate" and m["args"]]
    others = {m["id"] for m in held.values() if m["task"] not in ("telephony.process_event", "files.validate")}
    if rows and ctx.db.still_pending_rows(rows) != 0:
        return False
    if files and ctx.db.pending_files(files) != 0:
        return False
    if others:
        outstanding = ctx.broker.outstanding(queue)
        return outstanding is not None and not others & outstanding
    return True


def expected_calls(accepted_deliveries: list) -> set[str]:
    """Calls whose summary (their 5th delivery) was accepted within the fault's window (a summary
    accepted after it belongs to the next fault's count, as its other deliveries do)."""
    return {entry for entry, index in accepted_deliveries if index == 4}


def run_fault(ctx: Context, fault: str) -> dict[str, Any]:
    args = ctx.args
    print(f"\n== {fault}: injecting", flush=True)
    time.sleep(args.baseline)
    log_offset = ctx.log_path.stat().st_size
    info = inject(ctx, fault)
    info["fault"] = fault
    if fault in KILLS:
        wait_back(ctx, fault, info, args.back_limit)
    if "burst" in info:
        info.pop("burst").join()
    firsts = recovery(ctx, info["ended"], args.recovery_limit)
    recovered = [value for value in firsts.values() if value is not None]
    window_end = info["ended"] + (max(recovered) if recovered else args.recovery_limit)
    if fault in KILLS:
        window_end = max(window_end, info["injected"] + info.get("ready_s", info.get("back_s", args.back_limit)))
    answered = Counter(status_class(status) for at, _kind, status in list(ctx.load.answers)
                       if info["injected"] <= at <= window_end)
    time.sleep(args.settle)
    close = now()
    file_ids = [file_id for file_id, at in list(ctx.load.uploads.items()) if ctx.mark <= at < close]
    entries = sorted({entry for (entry, _i), at in list(ctx.load.deliveries.items()) if ctx.mark <= at < close})
    accepted_deliveries = [key for key, at in list(ctx.load.deliveries.items()) if ctx.mark <= at < close]
    created = [request_id for request_id, at in list(ctx.load.created.items()) if ctx.mark <= at < close]
    ctx.mark = close
    state = drain(ctx, file_ids, entries, created, info, args.drain_limit, accepted_deliveries)
    after = pids(ctx.stack.pid)
    victim_role = VICTIM_ROLE.get(fault)
    restarted = sorted(name for name, found in info["before"].items()
                       if name != victim_role and not (fault == "heavy" and name == "heavy-child")
                       and found - after.get(name, set()))
    lines = log_lines_since(ctx.log_path, log_offset)
    stray = orphans(ctx)
    row: dict[str, Any] = {
        "fault": fault,
        "outage_s": round(info["ended"] - info["injected"], 1),
        "window_s": round(window_end - info["injected"], 1),
        "answers": dict(answered),
        "recovery_s": {kind: None if value is None else round(value, 2) for kind, value in firsts.items()},
        "back_s": round(info["back_s"], 2) if "back_s" in info else None,
        "ready_s": round(info["ready_s"], 2) if "ready_s" in info else None,
        "held": info.get("held_kind"),
        "held_done_s": round(info["held_done_s"], 1) if "held_done_s" in info else None,
        "held_requeued_s": round(info["held_requeued_s"], 1) if "held_requeued_s" in info else None,
        "others_restarted": restarted,
        "orphans": stray,
        "supervisor_exits": [line.split("|", 1)[-1].strip() for line in lines if "exited:" in line],
        "critical_lines": sum(1 for line in lines if "CRITICAL" in line or "Unrecoverable" in line),
        "tracebacks": sum(1 for line in lines if "Traceback (most recent call last)" in line),
    }
    if "same_address" in info:
        row["redis_same_address"] = info["same_address"]
    row.update(work_row(ctx.load, state, file_ids, entries, accepted_deliveries, created))
    print_rows([row])
    return row


def work_row(load: Load, state: dict | None, file_ids: list[int], entries: list[str],
             accepted_deliveries: list, created: list[int]) -> dict[str, Any]:
    calls_expected = expected_calls(accepted_deliveries)
    if state is None:
        return {"uploads": [len(file_ids), None], "deliveries": [len(accepted_deliveries), None],
                "calls": [len(calls_expected), None], "lost": None, "duplicates": None}
    per_entry_rows: Counter = Counter()
    processed: Counter = Counter()
    for entry, status, count in state["inbox"]:
        per_entry_rows[entry] += count
        if status == "processed":
            processed[entry] += count
    accepted_per_entry = Counter(entry for entry, _index in accepted_deliveries)
    deliveries_lost = sum(max(0, accepted_per_entry[e] - per_entry_rows[e]) for e in accepted_per_entry)
    ready = state["files"].get("ready", 0)
    lost = {
        "uploads": len(file_ids) - ready,
        "deliveries_not_stored": deliveries_lost,
        "deliveries_not_processed": len(accepted_deliveries) - sum(
            min(processed[e], n) for e, n in accepted_per_entry.items()),
        "calls": len(calls_expected - state["calls"]),
        "requests_created": len(created) - state["kept"],
    }
    duplicates = {
        "file_linked_twice": state["linked_twice"],
        "requests_per_call_phone_over_1": sum(1 for count in state["per_phone"].values() if count > 1),
    }
    requests_for_calls = sum(1 for entry in calls_expected if state["per_phone"].get(load.phones[entry]))
    return {"uploads": [len(file_ids), ready], "files_rejected": state["files"].get("rejected", 0),
            "deliveries": [len(accepted_deliveries),
                           sum(min(processed[e], n) for e, n in accepted_per_entry.items())],
            "calls": [len(calls_expected), len(calls_expected & state["calls"])],
            "requests_for_calls": requests_for_calls, "writes_created": [len(created), state["kept"]],
            "lost": lost, "duplicates": duplicates}


# ---- the report ----------------------------------------------------------------------------------

def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def pair(values: list | None) -> str:
    if not values or values[1] is None:
        return f"{values[0] if values else '?'} → ?"
    return f"{values[0]} → {values[1]}"


def verdicts(row: dict[str, Any]) -> list[str]:
    """The targets this fault missed (empty: all met)."""
    missed = []
    if row.get("lost") is None or any(row["lost"].values()):
        missed.append("work lost")
    if row.get("duplicates") is None or any(row["duplicates"].values()):
        missed.append("work doubled")
    if row["fault"] in KILLS and (row["back_s"] is None or row["back_s"] > TARGET_BACK_S):
        missed.append("process back")
    if row["others_restarted"]:
        missed.append("other processes restarted")
    if row["fault"] in ("redis", "postgres"):
        serving = [row["recovery_s"][kind] for kind in ("upload", "read", "write")]
        if any(value is None or value > TARGET_SERVING_S for value in serving):
            missed.append("API serving")
    if row.get("held") and (row["held_done_s"] is None or row["held_done_s"] > TARGET_HELD_S):
        missed.append("held work")
    return missed


HEADER = ("| fault | outage s | window s | 2xx / 4xx / 429 / 5xx / err | recover s: upload / webhook / read / write "
          "| back s (ready s) | uploads → ready | deliveries → processed | calls → done | lost | doubled "
          "| held work done s | others restarted | targets |")


def row_markdown(row: dict[str, Any]) -> str:
    answers = row["answers"]
    statuses = " / ".join(str(answers.get(name, 0)) for name in ("2xx", "4xx", "429", "5xx", "err"))
    recover = " / ".join(fmt(row["recovery_s"][kind]) for kind in KINDS)
    back = "-" if row["back_s"] is None and row["fault"] not in KILLS else fmt(row["back_s"])
    if row.get("ready_s") is not None:
        back += f" ({row['ready_s']:.1f})"
    lost = "?" if row["lost"] is None else str(sum(row["lost"].values()))
    doubled = "?" if row["duplicates"] is None else str(sum(row["duplicates"].values()))
    held = "-" if not row.get("held") else fmt(row["held_done_s"])
    missed = verdicts(row)
    return (f"| {row['fault']} | {row['outage_s']:.1f} | {row['window_s']:.1f} | {statuses} | {recover} | {back} "
            f"| {pair(row['uploads'])} | {pair(row['deliveries'])} | {pair(row['calls'])} | {lost} | {doubled} "
            f"| {held} | {', '.join(row['others_restarted']) or 'none'} "
            f"| {'met' if not missed else 'missed: ' + ', '.join(missed)} |")


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for row in rows:
        print(row_markdown(row))
    for row in rows:
        names = ("lost", "duplicates", "orphans", "supervisor_exits", "critical_lines", "tracebacks", "held",
                 "held_requeued_s",
                 "files_rejected", "requests_for_calls", "writes_created", "redis_same_address")
        details = {name: row[name] for name in names if name in row}
        print(f"  {row['fault']}: {json.dumps(details, ensure_ascii=False)}")
    sys.stdout.flush()


# ---- the run -------------------------------------------------------------------------------------

def seed(env: dict[str, str]) -> None:
    flask = str(Path(sys.executable).parent / "flask")
    done = subprocess.run([flask, "--app", "api", "seed-demo", "--requests", "60"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"seed-demo failed:\n{done.stderr[-3000:]}")


def demo_facts(db: Database) -> tuple[list[int], int, str]:
    request_ids = [row[0] for row in db.rows("SELECT id FROM requests ORDER BY id LIMIT 40") or []]
    city = db.rows("SELECT city_id, phone FROM advertising_campaigns WHERE is_active ORDER BY id LIMIT 1")
    if not request_ids or not city:
        raise SystemExit("the demo data is missing (requests, an active campaign)")
    return request_ids, city[0][0], city[0][1]


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fault", action="append", choices=FAULTS, help="run only this fault (repeatable)")
    parser.add_argument("--quick", action="store_true", help="shorter outages and waits (Redis 20 s, PostgreSQL 10 s)")
    parser.add_argument("--redis-kill", action="store_true", help="SIGKILL the embedded Redis, not SHUTDOWN NOSAVE")
    parser.add_argument("--redis-seconds", type=float,
                        help="how long Redis stays down (default 60 s, 20 s with --quick)")
    parser.add_argument("--var-dir", type=Path, help="the stack's var folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.redis_seconds = args.redis_seconds or (20.0 if args.quick else 60.0)
    args.postgres_seconds = 10.0 if args.quick else 20.0
    args.baseline = 3.0 if args.quick else 8.0
    args.settle = 3.0 if args.quick else 5.0
    args.back_limit = 60.0
    args.recovery_limit = 60.0
    args.drain_limit = 120.0 if args.quick else 240.0
    return args


def main() -> None:
    args = options()
    faults = args.fault or list(FAULTS)
    temporary = None if args.var_dir else tempfile.TemporaryDirectory(prefix="leadline-chaos-")
    var_dir = args.var_dir or Path(temporary.name) / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    log_path = var_dir.parent / "chaos-stack.log"
    password = "Chaos-" + secrets.token_urlsafe(24)
    machine = {**machine_info(), "load_average_at_start": os.getloadavg()}
    stack, env = start_stack(var_dir, log_path, {"ADMIN_PASSWORD": password})
    load: Load | None = None
    rows: list[dict[str, Any]] = []
    try:
        api = f"http://127.0.0.1:{env['API_PORT']}/api"
        wait_ready(stack, api, log_path)
        print(f"stack ready (pid {stack.pid}, log {log_path})", flush=True)
        seed(env)
        db = Database(embedded_call(env, "print(embedded.postgres_url())"))
        redis_url = embedded_call(env, "print(embedded.redis_url())")
        request_ids, city_id, line = demo_facts(db)
        load = Load(api, password, request_ids, city_id, line)
        load.start()
        ctx = Context(args, stack, env, load, db, Workers(redis_url), Broker(redis_url), redis_url, log_path,
                      mark=now())
        for fault in faults:
            if stack.poll() is not None:
                raise RuntimeError(f"the stack exited ({stack.returncode})")
            rows.append(run_fault(ctx, fault))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the stack", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop in half
        if load is not None:
            load.stop.set()
        stop_stack(stack, env)
        machine["load_average_at_end"] = os.getloadavg()
        if rows:
            print("\n== summary")
            print_rows(rows)
            summary(rows)
        print(f"\nmachine: {json.dumps(machine)}")
        if args.json:
            args.json.write_text(json.dumps({"machine": machine, "faults": rows}, indent=2, ensure_ascii=False),
                                 encoding="utf-8")
        if temporary is not None:
            kept = Path(tempfile.gettempdir()) / f"leadline-chaos-{os.getpid()}.log"
            try:
                kept.write_bytes(log_path.read_bytes())
                print(f"stack log kept in {kept}")
            except OSError:
                pass
            temporary.cleanup()


def summary(rows: list[dict[str, Any]]) -> None:
    kills = [row for row in rows if row["fault"] in KILLS]
    outages = [row for row in rows if row["fault"] in ("redis", "postgres")]
    held = [row for row in rows if row.get("held")]
    lost = sum(sum(row["lost"].values()) if row["lost"] else 0 for row in rows)
    doubled = sum(sum(row["duplicates"].values()) if row["duplicates"] else 0 for row in rows)
    print(f"targets: accepted work lost {lost}, done twice {doubled} (target 0 and 0)")
    if kills:
        worst = max((row["back_s"] or float("inf")) for row in kills)
        print(f"         slowest process back {worst:.1f} s (target ≤ {TARGET_BACK_S:.0f} s)")
    for row in outages:
        serving = [row["recovery_s"][kind] for kind in ("upload", "read", "write")]
        worst = max((value if value is not None else float("inf")) for value in serving)
        print(f"         API serving {worst:.1f} s after {row['fault']} returned (target ≤ {TARGET_SERVING_S:.0f} s)")
    if held:
        worst = max((row["held_done_s"] or float("inf")) for row in held)
        print(f"         work held by a killed worker done within {worst:.1f} s (target ≤ {TARGET_HELD_S:.0f} s)")


if __name__ == "__main__":
    main()
