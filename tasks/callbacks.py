"""Click-to-call and the callback queue's upkeep.

`callbacks.place_call(job_id)` (queue light) sends the job's `commands/callback` to Mango
(models/callbacks/commands.py): form fields `vpbx_api_key`, `sign` = sha256(key + json + salt) and
`json`. Mango answers at once ({"result": 1000}: accepted); the outcome arrives later as the
`result/callback` webhook, which completes the job. Network errors, 429, 401 (Mango locks a key for
two minutes after bad requests) and 5xx are retried with backoff; any other refusal fails the job with
its reason.

The command must not be sent twice (the client's phone would ring twice): the job is marked
`sending` in a committed transaction before the request goes out and the mark is cleared only when
the failure is known to be transient. A message delivered again after its worker died mid-request
finds the mark and fails the job instead of calling a second time ("may have been placed").

`callbacks.expire` (beat) marks items still open CALLBACK_EXPIRE_HOURS after their last missed call
as expired, and fails the jobs of commands whose result/callback has not come within 10 minutes.
"""
from __future__ import annotations

import logging
import uuid
from urllib.parse import urljoin

import requests
from sqlalchemy import func, update

from models.callbacks import commands
from models.callbacks import rules as callback_rules
from models.core.db import Session, get_engine, unit_of_work
from models.ops import jobs
from models.ops.tables import Job
from settings import settings
from tasks.celery_app import celery_app
from tasks.retry import TransientFailure, backoff, describe, is_transient

log = logging.getLogger(__name__)

PLACE_MAX_RETRIES = 5
UNSURE = ("Команда могла быть отправлена, но ответ Mango не получен: проверьте, был ли звонок, "
          "и повторите при необходимости")


class CommandRefused(Exception):
    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry


def own_session() -> None:
    """The task's session on the engine itself (a test may hold the factory bound to its own connection)."""
    Session.remove()
    Session(bind=get_engine())


def send_command(params: dict) -> int:
    """POST commands/callback; Mango's immediate result code (1000: accepted) or CommandRefused."""
    body = commands.command_json(params)
    url = urljoin(settings.MANGO_API_URL.rstrip("/") + "/", "commands/callback")
    form = {"vpbx_api_key": settings.MANGO_API_KEY,
            "sign": commands.sign(settings.MANGO_API_KEY, body, settings.MANGO_API_SALT), "json": body}
    try:
        answer = requests.post(url, data=form, timeout=(5, 20), allow_redirects=False)
    except requests.RequestException as exc:
        raise CommandRefused(f"Mango API недоступен: {type(exc).__name__}", retry=True) from None
    status = answer.status_code
    try:
        payload = answer.json()
    except ValueError:
        payload = None
    code = payload.get("result") if isinstance(payload, dict) else None
    code = int(code) if isinstance(code, (int, str)) and str(code).strip().isdigit() else None
    if status == 200 and code in (None, commands.SUCCESS):
        return commands.SUCCESS
    if status in (401, 408, 429) or status >= 500 or (code is not None and code >= 5000):
        raise CommandRefused(f"Mango API: HTTP {status}" + (f", код {code}" if code else ""), retry=True)
    if code is not None:
        raise CommandRefused(commands.result_reason(code), retry=False)
    raise CommandRefused(f"Mango API отказал: HTTP {status}", retry=False)


def _key(job_id: str):
    try:
        return uuid.UUID(str(job_id))
    except ValueError:
        return None


def _set_sending(job_id, value: bool) -> None:
    with unit_of_work():
        Session.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
            params=Job.params.op("||")(func.jsonb_build_object("sending", value))))


@celery_app.task(name="callbacks.place_call", bind=True, max_retries=PLACE_MAX_RETRIES,
                 soft_time_limit=60, time_limit=90)
def place_call(self, job_id: str) -> str:
    own_session()
    key = _key(job_id)
    if key is None:
        return "no such job"
    with unit_of_work():
        job = Session.get(Job, key)
        if job is None or job.kind != commands.JOB_KIND:
            return "no such job"
        if job.status not in jobs.UNFINISHED or (job.params or {}).get("sent"):
            return "already done"
        if (job.params or {}).get("sending"):
            sending_before = True
        else:
            sending_before = False
            jobs.mark_running(key)
        params = dict(job.params or {})
    if sending_before:
        jobs.fail(key, UNSURE)
        return "failed"
    if not callback_rules.mango_commands_configured():
        jobs.fail(key, "Звонки через Mango Office не настроены")
        return "failed"
    _set_sending(key, True)
    try:
        send_command(params)
    except CommandRefused as exc:
        if exc.retry and self.request.retries < self.max_retries:
            _set_sending(key, False)
            log.warning("click-to-call job %s: %s, retrying", job_id, exc)
            raise self.retry(exc=TransientFailure(str(exc)), countdown=backoff(self.request.retries, base=2, cap=60))
        jobs.fail(key, f"Звонок не начат: {exc}")
        return "failed"
    except Exception as exc:
        if is_transient(exc) and self.request.retries < self.max_retries:
            _set_sending(key, False)
            raise self.retry(exc=TransientFailure(describe(exc)), countdown=backoff(self.request.retries))
        log.error("click-to-call job %s failed: %s", job_id, type(exc).__name__)
        jobs.fail(key, UNSURE)
        return "failed"
    with unit_of_work():
        # Still running unless result/callback came first; the job waits for it either way.
        Session.execute(update(Job).where(Job.id == key).values(
            params=Job.params.op("||")(func.jsonb_build_object("sending", False, "sent", True)),
            result=func.coalesce(Job.result, func.jsonb_build_object()).op("||")(
                func.jsonb_build_object("command_id", params.get("command_id")))))
    return "sent"


@celery_app.task(name="callbacks.expire", soft_time_limit=60, time_limit=90)
def expire() -> dict:
    with unit_of_work():
        expired = callback_rules.expire_stale()
        unanswered = commands.fail_unanswered()
    if expired or unanswered:
        log.info("callbacks: %s open items expired, %s placed calls without a result failed", expired, unanswered)
    return {"expired": expired, "unanswered": unanswered}
