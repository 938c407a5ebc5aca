"""Alerts: every minute beat enqueues `alerts.evaluate` on the light queue. It reads the probes,
applies the rules (models/ops/alerts.py), stores firing and resolved alerts in PostgreSQL and sends
Telegram messages: once when an alert fires, again only after the cooldown while it still fires,
and once when it clears. Silenced rules are stored but not sent.

Only one evaluation at a time (a Redis lock with a TTL). "No worker alive" is asked of the workers
themselves (active_queues broadcast). The evaluation runs on a light worker, which proves by running
that the light queue has one, so only the other queue's workers are asked. Should every light worker
die, nothing would evaluate on the light queue; so beat also enqueues a fallback evaluation on the
heavy queue, which does the work only when the light one has not run for a while, and then asks
after the light workers. With both queues' workers down nothing can evaluate: readiness
(/api/health/ready) and Prometheus' queue-age metrics cover that case.
"""
from __future__ import annotations

import logging
import os
import random
import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert

from models.callbacks import rules as callback_rules
from models.core import probes
from models.core.db import Session, unit_of_work
from models.core.redis import SingleFlight, get_redis, key
from models.ops import alerts as alert_rules
from models.ops.alerts import QUEUES, RULES, Current, Finding
from models.ops.tables import Alert, AlertSilence
from models.recordings.mailbox import IMPORT_JOB_KIND
from settings import settings
from tasks.celery_app import celery_app

log = logging.getLogger(__name__)

LOCK_KEY = key("lock", "alerts-evaluate")
LOCK_SECONDS = 150  # longer than evaluate's hard time limit: two evaluations never overlap
LAST_EVALUATION_KEY = key("alerts", "last-evaluation")
FALLBACK_AFTER_SECONDS = 150  # the light queue's evaluation is this late: the heavy queue's one works
RESOLVE_RETRY_WINDOW = timedelta(hours=1)
MAX_RETRY_AFTER_SECONDS = 60.0
SEND_BUDGET_SECONDS = 40.0  # one message never holds the evaluation longer than this


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---- Telegram ---------------------------------------------------------------------------------------

class TelegramSender:
    """Bot API sendMessage with retries on network errors, 5xx and 429 (honouring retry_after).

    Once Telegram stayed unreachable through every retry, the rest of this evaluation sends nothing:
    the alerts keep their "not yet notified" state and go out at the next evaluation. The token is
    part of the URL; it is never logged or stored, and is cut out of any error text."""

    def __init__(self, s: Any):
        self.s = s
        self.unavailable = False

    @property
    def configured(self) -> bool:
        return bool(self.s.TELEGRAM_BOT_TOKEN and self.s.TELEGRAM_CHAT_ID)

    def _redact(self, message: str) -> str:
        return self.s.mask(message)  # the bot token is in the URL an error may quote

    def _backoff(self, attempt: int) -> float:
        base = self.s.TELEGRAM_BACKOFF_SECONDS * 2 ** (attempt - 1)
        return base + random.uniform(0, base)  # nosec B311 - jitter, not security

    def send(self, text_html: str) -> dict[str, Any]:
        if not self.configured:
            return {"ok": False, "error": "Telegram не настроен"}
        if self.unavailable:
            return {"ok": False, "error": "Telegram недоступен в этом цикле проверки"}
        url = f"{self.s.TELEGRAM_API_URL.rstrip('/')}/bot{self.s.TELEGRAM_BOT_TOKEN}/sendMessage"
        body = {"chat_id": self.s.TELEGRAM_CHAT_ID, "text": text_html, "parse_mode": "HTML",
                "disable_web_page_preview": True}
        started = time.monotonic()
        error = "нет ответа"
        attempts = max(1, self.s.TELEGRAM_MAX_ATTEMPTS)
        for attempt in range(1, attempts + 1):
            delay: float | None
            try:
                response = requests.post(url, json=body, timeout=self.s.TELEGRAM_TIMEOUT_SECONDS)
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {self._redact(str(exc))[:300]}"
                delay = self._backoff(attempt)
            else:
                try:
                    payload = response.json()
                except ValueError:
                    payload = {}
                if not isinstance(payload, dict):
                    payload = {}
                if response.status_code == 200 and payload.get("ok"):
                    result = payload.get("result") or {}
                    return {"ok": True, "attempts": attempt,
                            "message_id": result.get("message_id") if isinstance(result, dict) else None}
                description = self._redact(str(payload.get("description") or ""))[:300]
                error = f"HTTP {response.status_code}" + (f": {description}" if description else "")
                if response.status_code == 429:
                    retry_after = (payload.get("parameters") or {}).get("retry_after")
                    try:
                        delay = min(float(retry_after), MAX_RETRY_AFTER_SECONDS)
                    except (TypeError, ValueError):
                        delay = self._backoff(attempt)
                elif response.status_code >= 500:
                    delay = self._backoff(attempt)
                else:
                    delay = None  # 400/401/403: a wrong chat, token or text; retrying cannot help
            if delay is None or attempt == attempts or time.monotonic() - started + delay > SEND_BUDGET_SECONDS:
                break
            log.warning("telegram: attempt %d failed (%s), retrying in %.1f s", attempt, error, delay)
            time.sleep(delay)
        log.error("telegram: message not sent after %d attempt(s): %s", attempt, error)
        if delay is not None:  # Telegram unreachable or overloaded; a refused message affects only itself
            self.unavailable = True
        return {"ok": False, "attempts": attempt, "error": error}


# ---- readings ---------------------------------------------------------------------------------------

def _wanted(s: Any, prefix: str) -> bool:
    """Some enabled rule needs this reading (a disabled rule's probe is not paid for)."""
    return any(name.split(".")[0] == prefix and not alert_rules.is_disabled(name, s.ALERT_RULES_DISABLED)
               for name in RULES)


def consuming_workers(timeout: float) -> tuple[dict[str, list[str]], list[str]]:
    """Per queue, the workers that answer and consume it; and every answering worker with its queues."""
    replies = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    per_queue: dict[str, list[str]] = {q: [] for q in QUEUES}
    described = []
    for worker, queues in replies.items():
        names = [q.get("name") for q in queues or [] if isinstance(q, dict)]
        for name in names:
            if name in per_queue:
                per_queue[name].append(worker)
        described.append(f"{worker} ({', '.join(n for n in names if n) or '—'})")
    return per_queue, described


def imap_failures() -> tuple[int, str | None]:
    """Consecutive failed scheduled recording imports (newest first, until one succeeded) and the
    last error the importer recorded. Each run is a jobs row of kind recordings.import; manual runs
    are left out (one refused because an import was already running is no mailbox failure)."""
    with unit_of_work(read_only=True):
        rows = Session.execute(text(
            "SELECT status, error FROM jobs WHERE kind = :kind AND params->>'trigger' = 'beat' "
            "AND status IN ('succeeded', 'failed') ORDER BY coalesce(finished_at, created_at) DESC LIMIT 50"
        ), {"kind": IMPORT_JOB_KIND}).all()
        mailbox_error = Session.scalar(text(
            "SELECT last_error FROM mailbox_states WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1"
        ))
    failures = 0
    last_error = None
    for status, error in rows:
        if status != "failed":
            break
        failures += 1
        last_error = last_error or error
    return failures, (last_error or mailbox_error)


def _free_percent(path: str) -> tuple[float, str] | None:
    import psutil

    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    usage = psutil.disk_usage(existing)
    return (100.0 * usage.free / usage.total if usage.total else 100.0), path


def database_disk_path(s: Any) -> str | None:
    """The PostgreSQL data directory when it is on this host: the setting, or the server's own
    answer when the server is local and the directory is visible from here."""
    if s.ALERT_DB_DISK_PATH:
        return s.ALERT_DB_DISK_PATH
    from models.core.db import get_engine

    host = get_engine().url.host
    if host not in (None, "", "localhost", "127.0.0.1", "::1"):
        return None
    try:
        with get_engine().connect() as conn:
            path = conn.execute(text("SHOW data_directory")).scalar()
    except Exception:  # noqa: BLE001 - only superusers and pg_read_all_settings may ask
        return None
    return path if path and os.path.isdir(path) else None


def collect(s: Any, own_queue: str | None) -> dict[str, Any]:
    """Every reading the enabled rules need; a probe that fails leaves its reading out."""
    import psutil

    snapshot: dict[str, Any] = {"host": socket.gethostname()}

    def read(name: str, rule_prefix: str, probe) -> None:
        if not _wanted(s, rule_prefix):
            return
        try:
            with unit_of_work(read_only=True):
                snapshot[name] = probe()
        except SoftTimeLimitExceeded:
            raise  # out of time: stop, do not evaluate on half the readings
        except Exception as exc:  # noqa: BLE001 - a probe down is reported, the other rules go on
            log.warning("alerts: reading %s failed: %s", name, type(exc).__name__)

    read("http", "api_5xx_ratio", lambda: probes.http_error_ratio(300))
    read("queue_depths", "queue_backlog", probes.queue_depths)
    read("queue_ages", "queue_age", probes.oldest_queued_age_seconds)
    read("beat_age", "beat_silent", probes.beat_heartbeat_age)
    read("inbox_lag", "inbox_lag", probes.inbox_lag_seconds)
    read("imap", "imap_failures", imap_failures)
    read("callbacks_overdue", "callbacks_overdue", callback_rules.overdue_count)
    read("db_connections", "db_connections", probes.db_connections)
    read("redis_memory", "redis_memory", probes.redis_memory)
    read("host_cpu", "host_cpu", lambda: psutil.cpu_percent(interval=1.0))
    read("host_memory", "host_memory", lambda: psutil.virtual_memory().percent)

    disks: dict[str, Any] = {}
    if _wanted(s, "disk_media"):
        try:
            # With S3 the bucket is not this host's disk: its scratch folder (QUARANTINE_ROOT) is.
            disks["media"] = _free_percent(s.MEDIA_ROOT if s.STORAGE_BACKEND == "local" else s.QUARANTINE_ROOT)
        except OSError as exc:
            log.warning("alerts: disk reading failed: %s", type(exc).__name__)
    if _wanted(s, "disk_db"):
        path = database_disk_path(s)
        if path:
            try:
                disks["db"] = _free_percent(path)
            except OSError as exc:
                log.warning("alerts: disk reading failed: %s", type(exc).__name__)
    snapshot["disk"] = disks

    if _wanted(s, "workers_down"):
        if "queue_depths" not in snapshot:
            try:
                snapshot["queue_depths"] = probes.queue_depths()
            except Exception:  # noqa: BLE001
                pass
        try:
            per_queue, described = consuming_workers(s.ALERT_WORKER_PING_TIMEOUT)
            workers: dict[str, list[str] | None] = dict(per_queue)
            if own_queue in workers:
                workers[own_queue] = None  # this very worker consumes it
            snapshot["workers"] = workers
            snapshot["other_workers"] = described
        except Exception as exc:  # noqa: BLE001
            log.warning("alerts: asking the workers failed: %s", type(exc).__name__)
    return snapshot


# ---- evaluation -------------------------------------------------------------------------------------

def _note(kind: str, result: dict[str, Any], now: datetime, *, silenced: bool = False) -> dict[str, Any]:
    note = {"kind": kind, "at": now.isoformat(), "ok": bool(result.get("ok")), "silenced": silenced}
    for name in ("attempts", "error", "message_id"):
        if result.get(name) is not None:
            note[name] = result[name]
    return note


def _add_note(alert_id: int, note: dict[str, Any], *, notified_at: datetime | None = None) -> None:
    """In the caller's unit of work."""
    alert = Session.get(Alert, alert_id)
    notes = list(alert.notifications or [])
    if notes and notes[-1].get("pending") and notes[-1]["kind"] == note["kind"]:
        notes.pop()  # the placeholder written before sending: this note is what became of it
    alert.notifications = [*notes, note]
    if notified_at is not None:
        alert.last_notified_at = notified_at


def _append_note(alert_id: int, note: dict[str, Any], *, notified_at: datetime | None = None) -> None:
    with unit_of_work():
        _add_note(alert_id, note, notified_at=notified_at)


def run_evaluation(s: Any = None, own_queue: str | None = None) -> dict[str, Any]:
    """One evaluation of every enabled rule; returns what fired, what was sent, what resolved."""
    s = s or settings
    now = _now()
    snapshot = collect(s, own_queue)
    findings = alert_rules.evaluate(snapshot, s)
    by_rule: dict[str, Finding] = {f.rule: f for f in findings}
    with unit_of_work():
        silenced = set(Session.scalars(select(AlertSilence.rule).where(AlertSilence.until > now)).all())
        firing = {a.rule: a for a in Session.scalars(select(Alert).where(Alert.status == "firing")).all()}
    sender = TelegramSender(s)
    cooldown = timedelta(minutes=s.ALERT_COOLDOWN_MINUTES)
    summary: dict[str, list[str]] = {"firing": [], "opened": [], "sent": [], "resolved": [], "failed": []}

    # A rule switched off (or gone from the code) leaves no alert firing forever.
    for rule, alert in firing.items():
        if rule not in RULES or alert_rules.is_disabled(rule, s.ALERT_RULES_DISABLED):
            with unit_of_work():
                Session.execute(update(Alert).where(Alert.id == alert.id, Alert.status == "firing")
                                .values(status="resolved", resolved_at=now))

    for finding in findings:
        alert = firing.get(finding.rule)
        current = None if alert is None else Current(alert.fired_at, alert.last_notified_at,
                                                     alert.acknowledged_at is not None)
        decision = alert_rules.decide(finding.firing, current, now=now, cooldown=cooldown,
                                      silenced=finding.rule in silenced)
        if decision.open:
            with unit_of_work():
                alert_id = Session.scalar(
                    insert(Alert)
                    .values(rule=finding.rule, severity=RULES[finding.rule].severity, status="firing",
                            message=finding.text, value=finding.value, notifications=[], fired_at=now)
                    .on_conflict_do_nothing(index_elements=["rule"], index_where=text("status = 'firing'"))
                    .returning(Alert.id)
                )
                alert = Session.get(Alert, alert_id) if alert_id is not None else None
            if alert is None:
                continue  # stored meanwhile by another evaluation
            summary["opened"].append(finding.rule)
            if decision.send is None:  # silenced: stored, and the record says why nothing was sent
                _append_note(alert.id, _note("fire", {"ok": False}, now, silenced=True))
        elif alert is not None and finding.firing:
            with unit_of_work():
                Session.execute(update(Alert).where(Alert.id == alert.id)
                                .values(message=finding.text, value=finding.value))
        if decision.close:
            with unit_of_work():
                Session.execute(update(Alert).where(Alert.id == alert.id, Alert.status == "firing")
                                .values(status="resolved", resolved_at=now))
                if decision.send == "resolve":
                    # Committed with the resolution: if the worker dies before the message goes out,
                    # this unsent note is what _retry_resolve_messages picks up.
                    _add_note(alert.id, {**_note("resolve", {"ok": False}, now), "pending": True})
            summary["resolved"].append(finding.rule)
        if finding.firing:
            summary["firing"].append(finding.rule)
        if decision.send and alert is not None:
            message = alert_rules.format_message(decision.send, finding.rule, finding.text,
                                                 instance=s.ALERT_INSTANCE_NAME, fired_at=alert.fired_at, now=now)
            result = sender.send(message)
            ok = bool(result.get("ok"))
            _append_note(alert.id, _note(decision.send, result, now),
                         notified_at=now if ok and decision.send != "resolve" else None)
            summary["sent" if ok else "failed"].append(f"{decision.send}:{finding.rule}")

    _retry_resolve_messages(s, sender, now, summary, by_rule)
    return summary


def _retry_resolve_messages(s: Any, sender: TelegramSender, now: datetime, summary: dict, by_rule: dict) -> None:
    """A resolve message that could not be sent is tried again for a while."""
    with unit_of_work():
        recent = Session.scalars(select(Alert).where(Alert.status == "resolved",
                                                     Alert.resolved_at > now - RESOLVE_RETRY_WINDOW,
                                                     Alert.resolved_at < now)).all()
    for alert in recent:
        notes = alert.notifications or []
        if not notes or notes[-1].get("kind") != "resolve" or notes[-1].get("ok"):
            continue
        finding = by_rule.get(alert.rule)
        message = alert_rules.format_message(
            "resolve", alert.rule, finding.text if finding else alert.message, instance=s.ALERT_INSTANCE_NAME,
            fired_at=alert.fired_at, now=alert.resolved_at)
        result = sender.send(message)
        _append_note(alert.id, _note("resolve", result, now))
        summary["sent" if result.get("ok") else "failed"].append(f"resolve:{alert.rule}")


@celery_app.task(name="alerts.evaluate", bind=True, soft_time_limit=110, time_limit=130)
def evaluate(self, fallback: bool = False) -> dict[str, Any]:
    """Evaluate the rules once. `fallback`: enqueued on the heavy queue, works only when the light
    queue's evaluation is late (its workers are gone)."""
    redis = get_redis()
    if fallback:
        last = redis.get(LAST_EVALUATION_KEY)
        if last is not None and time.time() - float(last) < FALLBACK_AFTER_SECONDS:
            return {"skipped": "the light queue evaluates"}
    lock = SingleFlight(LOCK_KEY, LOCK_SECONDS)
    if not lock.acquire():
        log.info("alerts.evaluate: another evaluation is running, skipped")
        return {"skipped": "another evaluation is running"}
    try:
        delivery = getattr(self.request, "delivery_info", None) or {}
        own_queue = delivery.get("routing_key") if delivery.get("routing_key") in QUEUES else None
        summary = run_evaluation(settings, own_queue)
        if not fallback:  # only the light queue's evaluations hold the fallback back
            redis.set(LAST_EVALUATION_KEY, f"{time.time():.3f}", ex=24 * 3600)
        if summary["opened"] or summary["resolved"] or summary["failed"]:
            log.warning("alerts.evaluate: opened %s, resolved %s, not sent %s",
                        summary["opened"], summary["resolved"], summary["failed"])
        return summary
    finally:
        lock.release()
