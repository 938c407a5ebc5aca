"""`make run` stops quietly: Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM
to the stack process ends every process and the embedded services, with no traceback, and the
command exits 0. And it stays up: a process that dies is restarted by the supervisor while the
others, the API first, keep answering and the embedded services keep running.

The stack runs for real (`flask --app api stack`, then supervise.py and supervisord: gunicorn, both
workers, beat, Flower) in embedded mode, with a var folder and ports of its own. The stop test signs
in, uses the API, leaves the heavy worker in the middle of a task (a recordings import waiting on a
mail server that never greets), and then stops the stack.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

import embedded
from tests.support import still_running, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).parent / "flask")
LOGIN, PASSWORD = "stop-admin", "stop-admin-password-42"


class SilentMailServer:
    """Accepts IMAP connections and never says a word: the import that connects waits on it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _address = self.listener.accept()
            except OSError:  # closed
                return
            self.connections.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def stack_env(var: Path, mail: SilentMailServer) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update(
        APP_ENV="development", LEADLINE_VAR_DIR=str(var), XDG_RUNTIME_DIR=str(var / "run"),
        API_PORT=str(embedded.free_port()), FLOWER_PORT=str(embedded.free_port()), API_WORKERS="1",
        ADMIN_LOGIN=LOGIN, IMAP_HOST="127.0.0.1", IMAP_PORT=str(mail.port), IMAP_SECURITY="plain",
        IMAP_USER="recordings", IMAP_PASSWORD="mail-password", PYTHONUNBUFFERED="1",
    )
    return env


def flask(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([FLASK, "--app", "api", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def embedded_processes(var: Path) -> list[psutil.Process]:
    """The embedded PostgreSQL (postmaster and its backends) and Redis: they are nobody's children."""
    postmaster = psutil.Process(int((var / "pg" / "postmaster.pid").read_text().split()[0]))
    redis_server = psutil.Process(int((var / "redis" / "redis.pid").read_text()))
    return [postmaster, *postmaster.children(recursive=True), redis_server]


class Stack:
    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.api = f"http://127.0.0.1:{env['API_PORT']}/api"
        with open(log, "wb") as out:
            self.process = subprocess.Popen([FLASK, "--app", "api", "stack"], cwd=REPO, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ready(self) -> bool:
        assert self.process.poll() is None, f"the stack ended early:\n{self.output()[-5000:]}"
        try:
            answer = requests.get(f"{self.api}/health/ready", timeout=5)
        except requests.RequestException:
            return False
        worker = answer.json()["checks"]["worker"]["detail"] if answer.status_code == 200 else ""
        return "light@" in worker and "heavy@" in worker

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]


def use_the_api(stack: Stack, mail: SilentMailServer) -> None:
    token = requests.post(f"{stack.api}/auth/login", json={"login": LOGIN, "password": PASSWORD},
                          timeout=10).json()["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    assert session.get(f"{stack.api}/auth/me", timeout=10).json()["login"] == LOGIN
    city = session.post(f"{stack.api}/cities", json={"name": "Ярославль"}, timeout=10)
    assert city.status_code == 201, city.text
    created = session.post(f"{stack.api}/requests", json={"city_id": city.json()["id"], "client_phone": "79161230001"},
                           timeout=10)
    assert created.status_code == 201, created.text
    assert len(session.get(f"{stack.api}/requests", timeout=10).json()) == 1
    job = session.post(f"{stack.api}/jobs/ping", timeout=10)
    assert job.status_code == 202, job.text
    wait_for(lambda: session.get(f"{stack.api}/jobs/{job.json()['job_id']}", timeout=10).json()["status"]
             == "succeeded", timeout=30, interval=0.2)  # the light worker ran it
    download = session.post(f"{stack.api}/recordings/download", json={"days_back": 1}, timeout=10)
    assert download.status_code == 202, download.text
    wait_for(lambda: mail.connections, timeout=30, interval=0.1)  # the heavy worker is in the middle of it


def tear_down(stack: Stack | None, processes: list[psutil.Process], env: dict, mail: SilentMailServer) -> None:
    """Whatever a test left: a stack still running (the test failed before its stop) gets SIGTERM, every
    process seen is killed, the embedded services of its var folder are stopped."""
    if stack is not None and stack.process.poll() is None:
        processes += stack.tree()
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    subprocess.run([sys.executable, "-c", "import embedded; embedded.stop_all()"], cwd=REPO, env=env,
                   capture_output=True, timeout=60)
    mail.close()


@pytest.fixture()
def stack_dir():
    """A folder for the stack's ./var outside pytest's temporary root: run as root, the embedded
    PostgreSQL runs as its own user, and any pytest session starting meanwhile makes that root
    private to root again (0700), which would lock PostgreSQL's user out of its own data folder."""
    folder = Path(tempfile.mkdtemp(prefix="leadline-stack-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_the_stack_stops_quietly_and_completely(how, stack_dir):
    mail = SilentMailServer()
    var = stack_dir / "var"
    env = stack_env(var, mail)
    processes: list[psutil.Process] = []
    stack = None
    try:
        flask(env, "migrate")  # the admin exists before the stack starts, as on every run but the first
        flask(env, "create-admin", "--login", LOGIN, "--password", PASSWORD)
        stack = Stack(env, stack_dir / "stack.log")
        wait_for(stack.ready, timeout=120, interval=0.3)
        use_the_api(stack, mail)
        processes = stack.tree() + embedded_processes(var)
        assert len(processes) > 12  # supervisor, gunicorn, two workers (heavy's pool), beat, Flower, services

        started = time.monotonic()
        if how == "ctrl-c":
            os.killpg(stack.process.pid, signal.SIGINT)
        else:
            stack.process.send_signal(signal.SIGTERM)
        code = stack.process.wait(timeout=60)
        stopped_in = time.monotonic() - started

        output = stack.output()
        for bad in ("Traceback", "Error", " ERROR "):
            assert bad not in output, output[-8000:]
        assert code == 0, output[-3000:]
        assert "leadline: stopping embedded postgres, redis" in output
        alive = still_running(processes)
        assert alive == [], (f"{[(process.pid, process.name()) for process in alive]}\n{output[-3000:]}\n"
                             f"{(var / 'pg' / 'log').read_text()[-3000:]}")
        assert stopped_in < 30
    finally:
        tear_down(stack, processes, env, mail)


def role_processes(stack: Stack) -> dict[str, psutil.Process]:
    """The main process of every program of the stack (not a pool child, not a shell), by the name of
    its Procfile line."""
    found = {}
    for process in stack.tree():
        try:
            command = " ".join(process.cmdline())
            if process.name() == "sh" or process.parent().name() in ("gunicorn", "celery"):
                continue
        except psutil.Error:  # a dead one not yet collected
            continue
        for name, mark in (("api", "gunicorn"), ("beat", " beat"), ("flower", " flower"),
                           ("light", "--queues light"), ("heavy", "--queues heavy")):
            if mark in command:
                found[name] = process
    return found


class HealthPoller:
    """GET /api/health over and over from a thread, noting every answer (or failure)."""

    def __init__(self, api: str) -> None:
        self.api, self.answers, self.failures = api, 0, []
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while self.running:
            try:
                status = requests.get(f"{self.api}/health", timeout=5).status_code
                if status == 200:
                    self.answers += 1
                else:
                    self.failures.append(status)
            except requests.RequestException as exc:
                self.failures.append(type(exc).__name__)
            time.sleep(0.05)

    def stop(self) -> None:
        self.running = False
        self.thread.join(timeout=10)


def test_a_killed_worker_is_restarted_while_the_api_answers(stack_dir):
    mail = SilentMailServer()
    var = stack_dir / "var"
    env = stack_env(var, mail)
    stack = None
    processes: list[psutil.Process] = []
    try:
        stack = Stack(env, stack_dir / "stack.log")
        wait_for(stack.ready, timeout=120, interval=0.3)
        before = role_processes(stack)
        assert set(before) == {"api", "light", "heavy", "beat", "flower"}, before
        services = embedded_processes(var)
        processes = stack.tree() + services
        heavy_pool = before["heavy"].children()  # its prefork child, while it has work (--autoscale 1,0)

        poller = HealthPoller(stack.api)
        wait_for(lambda: poller.answers > 0, timeout=10)
        before["heavy"].send_signal(signal.SIGKILL)

        def restarted():
            heavy = role_processes(stack).get("heavy")
            return heavy is not None and heavy.pid != before["heavy"].pid and stack.ready()

        wait_for(restarted, timeout=60, interval=0.2)
        answered_before = poller.answers
        wait_for(lambda: poller.answers > answered_before, timeout=10)
        poller.stop()

        assert poller.failures == []  # the API answered all along
        after = role_processes(stack)
        for name in ("api", "light", "beat", "flower"):  # the others kept running, untouched
            assert after[name].pid == before[name].pid, name
            assert after[name].is_running(), name
        assert still_running(services) == services  # the embedded PostgreSQL and Redis stayed up
        assert still_running(heavy_pool) == []  # the dead worker's pool process did not linger
        assert stack.process.poll() is None
        output = stack.output()
        assert "exited: heavy (terminated by SIGKILL; not expected)" in output, output[-5000:]
        assert f"spawned: 'heavy' with pid {after['heavy'].pid}" in output, output[-5000:]
        processes += stack.tree()

        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(timeout=60) == 0
        assert still_running(processes) == []
    finally:
        tear_down(stack, processes, env, mail)
