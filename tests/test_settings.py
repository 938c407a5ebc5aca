"""Settings: typed, aliases of the old names, safe defaults, refusal in production."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from embedded import free_port
from settings import Settings, SettingsError, load
from tests.support import stop_process_group, wait_for

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "q7Vt2LmXe9RzK4pWb8NcY3hJf6GsD1aU5oQi0TnE",
    "DATABASE_URL": "postgresql://leadline@db/leadline",
    "REDIS_URL": "redis://redis:6379/0",
    "FLOWER_PASSWORD": "Tram-Vokzal-Pero-7",
    "MANGO_API_KEY": "9ipl5monmwkkyg3adfx2s6frz7b",
    "MANGO_API_SALT": "k2v8s0d7x1q4m6n3b5c9z0a1s2d3f4g5",
}
# Production with one weak secret each (the setting the refusal must name, and what is set).
WEAK_PRODUCTION = {
    "webhook on, no Mango key": ("MANGO_API_KEY", {"MANGO_API_KEY": ""}),
    "webhook on, no Mango salt": ("MANGO_API_SALT", {"MANGO_API_SALT": ""}),
    "short SECRET_KEY": ("SECRET_KEY", {"SECRET_KEY": "q7Vt2LmXe9RzK4pWb8NcY3hJf6GsD1a"}),
    "one character repeated": ("SECRET_KEY", {"SECRET_KEY": "x" * 64}),
    "two characters repeated": ("SECRET_KEY", {"SECRET_KEY": "ab" * 32}),
    "a word repeated": ("SECRET_KEY", {"SECRET_KEY": "leadline" * 6}),
    "common FLOWER_PASSWORD": ("FLOWER_PASSWORD", {"FLOWER_PASSWORD": "password1234"}),
    "short FLOWER_PASSWORD": ("FLOWER_PASSWORD", {"FLOWER_PASSWORD": "Tram-Vokz-7"}),
    "keyboard-run FLOWER_PASSWORD": ("FLOWER_PASSWORD", {"FLOWER_PASSWORD": "qwertyuiop12"}),
    "short ADMIN_PASSWORD": ("ADMIN_PASSWORD", {"ADMIN_PASSWORD": "Adm1n-Pass"}),
    "common ADMIN_PASSWORD": ("ADMIN_PASSWORD", {"ADMIN_PASSWORD": "iloveyou1234"}),
}


def test_development_defaults():
    s = load({})
    assert s.APP_ENV == "development"
    assert s.API_HOST == "127.0.0.1" and s.API_PORT == 8000 and s.FLOWER_PORT == 5555
    assert s.MASTER_SHARE == Decimal("0.5")
    assert s.BUSINESS_TZ == "Europe/Moscow"
    assert s.MAX_UPLOAD_MB == 10 and s.MAX_RECORDING_UPLOAD_MB == 50
    assert s.MANGO_REPEAT_WINDOW_MIN == 30 and s.MANGO_MISSED_CREATES_REQUEST is True
    assert s.IMAP_PORT == 993 and s.IMAP_SECURITY == "ssl" and s.RECORDINGS_CHECK_INTERVAL == 300
    assert s.TRUSTED_PROXIES == 0
    assert s.cookie_secure is False
    assert s.DATABASE_URL is None and s.REDIS_URL is None  # embedded services


def test_types_are_parsed():
    s = load({"API_PORT": "9001", "COOKIE_SECURE": "yes", "MASTER_SHARE": "0.6",
              "CORS_ORIGINS": "https://a.example, https://b.example", "MANGO_MISSED_CREATES_REQUEST": "false"})
    assert s.API_PORT == 9001
    assert s.cookie_secure is True
    assert s.MASTER_SHARE == Decimal("0.6")
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.MANGO_MISSED_CREATES_REQUEST is False


@pytest.mark.parametrize("env, name", [
    ({"API_PORT": "eighty"}, "API_PORT"),
    ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
    ({"MASTER_SHARE": "1.5"}, "MASTER_SHARE"),
    ({"APP_ENV": "staging"}, "APP_ENV"),
    ({"IMAP_SECURITY": "tls"}, "IMAP_SECURITY"),
    ({"RATE_LIMIT_PER_USER": "lots"}, "RATE_LIMIT_PER_USER"),
    ({"RATE_LIMIT_LOGIN": "30 per fortnight"}, "RATE_LIMIT_LOGIN"),
    ({"API_WORKERS": "0"}, "API_WORKERS"),
    ({"WORKERS": "many"}, "WORKERS"),
    ({"DIGEST_HOUR": "24"}, "DIGEST_HOUR"),
    ({"TELEGRAM_MAX_PER_SECOND": "100"}, "TELEGRAM_MAX_PER_SECOND"),
    ({"CELERY_BROKER_URL": "sqs://queue.example"}, "CELERY_BROKER_URL"),  # neither Redis nor RabbitMQ
])
def test_malformed_values_are_refused(env, name):
    with pytest.raises(SettingsError, match=name):
        load(env)


@pytest.mark.parametrize("text", [
    "10/minute", "10 / minute", "100 per 2 hours", "5 per second", "1/DAY", "7/years", " 3 per month ",
    "10/minute; 100/hour", "10/minute,100/hour", "1/second|2/minute", "lots", "30 per fortnight",
    "10/", "/minute", "10 minutes", "10/minute;", "ten/minute", "10/2.5 hours", "", "10 per per minute",
])
def test_the_rate_limit_check_agrees_with_the_limiter(text):
    """settings checks the notation without importing `limits` (kept out of workers, beat and
    Flower); what it accepts is what the API's limiter (api/gate.py) parses, and nothing else."""
    from limits import parse

    from settings import _is_rate_limit

    try:
        parse(text)
    except ValueError:
        parsed = False
    else:
        parsed = True
    assert _is_rate_limit(text) is parsed


def test_the_digest_goes_to_the_alerts_chat_unless_it_has_its_own():
    assert load({"TELEGRAM_CHAT_ID": "-1001"}).digest_chat_id == "-1001"
    assert load({"TELEGRAM_CHAT_ID": "-1001", "DIGEST_CHAT_ID": "-1002"}).digest_chat_id == "-1002"
    assert load({}).digest_chat_id is None


@pytest.mark.parametrize("url, kind", [
    ("redis://:pw@cache:6379/1", "redis"), ("rediss://cache:6380/0", "redis"),
    ("amqp://leadline:pw@rabbitmq:5672/leadline", "amqp"), ("amqps://rabbitmq:5671//", "amqp"),
])
def test_the_broker_may_be_redis_or_rabbitmq(url, kind):
    from settings import broker_kind

    assert load({"CELERY_BROKER_URL": url}).broker_url == url
    assert broker_kind(url) == kind


def test_old_names_are_aliases():
    s = load({
        "POSTGRESQL_HOST": "db", "POSTGRESQL_PORT": "6543", "POSTGRESQL_USER": "crm",
        "POSTGRESQL_PASSWORD": "p@ss word", "POSTGRESQL_DBNAME": "crm",
        "REDIS_HOST": "cache", "REDIS_PORT": "6380",
        "RAMBLER_IMAP_USERNAME": "calls@example.ru", "RAMBLER_IMAP_PASSWORD": "imap",
        "RAMBLER_IMAP_HOST": "imap.example.ru", "RAMBLER_IMAP_PORT": "143",
        "MANGO_WEBHOOK_SECRET": "salt", "ENVIRONMENT": "test", "ALLOWED_ORIGINS": "https://lead.example",
    })
    assert s.DATABASE_URL == "postgresql://crm:p%40ss%20word@db:6543/crm"
    assert s.REDIS_URL == "redis://cache:6380/0"
    assert (s.IMAP_USER, s.IMAP_PASSWORD, s.IMAP_HOST, s.IMAP_PORT) == (
        "calls@example.ru", "imap", "imap.example.ru", 143)
    assert s.MANGO_API_SALT == "salt"
    assert s.APP_ENV == "test"
    assert s.cors_origins == ["https://lead.example"]


def test_canonical_name_wins_over_alias():
    assert load({"IMAP_USER": "new", "RAMBLER_IMAP_USERNAME": "old"}).IMAP_USER == "new"


def test_production_refuses_to_start_without_secrets():
    for missing in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "FLOWER_PASSWORD"):
        env = {k: v for k, v in PRODUCTION.items() if k != missing}
        with pytest.raises(SettingsError, match=missing):
            load(env)


def test_production_refuses_weak_secret_key():
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load({**PRODUCTION, "SECRET_KEY": "short"})


@pytest.mark.parametrize("name, weak", WEAK_PRODUCTION.values(), ids=WEAK_PRODUCTION.keys())
def test_production_refuses_weak_secrets(name, weak):
    with pytest.raises(SettingsError, match=name) as refused:
        load({**PRODUCTION, **weak})
    [value] = weak.values()
    assert not value or value not in str(refused.value)  # the secret itself is never shown


def test_production_may_switch_the_mango_webhook_off_instead_of_signing_it():
    unsigned = {name: value for name, value in PRODUCTION.items() if not name.startswith("MANGO_API_")}
    with pytest.raises(SettingsError, match="MANGO_ENABLED=false"):
        load(unsigned)
    assert load({**unsigned, "MANGO_ENABLED": "false"}).MANGO_ENABLED is False
    assert load({**PRODUCTION, "ADMIN_PASSWORD": "Tram-Vokzal-Pero-8"}).ADMIN_PASSWORD == "Tram-Vokzal-Pero-8"


def test_weak_secrets_are_allowed_outside_production():
    """Development keeps its defaults (no Mango key, a short password of its own) and only warns."""
    s = load({"SECRET_KEY": "x" * 8, "FLOWER_PASSWORD": "flower", "ADMIN_PASSWORD": "admin"})
    assert s.MANGO_ENABLED is True and s.MANGO_API_KEY is None


def production_process_env(**values: str) -> dict[str, str]:
    """The environment of a process started as production: the parent's environment without any
    leadline setting (nor an old name of one), then `values`."""
    names = {name for f in fields(Settings) for name in (f.name, *f.metadata["aliases"])}
    old = ("POSTGRESQL_", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "PROMETHEUS_MULTIPROC_DIR")
    env = {name: value for name, value in os.environ.items() if name not in names and not name.startswith(old)}
    env.update(values, PYTHONUNBUFFERED="1")
    return env


def gunicorn(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """The API as production starts it (Procfile, deploy/Dockerfile): gunicorn with its config file."""
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
               "--workers", "1", "api:create_app()"]
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@pytest.mark.parametrize("name, weak", WEAK_PRODUCTION.values(), ids=WEAK_PRODUCTION.keys())
def test_the_api_process_refuses_to_start_in_production_with_a_weak_secret(name, weak, tmp_path):
    process = gunicorn(production_process_env(**{**PRODUCTION, **weak}), free_port(), tmp_path / "api.log")
    try:
        process.wait(timeout=120)
    finally:
        stop_process_group(process)
    err = (tmp_path / "api.log").read_text()
    assert process.returncode != 0
    [refusal] = [line for line in err.splitlines() if line.startswith("settings.SettingsError")]
    assert name in refusal
    for other in {other for other, _ in WEAK_PRODUCTION.values()} - {name, "MANGO_API_SALT", "MANGO_API_KEY"}:
        assert other not in refusal  # only the weak one is named


def test_the_api_process_starts_in_production_with_strong_secrets(tmp_path):
    """The strong configuration against this test session's PostgreSQL and Redis: the API answers."""
    port, log = free_port(), tmp_path / "api.log"
    strong = {**PRODUCTION, "DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"],
              "ADMIN_PASSWORD": "Tram-Vokzal-Pero-8"}
    process = gunicorn(production_process_env(**strong), port, log)
    try:
        def health():
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                return requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(health, timeout=120, interval=0.2)
    finally:
        stop_process_group(process)
    assert "unsigned" not in log.read_text()  # signed: no warning about the webhook


def test_production_defaults_are_safe():
    s = load(PRODUCTION)
    assert s.is_production
    assert s.cookie_secure is True
    assert s.log_json is True
    assert s.cors_origins == []


def test_api_docs_are_off_in_production_unless_switched_on():
    assert load({}).api_docs_enabled is True
    assert load({"APP_ENV": "test"}).api_docs_enabled is True
    assert load(PRODUCTION).api_docs_enabled is False
    assert load({**PRODUCTION, "API_DOCS_ENABLED": "true"}).api_docs_enabled is True
    assert load({"API_DOCS_ENABLED": "off"}).api_docs_enabled is False


CREDENTIALED_URLS = {
    "DATABASE_URL": "postgresql://leadline:db-Pa55word-1@db/leadline",
    "REDIS_URL": "redis://:redis-Pa55word-2@redis:6379/0",
    "CELERY_BROKER_URL": "redis://broker:broker-Pa55word-3@redis:6379/1",
}


def test_secrets_are_masked():
    """Secrets are hidden whole; a URL shows where it points, with its password masked."""
    public = load({**PRODUCTION, **CREDENTIALED_URLS, "IMAP_PASSWORD": "imap-Pa55word-4"}).public()
    assert public["SECRET_KEY"] == "***" and public["IMAP_PASSWORD"] == "***"
    assert public["DATABASE_URL"] == "postgresql://leadline:***@db/leadline"
    assert public["REDIS_URL"] == "redis://:***@redis:6379/0"
    assert public["CELERY_BROKER_URL"] == "redis://broker:***@redis:6379/1"
    assert public["API_PORT"] == 8000


def test_mask_hides_every_configured_secret_wherever_it_shows():
    """Text from anywhere (a driver's error, a library's message): every configured secret, each URL's
    password and any long piece of one a parser split off are masked; the rest is kept."""
    s = load({**PRODUCTION, **CREDENTIALED_URLS, "REDIS_URL": "redis://:Rt6yHn3Q/8cVx2Kp5w@redis:6379/0",
              "TELEGRAM_BOT_TOKEN": "123456:TEST-token_value", "IMAP_PASSWORD": "imap-Pa55word-4"})
    text = ("Port could not be cast to integer value as 'Rt6yHn3Q'; bot123456:TEST-token_value/sendMessage; "
            "login failed with imap-Pa55word-4 at imap.example.com; see postgresql://u:other-pass@h/db")
    assert s.mask(text) == ("Port could not be cast to integer value as '***'; bot***/sendMessage; "
                            "login failed with *** at imap.example.com; see postgresql://u:***@h/db")


def test_storage_backend_is_local_or_s3_with_a_bucket_and_its_keys_are_masked():
    assert load({}).STORAGE_BACKEND == "local"
    with pytest.raises(SettingsError, match="STORAGE_BACKEND must be local or s3"):
        load({"STORAGE_BACKEND": "ftp"})
    with pytest.raises(SettingsError, match="STORAGE_BACKEND=s3 needs S3_BUCKET"):
        load({"STORAGE_BACKEND": "s3"})
    with pytest.raises(SettingsError, match="S3_PRESIGN_SECONDS"):
        load({"S3_PRESIGN_SECONDS": "-1"})
    s = load({"STORAGE_BACKEND": "s3", "S3_BUCKET": "leadline", "S3_ACCESS_KEY_ID": "AKIAEXAMPLEKEY01",
              "S3_SECRET_ACCESS_KEY": "s3-Secret-value-42"})
    assert s.public()["S3_ACCESS_KEY_ID"] == "***" and s.public()["S3_SECRET_ACCESS_KEY"] == "***"
    assert s.mask("SignatureDoesNotMatch for AKIAEXAMPLEKEY01 / s3-Secret-value-42") == (
        "SignatureDoesNotMatch for *** / ***")


def test_gunicorn_takes_address_and_workers_from_settings():
    """gunicorn.conf.py reads API_HOST, API_PORT and API_WORKERS (old name WORKERS) through
    settings.py: the same names, defaults and checks as everything else."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--print-config", "api:create_app()"]

    def run(**env):
        return subprocess.run(command, cwd=root, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)

    printed = run(WORKERS="7", API_PORT="8123")
    assert printed.returncode == 0, printed.stderr
    resolved = {key.strip(): value.strip() for key, _, value in
                (line.partition(" = ") for line in printed.stdout.splitlines())}
    assert resolved["workers"] == "7"
    assert resolved["bind"] == "['127.0.0.1:8123']"
    assert (resolved["threads"], resolved["worker_class"]) == ("2", "gthread")  # API_THREADS' default

    single = run(API_THREADS="1")
    assert single.returncode == 0, single.stderr
    assert "worker_class                  = sync" in single.stdout or "worker_class = sync" in " ".join(
        single.stdout.split())

    refused = run(API_WORKERS="0")
    assert refused.returncode != 0
    assert "API_WORKERS must be at least 1" in refused.stderr
