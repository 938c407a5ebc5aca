"""Console commands as real processes (`flask --app api ...`) on the test database: an administrator's
password given to `create-admin` or to `make run` (the `stack` command, through ADMIN_PASSWORD) meets
the password policy, or nothing is hashed and the command says which setting or option is refused."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from embedded import free_port
from models.core.db import Session
from models.people.passwords import verify_password
from models.people.tables import User
from tests.support import wait_for

ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).parent / "flask")
LOGIN = "cli-admin"
STRONG = "Tram-Vokzal-Pero-7"
PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": "q7Vt2LmXe9RzK4pWb8NcY3hJf6GsD1aU5oQi0TnE",
              "FLOWER_PASSWORD": "Flower-Vokzal-Pero-7", "MANGO_ENABLED": "false"}


def flask(*args: str, **env: str) -> subprocess.CompletedProcess:
    """A console command on the test database, with no terminal (nothing is prompted for)."""
    base = {name: value for name, value in os.environ.items() if name not in ("ADMIN_PASSWORD", "ADMIN_LOGIN")}
    return subprocess.run([FLASK, "--app", "api", *args], cwd=ROOT, env={**base, **env}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)


def admin(login: str = LOGIN) -> User | None:
    Session.remove()
    return Session.scalar(select(User).where(func.lower(User.login) == login))


@pytest.mark.parametrize("weak, reason", [
    ("short-pw1", "не менее 10 символов"),
    ("aaaaaaaaaaaa", "слишком простой"),
    ("1234567890", "слишком простой"),
    ("password1234", "распространён"),
])
def test_create_admin_refuses_a_weak_password_and_hashes_nothing(committed, weak, reason):
    from_option = flask("create-admin", "--login", LOGIN, "--password", weak)
    from_setting = flask("create-admin", "--login", LOGIN, ADMIN_PASSWORD=weak)
    for done, source in ((from_option, "--password"), (from_setting, "ADMIN_PASSWORD")):
        assert done.returncode != 0
        assert f"{source} is refused: " in done.stderr and reason in done.stderr, done.stderr
        assert weak not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert admin() is None


def test_create_admin_does_not_reset_an_existing_password_to_a_weak_one(committed):
    assert flask("create-admin", "--login", LOGIN, "--password", STRONG).returncode == 0
    refused = flask("create-admin", "--login", LOGIN, "--password", "qwerty123")
    assert refused.returncode != 0 and f"The administrator '{LOGIN}' was not changed" in refused.stderr
    assert verify_password(admin().password_hash, STRONG)


def test_a_password_reset_from_the_console_ends_the_admins_sessions(committed, app):
    assert flask("create-admin", "--login", LOGIN, "--password", STRONG).returncode == 0
    browser = app.test_client()
    signed_in = browser.post("/api/auth/login", json={"login": LOGIN, "password": STRONG})
    assert signed_in.status_code == 200
    assert browser.get("/api/auth/me").status_code == 200
    reset = flask("create-admin", "--login", LOGIN, "--password", "Lamp-Harbour-Quill-3")
    assert reset.returncode == 0, reset.stderr
    ended = browser.get("/api/auth/me")
    assert (ended.status_code, ended.json["code"]) == (401, "token_revoked")


def test_create_admin_in_production_asks_for_twelve_characters(committed):
    eleven = "Tram-Vokz-7"
    refused = flask("create-admin", "--login", LOGIN, "--password", eleven, **PRODUCTION)
    assert refused.returncode != 0 and "не менее 12 символов" in refused.stderr, refused.stderr
    assert admin() is None
    assert flask("create-admin", "--login", LOGIN, "--password", eleven).returncode == 0  # 10 do elsewhere
    done = flask("create-admin", "--login", LOGIN, "--password", STRONG, **PRODUCTION)
    assert done.returncode == 0, done.stderr
    assert verify_password(admin().password_hash, STRONG)


def test_make_run_refuses_a_weak_admin_password_before_starting_anything(committed, tmp_path):
    """`make run` (the stack command) creates its administrator from ADMIN_PASSWORD: a weak one stops
    it with the setting named, before any process of the stack is started. (Were the stack to start
    anyway, it is stopped as Ctrl-C would, so that no process outlives the test.)"""
    log = tmp_path / "stack.log"
    env = {**{name: value for name, value in os.environ.items() if name != "ADMIN_LOGIN"},
           "ADMIN_LOGIN": LOGIN, "ADMIN_PASSWORD": "admin12345", "API_PORT": str(free_port()),
           "FLOWER_PORT": str(free_port()), "API_WORKERS": "1"}
    with open(log, "wb") as out:
        stack = subprocess.Popen([FLASK, "--app", "api", "stack"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: stack.poll() is not None or "leadline: API" in log.read_text(), timeout=120, interval=0.1)
    finally:
        if stack.poll() is None:
            stack.send_signal(signal.SIGTERM)  # stops the process manager, which stops its processes
            stack.wait(timeout=60)
    output = log.read_text()
    assert "leadline: API" not in output, output[-3000:]  # the processes were never started
    assert stack.returncode != 0
    assert "ADMIN_PASSWORD is refused: " in output, output[-3000:]
    assert admin() is None
