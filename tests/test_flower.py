"""Flower as `make run` starts it: the Procfile line with the stack's environment."""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from string import Template

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
