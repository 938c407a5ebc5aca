"""Every setting of leadline, read from the environment once, typed.

API, workers, beat and the CLI import this module and read `settings.<name>`. Canonical names are
the ones the README, tests and deploy files use; the names the old backend used are accepted as
aliases. Development and test get safe defaults; production refuses to start without its secrets.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import quote, unquote, urlsplit

from embedded import BASE_DIR, VAR_DIR  # noqa: F401 - the project folders, defined once there

ENVIRONMENTS = ("development", "test", "production")
SECRETS_REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "FLOWER_PASSWORD",
)
WEAK_SECRET_KEYS = {"", "change-me", "your-secret-key-here", "your-very-secure-secret-key-here-min-32-chars"}
SECRET_KEY_MIN_LENGTH = 32
SECRET_KEY_MIN_DISTINCT = 12  # refuses one character repeated, "abab...", a word typed over and over
# The brokers leadline runs on (models/core/broker.py): Redis, or RabbitMQ through py-amqp.
REDIS_BROKER_SCHEMES = ("redis", "rediss", "redis+socket")
AMQP_BROKER_SCHEMES = ("amqp", "amqps", "pyamqp")


def broker_kind(url: str) -> str:
    """`redis` or `amqp` (RabbitMQ) for a broker URL; ValueError for a broker leadline does not support."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in REDIS_BROKER_SCHEMES:
        return "redis"
    if scheme in AMQP_BROKER_SCHEMES:
        return "amqp"
    raise ValueError(f"unsupported broker scheme {scheme!r}: use redis://, rediss:// or amqp://, amqps://")


# Passwords an operator sets for production, held to the password policy (password_policy.py).
OPERATOR_PASSWORDS = ("FLOWER_PASSWORD", "ADMIN_PASSWORD")


MASK = "***"
# The password of a URL (after the user and a colon, before "@" and the host). It runs to the last
# "@", so a password pasted with an unencoded "@", "/" or "#" is masked whole; user and host stay.
URL_PASSWORD_RE = re.compile(
    r"(?i)(\b[a-z][a-z0-9+.\-]*://[^\s:/?#@'\"]*:)([^\s'\"]+)(@[^\s/?#@'\"]*(?=[\s/?#'\"]|$))"
)
# A configured secret is masked wherever it shows, and so is each piece of a URL's password that a
# parser may have quoted after splitting it at a URL delimiter; shorter pieces would mask ordinary words.
MIN_MASKED_SECRET = 8


def mask_url(text: str) -> str:
    """`text` with the password of every URL in it masked: `redis://:***@host:6379/0`."""
    return URL_PASSWORD_RE.sub(lambda m: m.group(1) + MASK + m.group(3), text)


def _url_secrets(url: str) -> set[str]:
    """A URL's password, decoded and as written, and the pieces a parser may quote of it."""
    found = set()
    for match in URL_PASSWORD_RE.finditer(url):
        password = match.group(2)
        for candidate in (password, unquote(password)):
            found.add(candidate)
            found.update(re.split(r"[@/?#:]", candidate))
    return found


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the process must not start."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _parse_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _parse_decimal(raw: str) -> Decimal:
    try:
        return Decimal(raw.strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {raw!r}") from exc


# Keyed by the annotation text (annotations are strings under `from __future__ import annotations`).
PARSERS: dict[str, Callable[[str], Any]] = {
    "str": lambda raw: raw,
    "int": lambda raw: int(raw.strip()),
    "float": lambda raw: float(raw.strip()),
    "bool": _parse_bool,
    "list": _parse_list,
    "Decimal": _parse_decimal,
}


def default_api_workers() -> int:
    """gunicorn's default worker count: one process per core this process may run on.

    Each worker serves API_THREADS requests at once (gthread), which keeps the cores busy through the
    API's short waits (PostgreSQL and Redis round trips) as the old extra (cores + 1) sync worker did,
    without its ~110 MB; more processes only add context switches and memory (measured in
    bench/README.md, "The production set-up")."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def setting(default: Any = None, *, group: str, aliases: tuple[str, ...] = (), secret: bool = False, doc: str = "",
            shown_default: str | None = None) -> Any:
    """Declare one setting: its default, the group it is listed under, the old names it may come under,
    whether it is a secret, and what it is for.

    `group`, `doc` and `shown_default` (the default as documented, where the value depends on the
    machine) only document it: the README's settings table is generated from them
    (`flask --app api settings-table`)."""
    return field(default=default, metadata={"group": group, "aliases": aliases, "secret": secret, "doc": doc,
                                            "shown_default": shown_default})


@dataclass(frozen=True)
class Settings:
    # core
    APP_ENV: str = setting("development", group="core", aliases=("ENVIRONMENT",), doc="development / test / production")
    SECRET_KEY: str = setting(None, group="core", aliases=("JWT_SECRET_KEY",), secret=True, doc="signs sessions")
    DATABASE_URL: str = setting(None, group="core", secret=True, doc="PostgreSQL; unset outside production = embedded")
    REDIS_URL: str = setting(None, group="core", secret=True, doc="Redis; unset outside production = embedded")
    CELERY_BROKER_URL: str = setting(
        None, group="core", secret=True,
        doc="Celery broker: redis://… or RabbitMQ's amqp://… (defaults to REDIS_URL; Redis is needed either way)",
    )
    BUSINESS_TZ: str = setting("Europe/Moscow", group="core", doc="time zone for local times (file names, report days)")
    LOG_LEVEL: str = setting("INFO", group="core")
    LOG_JSON: bool = setting(None, group="core", doc="JSON logs (default: on in production)")
    METRICS_TOKEN: str = setting(
        None, group="core", secret=True, doc="when set, /metrics needs 'Authorization: Bearer <token>'"
    )
    METRICS_ALLOWED_NETWORKS: list = setting(
        None, group="core",
        doc="without METRICS_TOKEN: direct clients allowed to read /metrics (default loopback + private)",
    )

    # processes
    API_HOST: str = setting("127.0.0.1", group="processes")
    API_PORT: int = setting(8000, group="processes")
    API_WORKERS: int = setting(
        default_api_workers(), group="processes", aliases=("WORKERS",), shown_default="cores",
        doc="gunicorn worker processes",
    )
    API_THREADS: int = setting(
        2, group="processes",
        doc="requests one gunicorn worker serves at once (threads; 1: a sync worker, one at a time)",
    )
    FLOWER_PORT: int = setting(5555, group="processes")
    FLOWER_USER: str = setting("admin", group="processes")
    FLOWER_PASSWORD: str = setting(None, group="processes", secret=True)
    FLOWER_URL_PREFIX: str = setting(
        "flower", group="processes", doc="Flower is served under /<prefix>/ (behind nginx too)"
    )
    ADMIN_LOGIN: str = setting("admin", group="processes", doc="the administrator `make run` creates")
    ADMIN_PASSWORD: str = setting(None, group="processes", secret=True)

    # web
    CORS_ORIGINS: list = setting(
        None, group="web", aliases=("ALLOWED_ORIGINS",), doc="comma list of SPA origins allowed with credentials"
    )
    COOKIE_SECURE: bool = setting(
        None, group="web", doc="Secure flag on the session cookie (default: on in production)"
    )
    COOKIE_DOMAIN: str = setting(None, group="web", doc="parent domain so the SPA's /api proxy carries the cookie")
    COOKIE_SAMESITE: str = setting("Lax", group="web")
    TRUSTED_PROXIES: int = setting(0, group="web", doc="number of reverse-proxy hops in front of the API")
    SESSION_IDLE_MINUTES: int = setting(60, group="web", doc="a session unused this long expires")
    SESSION_MAX_HOURS: int = setting(16, group="web", doc="a session ends this long after login, used or not")
    LOGIN_MAX_FAILURES: int = setting(5, group="web")
    LOGIN_FAILURE_WINDOW_MINUTES: int = setting(60, group="web")
    LOGIN_LOCKOUT_MINUTES: int = setting(30, group="web")
    RATE_LIMIT_PER_CLIENT: str = setting("1200 per minute", group="web", doc="API calls per client IP")
    RATE_LIMIT_PER_USER: str = setting("600 per minute", group="web", doc="API calls per signed-in user")
    RATE_LIMIT_LOGIN: str = setting("30 per minute", group="web", doc="login attempts per client IP")
    MAX_REQUEST_MB: int = setting(60, group="web", doc="largest request body the API reads")
    MAX_JSON_MB: int = setting(1, group="web", doc="largest JSON body the API parses (uploads: MAX_UPLOAD_MB)")
    API_DOCS_ENABLED: bool = setting(
        None, group="web", doc="Swagger UI at /api/docs, the document at /api/openapi.json (default: off in production)"
    )

    # money
    MASTER_SHARE: Decimal = setting(Decimal("0.5"), group="money")
    MAX_REQUEST_AMOUNT: Decimal = setting(Decimal("10000000"), group="money",
                                          doc="largest result, expenses or handover of one request, in roubles")

    # files
    MEDIA_ROOT: str = setting(str(VAR_DIR / "media"), group="files")
    QUARANTINE_ROOT: str = setting(str(VAR_DIR / "quarantine"), group="files")
    MAX_UPLOAD_MB: int = setting(10, group="files")
    MAX_RECORDING_UPLOAD_MB: int = setting(50, group="files")
    FILES_RETENTION_DAYS: int = setting(30, group="files")
    X_ACCEL_REDIRECT_PREFIX: str = setting(None, group="files", doc="serve files through nginx X-Accel-Redirect")
    FILES_QUARANTINE_MAX_HOURS: int = setting(24, group="files", doc="uploads not validated within this are dropped")
    STORAGE_BACKEND: str = setting(
        "local", group="files", doc="where the bytes live: local (MEDIA_ROOT, QUARANTINE_ROOT) or s3 (one bucket)"
    )
    S3_ENDPOINT_URL: str = setting(None, group="files", doc="S3-compatible server (MinIO...); unset = AWS")
    S3_BUCKET: str = setting(None, group="files", doc="bucket of media/ and quarantine/ (STORAGE_BACKEND=s3)")
    S3_REGION: str = setting("us-east-1", group="files")
    S3_ACCESS_KEY_ID: str = setting(None, group="files", secret=True)
    S3_SECRET_ACCESS_KEY: str = setting(None, group="files", secret=True)
    S3_PRESIGN_SECONDS: int = setting(
        0, group="files",
        doc="S3: 0 streams files through the API; above 0 answers a redirect to a presigned URL valid this long",
    )

    # Mango Office
    MANGO_ENABLED: bool = setting(
        True, group="Mango Office",
        doc="receive Mango webhooks (false: their addresses answer 404); on in production needs the key and salt",
    )
    MANGO_API_KEY: str = setting(None, group="Mango Office", secret=True)
    MANGO_API_SALT: str = setting(None, group="Mango Office", aliases=("MANGO_WEBHOOK_SECRET",), secret=True)
    MANGO_ALLOWED_IPS: list = setting(None, group="Mango Office", doc="comma list of addresses or networks")
    MANGO_API_URL: str = setting("https://app.mango-office.ru/vpbx/", group="Mango Office")
    MANGO_REPEAT_WINDOW_MIN: int = setting(30, group="Mango Office")
    MANGO_MISSED_CREATES_REQUEST: bool = setting(True, group="Mango Office")
    MANGO_MAX_BODY_KB: int = setting(256, group="Mango Office")
    MANGO_SWEEP_AFTER_SECONDS: int = setting(60, group="Mango Office")
    MANGO_CLOSE_WITHOUT_SUMMARY_MIN: int = setting(
        10, group="Mango Office", doc="close a call whose summary never came after this"
    )
    CALLBACK_SLA_MIN: int = setting(15, group="Mango Office", doc="a missed caller is due a callback within this")
    CALLBACK_CLAIM_MIN: int = setting(
        30, group="Mango Office", doc="an operator's claim on a callback lapses after this unless it is closed"
    )
    CALLBACK_EXPIRE_HOURS: int = setting(
        72, group="Mango Office", doc="an open callback whose last missed call is older than this expires"
    )
    MANGO_FOLD_BATCH: int = setting(
        50, group="Mango Office",
        doc="inbox rows the inbox worker claims and folds in one transaction, with the rest of their calls "
            "(1: one row a transaction)",
    )

    # IMAP
    IMAP_HOST: str = setting(None, group="IMAP", aliases=("RAMBLER_IMAP_HOST",))
    IMAP_PORT: int = setting(993, group="IMAP", aliases=("RAMBLER_IMAP_PORT",))
    IMAP_USER: str = setting(None, group="IMAP", aliases=("RAMBLER_IMAP_USERNAME",))
    IMAP_PASSWORD: str = setting(None, group="IMAP", aliases=("RAMBLER_IMAP_PASSWORD",), secret=True)
    IMAP_SECURITY: str = setting("ssl", group="IMAP", doc="ssl / starttls / plain")
    IMAP_FOLDER: str = setting("INBOX", group="IMAP")
    IMAP_PROCESSED_FOLDER: str = setting(None, group="IMAP", doc="move imported messages here")
    IMAP_MARK_SEEN: bool = setting(False, group="IMAP")
    IMAP_TIMEOUT_SECONDS: int = setting(30, group="IMAP")
    RECORDINGS_CHECK_INTERVAL: int = setting(300, group="IMAP")
    RECORDING_MATCH_WINDOW_MIN: int = setting(30, group="IMAP")

    # alerts
    TELEGRAM_BOT_TOKEN: str = setting(None, group="alerts", secret=True)
    TELEGRAM_CHAT_ID: str = setting(None, group="alerts")
    TELEGRAM_API_URL: str = setting("https://api.telegram.org", group="alerts")
    ALERT_COOLDOWN_MINUTES: int = setting(30, group="alerts")
    ALERT_API_5XX_RATIO: float = setting(0.05, group="alerts")
    ALERT_QUEUE_BACKLOG: int = setting(500, group="alerts")
    ALERT_QUEUE_AGE_SECONDS: int = setting(300, group="alerts")
    ALERT_BEAT_SILENT_SECONDS: int = setting(180, group="alerts")
    ALERT_INBOX_LAG_SECONDS: int = setting(120, group="alerts")
    ALERT_CALLBACKS_OVERDUE: int = setting(
        5, group="alerts", doc="open callbacks past their due time above this fire an alert"
    )
    ALERT_DISK_FREE_PERCENT: float = setting(10.0, group="alerts")
    ALERT_DB_CONNECTIONS_PERCENT: float = setting(80.0, group="alerts")
    ALERT_INSTANCE_NAME: str = setting("leadline", group="alerts", doc="names this installation in every alert message")
    ALERT_RULES_DISABLED: list = setting(
        None, group="alerts", doc="comma list of rules (or rule prefixes) never evaluated"
    )
    ALERT_API_MIN_REQUESTS: int = setting(
        20, group="alerts", doc="the 5xx ratio is judged only over at least this many calls"
    )
    ALERT_WORKER_PING_TIMEOUT: float = setting(2.0, group="alerts", doc="seconds to wait for workers to answer")
    ALERT_IMAP_FAILURES: int = setting(3, group="alerts", doc="consecutive failed recording imports that fire an alert")
    ALERT_REDIS_MEMORY_PERCENT: float = setting(85.0, group="alerts", doc="of Redis maxmemory (no limit: not checked)")
    ALERT_HOST_CPU_PERCENT: float = setting(90.0, group="alerts", doc="CPU busy on the evaluating worker's host")
    ALERT_HOST_MEMORY_PERCENT: float = setting(90.0, group="alerts", doc="memory used on the evaluating worker's host")
    ALERT_DB_DISK_PATH: str = setting(
        None, group="alerts", doc="PostgreSQL data directory when on this host (disk check)"
    )
    TELEGRAM_MAX_ATTEMPTS: int = setting(4, group="alerts", doc="tries per message on network errors, 5xx and 429")
    TELEGRAM_BACKOFF_SECONDS: float = setting(
        1.0, group="alerts", doc="first retry delay, doubled each time, with jitter"
    )
    TELEGRAM_TIMEOUT_SECONDS: float = setting(10.0, group="alerts")

    # Telegram for masters and the daily digest (the same bot as the alerts: TELEGRAM_BOT_TOKEN)
    TELEGRAM_BOT_USERNAME: str = setting(
        None, group="telegram", doc="the bot's @name without @, for the link a master opens (t.me/<name>?start=<code>)"
    )
    TELEGRAM_POLL_SECONDS: int = setting(10, group="telegram", doc="how often the bot's updates are read (getUpdates)")
    TELEGRAM_MAX_PER_SECOND: int = setting(25, group="telegram", doc="messages per second the bot sends, at most")
    DIGEST_CHAT_ID: str = setting(None, group="telegram", doc="chat of the daily digest (default: TELEGRAM_CHAT_ID)")
    DIGEST_HOUR: int = setting(9, group="telegram", doc="business-local hour the digest of the day before is sent")
    DIGEST_CHECK_SECONDS: int = setting(300, group="telegram", doc="how often beat asks whether the digest is due")

    # database maintenance
    MAINTENANCE_HOUR_UTC: int = setting(0, group="maintenance", doc="hour (UTC) the nightly maintenance starts")
    RETENTION_INBOX_DAYS: int = setting(30, group="maintenance", doc="processed Mango deliveries kept this long")
    RETENTION_JOBS_DAYS: int = setting(30, group="maintenance", doc="finished job rows kept this long")
    RETENTION_ALERTS_DAYS: int = setting(90, group="maintenance", doc="resolved alerts kept this long")
    RETENTION_TELEGRAM_DAYS: int = setting(
        30, group="maintenance", doc="Telegram messages sent (or given up) kept this long"
    )
    MAINTENANCE_BATCH_SIZE: int = setting(5000, group="maintenance", doc="rows deleted per transaction by the purges")

    # moving in from the old backend
    LEGACY_DATABASE_URL: str = setting(
        None, group="legacy import", secret=True,
        doc="the old backend's PostgreSQL, read only: the one source POST /api/admin/import-legacy imports from",
    )
    LEGACY_MEDIA_DIR: str = setting(
        None, group="legacy import",
        doc="the old media folder (holding zayvka/, gorod/) for that import; unset: MEDIA_ROOT",
    )
    LEGACY_IMPORT_TIME_LIMIT: int = setting(
        3000, group="legacy import",
        doc="hard limit of one import run as a job, seconds (below BROKER_VISIBILITY_TIMEOUT)",
    )

    # workers
    TASK_SOFT_TIME_LIMIT: int = setting(300, group="workers")
    TASK_TIME_LIMIT: int = setting(360, group="workers")
    BROKER_VISIBILITY_TIMEOUT: int = setting(
        3600, group="workers", doc="Redis broker: a message no worker acknowledged comes back after this long"
    )
    BEAT_HEARTBEAT_SECONDS: int = setting(30, group="workers")
    BEAT_HEARTBEAT_MAX_AGE: int = setting(120, group="workers", doc="readiness fails when beat is silent this long")

    # ---- derived ------------------------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    @property
    def broker_url(self) -> str | None:
        return self.CELERY_BROKER_URL or self.REDIS_URL

    @property
    def digest_chat_id(self) -> str | None:
        return self.DIGEST_CHAT_ID or self.TELEGRAM_CHAT_ID

    @property
    def cookie_secure(self) -> bool:
        return self.is_production if self.COOKIE_SECURE is None else self.COOKIE_SECURE

    @property
    def api_docs_enabled(self) -> bool:
        return not self.is_production if self.API_DOCS_ENABLED is None else self.API_DOCS_ENABLED

    @property
    def metrics_allowed_networks(self) -> list[str]:
        if self.METRICS_ALLOWED_NETWORKS is not None:
            return self.METRICS_ALLOWED_NETWORKS
        return ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]

    @property
    def log_json(self) -> bool:
        return self.is_production if self.LOG_JSON is None else self.LOG_JSON

    @property
    def cors_origins(self) -> list[str]:
        if self.CORS_ORIGINS is not None:
            return self.CORS_ORIGINS
        if self.is_production:
            return []
        return ["http://localhost:3000", "http://127.0.0.1:3000"]

    def public(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked, for diagnostics: a URL shows with its password masked."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value:
                value = mask_url(value) if "://" in str(value) else MASK
            out[f.name] = value
        return out

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret and URL password (longest first), as `mask()` hides them."""
        return _secret_values(tuple(getattr(self, name) for name in SECRET_FIELDS))

    def mask(self, text: str) -> str:
        """`text` (a log line, an error from a driver, a Celery setting) with every URL's password and
        every configured secret masked. The one masking of secrets: logs, health answers, API errors,
        job errors, `check-db` and the configuration workers report to Flower all go through it."""
        text = mask_url(text)
        for secret in self.secret_values():
            if secret in text:
                text = text.replace(secret, MASK)
        return text


SECRET_FIELDS = tuple(f.name for f in fields(Settings) if f.metadata["secret"])


@lru_cache(maxsize=8)
def _secret_values(values: tuple[Any, ...]) -> tuple[str, ...]:
    found: set[str] = set()
    for value in values:
        if isinstance(value, str) and value:
            found.update(_url_secrets(value) if "://" in value else {value})
    return tuple(sorted((v for v in found if len(v) >= MIN_MASKED_SECRET), key=len, reverse=True))


def _legacy_database_url(env: dict[str, str]) -> str | None:
    host = env.get("POSTGRESQL_HOST")
    if not host:
        return None
    user = quote(env.get("POSTGRESQL_USER", "postgres"))
    password = env.get("POSTGRESQL_PASSWORD")
    auth = f"{user}:{quote(password)}" if password else user
    port = env.get("POSTGRESQL_PORT", "5432")
    name = env.get("POSTGRESQL_DBNAME", "leadline")
    return f"postgresql://{auth}@{host}:{port}/{name}"


def _legacy_redis_url(env: dict[str, str]) -> str | None:
    host = env.get("REDIS_HOST")
    if not host:
        return None
    password = env.get("REDIS_PASSWORD")
    auth = f":{quote(password)}@" if password else ""
    return f"redis://{auth}{host}:{env.get('REDIS_PORT', '6379')}/{env.get('REDIS_DB', '0')}"


# The rate-limit notation of the `limits` package ("10/minute", "100 per 2 hours"; several joined by
# , ; or |), checked here without importing it: `limits` brings asyncio and its storage back-ends
# into every worker, beat and Flower, which never rate-limit. tests/test_settings.py holds the two
# in agreement.
_RATE_LIMIT_PART = re.compile(r"\s*[0-9]+\s*(/|\s*per\s*)\s*([0-9]+)?\s*(second|minute|hour|day|month|year)s?\s*",
                              re.IGNORECASE)


def _is_rate_limit(text: str) -> bool:
    parts = re.split(r"[,;|]", text)
    return all(_RATE_LIMIT_PART.fullmatch(part) for part in parts)


def _weak_production_secrets(built: Settings) -> list[str]:
    """What production refuses beyond a missing secret: a guessable SECRET_KEY, a weak operator
    password, and a Mango webhook that would take unsigned deliveries."""
    from password_policy import MIN_OPERATOR_LENGTH, common_passwords, password_problem

    problems = []
    key = built.SECRET_KEY
    if key and (key in WEAK_SECRET_KEYS or len(key) < SECRET_KEY_MIN_LENGTH
                or len(set(key)) < SECRET_KEY_MIN_DISTINCT):
        problems.append(f"SECRET_KEY must be at least {SECRET_KEY_MIN_LENGTH} random characters with at least "
                        f"{SECRET_KEY_MIN_DISTINCT} different ones, not a placeholder or a repetition")
    # The common-password list is loaded for this check only: most processes never set a password.
    list_was_loaded = common_passwords.cache_info().currsize > 0
    for name in OPERATOR_PASSWORDS:
        value = getattr(built, name)
        problem = value and password_problem(value, min_length=MIN_OPERATOR_LENGTH)
        if problem:
            problems.append(f"{name} is too weak for production ({problem})")
    if not list_was_loaded:
        common_passwords.cache_clear()
    if built.MANGO_ENABLED and not (built.MANGO_API_KEY and built.MANGO_API_SALT):
        problems.append("the Mango webhook would accept unsigned deliveries: production needs MANGO_API_KEY and "
                        "MANGO_API_SALT, or MANGO_ENABLED=false to switch the webhook off")
    return problems


def load(env: dict[str, str] | None = None) -> Settings:
    """Build Settings from an environment mapping; raise SettingsError on anything wrong."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in fields(Settings):
        for name in (f.name, *f.metadata["aliases"]):
            raw = env.get(name)
            if raw is not None and raw != "":
                break
        else:
            continue
        try:
            values[f.name] = PARSERS[f.type](raw)
        except (ValueError, KeyError) as exc:
            problems.append(f"{name}: {exc}")

    values.setdefault("DATABASE_URL", _legacy_database_url(env))
    values.setdefault("REDIS_URL", _legacy_redis_url(env))
    if values["DATABASE_URL"] is None:
        del values["DATABASE_URL"]
    if values["REDIS_URL"] is None:
        del values["REDIS_URL"]

    built = Settings(**values)
    if built.APP_ENV not in ENVIRONMENTS:
        problems.append(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}")
    if built.IMAP_SECURITY not in ("ssl", "starttls", "plain"):
        problems.append("IMAP_SECURITY must be ssl, starttls or plain")
    try:
        built.CELERY_BROKER_URL and broker_kind(built.CELERY_BROKER_URL)
    except ValueError:
        problems.append("CELERY_BROKER_URL must be a Redis (redis://, rediss://) or RabbitMQ (amqp://, amqps://) URL")
    if built.API_WORKERS < 1:
        problems.append("API_WORKERS must be at least 1")
    if not 1 <= built.API_THREADS <= 32:
        problems.append("API_THREADS must be between 1 and 32")
    if built.STORAGE_BACKEND not in ("local", "s3"):
        problems.append("STORAGE_BACKEND must be local or s3")
    elif built.STORAGE_BACKEND == "s3" and not built.S3_BUCKET:
        problems.append("STORAGE_BACKEND=s3 needs S3_BUCKET")
    if not 0 <= built.S3_PRESIGN_SECONDS <= 7 * 24 * 3600:
        problems.append("S3_PRESIGN_SECONDS must be between 0 and 604800 (7 days)")
    if not 1 <= built.MANGO_FOLD_BATCH <= 1000:
        problems.append("MANGO_FOLD_BATCH must be between 1 and 1000")
    if not 0 <= built.MAINTENANCE_HOUR_UTC <= 23:
        problems.append("MAINTENANCE_HOUR_UTC must be between 0 and 23")
    if not 0 <= built.DIGEST_HOUR <= 23:
        problems.append("DIGEST_HOUR must be between 0 and 23")
    if not 1 <= built.TELEGRAM_MAX_PER_SECOND <= 30:
        problems.append("TELEGRAM_MAX_PER_SECOND must be between 1 and 30 (Telegram's own limit)")
    if not Decimal("0") <= built.MASTER_SHARE <= Decimal("1"):
        problems.append("MASTER_SHARE must be between 0 and 1")
    # Request money is NUMERIC(12,2): a larger bound could not be stored.
    if not Decimal("0") < built.MAX_REQUEST_AMOUNT <= Decimal("9999999999.99"):
        problems.append("MAX_REQUEST_AMOUNT must be above 0 and at most 9999999999.99")
    for name in ("RATE_LIMIT_PER_CLIENT", "RATE_LIMIT_PER_USER", "RATE_LIMIT_LOGIN"):
        if not _is_rate_limit(getattr(built, name)):
            problems.append(f"{name} must read like '600 per minute' or '10/second'")
    if built.is_production:
        missing = [name for name in SECRETS_REQUIRED_IN_PRODUCTION if not getattr(built, name)]
        if missing:
            problems.append("production needs " + ", ".join(missing))
        problems += _weak_production_secrets(built)
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return built


settings = load()
