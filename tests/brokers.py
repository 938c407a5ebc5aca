"""The two brokers the tests run on: Redis (the default) and RabbitMQ.

- The key tests of the queue (enqueue and process, the webhook's fast path end to end, the message it
  builds, the queue lengths, readiness, the redelivery after a killed worker) take the `broker`
  fixture (tests/conftest.py): they run once per broker in every run, the RabbitMQ variant skipped
  with the reason when none answers. The test process's Celery app is pointed at the variant's
  broker for the length of the test (`switched_to`) and a real worker process consumes from it.
- The whole suite runs on RabbitMQ with LEADLINE_TEST_BROKER=amqp (the session's worker thread and
  every worker process the tests start then use it); tests of Redis' own records (the lease, the
  priority lists) are skipped there with the reason.

RabbitMQ is LEADLINE_TEST_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672//, as CI has it). Each
run gets a virtual host of its own when `rabbitmqctl` can create one (removed at the end of the run),
so parallel runs on one broker never share a queue; otherwise the URL's virtual host is used as is.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote, unquote, urlsplit, urlunsplit

REDIS, AMQP = "redis", "amqp"
BROKERS = (REDIS, AMQP)
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
REPO = Path(__file__).resolve().parent.parent

_amqp: tuple[str | None, str] | None = None  # (URL of the run's virtual host, or None; why not)


def _answers(url: str) -> str | None:
    """None when RabbitMQ at `url` accepts a connection, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2, transport_options={"max_retries": 0}) as connection:
            connection.ensure_connection(max_retries=0)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: no RabbitMQ for this run
        return f"{type(exc).__name__}: {exc}"


def _rabbitmqctl(*args: str) -> bool:
    command = shutil.which("rabbitmqctl")
    if command is None:
        return False
    try:
        done = subprocess.run([command, *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), parts.query, parts.fragment))


def amqp_url() -> tuple[str | None, str]:
    """(the run's RabbitMQ URL, how it was set up) or (None, why there is none); settled once per run."""
    global _amqp
    if _amqp is not None:
        return _amqp
    configured = os.environ.get("LEADLINE_TEST_AMQP_URL") or DEFAULT_AMQP_URL
    problem = _answers(configured)
    if problem:
        where = urlsplit(configured)
        _amqp = (None, f"RabbitMQ does not answer at {where.hostname}:{where.port or 5672} ({problem})")
        return _amqp
    vhost = f"leadline-test-{uuid.uuid4().hex[:10]}"
    user = unquote(urlsplit(configured).username or "guest")
    if _rabbitmqctl("add_vhost", vhost) and _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"):
        atexit.register(_delete_vhost, vhost, os.getpid())
        _amqp = (_with_vhost(configured, vhost), f"virtual host {vhost} of this run")
    else:
        _amqp = (configured, "the URL's virtual host (rabbitmqctl could not create one)")
    return _amqp


def _delete_vhost(vhost: str, run_pid: int) -> None:
    if os.getpid() == run_pid:  # not from a process forked by the run
        _rabbitmqctl("delete_vhost", vhost)


@dataclass(frozen=True)
class Broker:
    """The broker of a test: its kind, its URL, and whether the test process was switched to it."""

    kind: str
    url: str
    switched: bool


def session_broker() -> str:
    """The broker of the run: LEADLINE_TEST_BROKER (redis, the default, or amqp)."""
    kind = os.environ.get("LEADLINE_TEST_BROKER", REDIS).lower()
    if kind not in BROKERS:
        raise RuntimeError(f"LEADLINE_TEST_BROKER must be one of {', '.join(BROKERS)}, not {kind!r}")
    return kind


def url_of(kind: str) -> str:
    """The URL of a broker of the run (Redis: the test Redis, REDIS_URL)."""
    if kind == REDIS:
        return os.environ["REDIS_URL"]
    url, why = amqp_url()
    if url is None:
        raise RuntimeError(why)
    return url


@contextmanager
def switched_to(url: str) -> Iterator[None]:
    """The test process's broker is `url` for the length of the block: settings, the Celery app's
    broker settings and its connection pools (the pools of the other broker are kept for later).
    The session's worker thread keeps consuming from the broker it started on."""
    from settings import settings
    from tasks.celery_app import broker_conf, celery_app

    keys = set(broker_conf(url)) | set(broker_conf(settings.broker_url or url))
    saved_conf = {name: celery_app.conf.get(name) for name in keys}
    saved_url, saved_env = settings.CELERY_BROKER_URL, os.environ.get("CELERY_BROKER_URL")

    def point(broker_url, env, conf) -> None:
        object.__setattr__(settings, "CELERY_BROKER_URL", broker_url)
        if env is None:  # Celery reads the variable before its own setting
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = env
        celery_app.conf.update(conf)
        celery_app._pool = None
        celery_app.amqp._producer_pool = None
        # Built once per app from the broker of the moment: the control mailbox keeps entities bound to
        # it, the task-sent events' dispatcher (and the sender holding it) the events exchange's type
        # (fanout on Redis, topic on RabbitMQ, where a fanout one would then refuse the workers').
        celery_app.__dict__.pop("control", None)
        celery_app.amqp.__dict__.pop("_event_dispatcher", None)
        celery_app.amqp.__dict__.pop("send_task_message", None)

    point(url, url, broker_conf(url))
    try:
        yield
    finally:
        point(saved_url, saved_env, saved_conf)


class WorkerProcess:
    """A real `celery -A tasks worker` process on `url`'s broker, consuming `queues`."""

    def __init__(self, url: str, log_dir: Path, queues: str = "light,heavy", app: str = "tasks", **env: str):
        self.log = open(log_dir / f"worker-{uuid.uuid4().hex[:6]}.log", "wb")
        self.name = f"broker-{uuid.uuid4().hex[:8]}@test"
        environment = {**os.environ, "APP_ENV": "test", "PYTHONPATH": str(REPO), "LOG_LEVEL": "WARNING",
                       "CELERY_BROKER_URL": url, **env}
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("celery")), "-A", app, "worker", "-Q", queues, "-c", "2",
             "--pool", "threads", "-n", self.name, "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            cwd=REPO, env=environment, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def stop(self) -> None:
        from tests.support import stop_process_group

        stop_process_group(self.process, timeout=20)
        self.log.close()
