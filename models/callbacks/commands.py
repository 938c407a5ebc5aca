"""Click-to-call: a call placed from leadline through Mango's `commands/callback`.

The API accepts the call with 202 and a job (kind `calls.callback`) whose params hold everything the
command needs: a fresh `command_id`, the operator's extension, the client's number, the campaign's
tracking line when known, and the request and callback item it is for. The light-queue task
`callbacks.place_call` (tasks/callbacks.py) sends the signed command; Mango first rings the
operator's phone, then the client. Mango answers the command at once and reports its outcome later
with `result/callback` (the same signed webhook entry point); `apply_result` completes the job by its
command id. The call's own events carry the command id too: once the call is finished,
`link_placed_call` links it to the request and callback item of its job.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text

from models.core.db import Session

JOB_KIND = "calls.callback"
RESULT_EVENT = "result/callback"
SUCCESS = 1000

# Mango's result codes, by class (their first digit).
RESULT_REASONS = {
    2: "звонок запрещён биллингом ВАТС (нет средств или доступ ограничен)",
    3: "Mango отклонил параметры команды (добавочный или номер)",
    4: "команда невыполнима по логике ВАТС",
    5: "ошибка сервера Mango",
}


def new_command_id() -> str:
    return f"leadline-{uuid.uuid4().hex}"


def command_json(params: dict[str, Any]) -> str:
    """The `json` form field of commands/callback, compact as Mango asks."""
    body: dict[str, Any] = {"command_id": params["command_id"], "from": {"extension": params["extension"]},
                            "to_number": params["to_number"]}
    if params.get("line_number"):
        body["line_number"] = params["line_number"]
    return orjson.dumps(body).decode()


def sign(key: str, payload_json: str, salt: str) -> str:
    """sha256(vpbx_api_key + json + salt), lower-case hex: how Mango signs in both directions."""
    return hashlib.sha256((key + payload_json + salt).encode()).hexdigest()


def result_reason(code: int | None) -> str:
    if code is None:
        return "Mango не сообщил результат команды"
    return f"Mango: код {code}, " + RESULT_REASONS.get(code // 1000, "неизвестный код результата")


# ---- result/callback --------------------------------------------------------------------------------

FINISH_JOB = text("""
    UPDATE jobs SET status = :status, error = :error, finished_at = now(),
                    result = COALESCE(result, '{}'::jsonb) || jsonb_build_object('mango_result', :code)
    WHERE kind = :kind AND params->>'command_id' = :command_id AND status IN ('queued', 'running')
    RETURNING id
""")


def apply_result(payload: dict[str, Any]) -> None:
    """`result/callback`: the job of the command succeeds (1000) or fails with Mango's reason."""
    command_id = payload.get("command_id")
    if not isinstance(command_id, str) or not command_id:
        return  # not one of ours: kept in the inbox only
    raw = payload.get("result")
    code = int(raw) if isinstance(raw, (int, str)) and str(raw).strip().isdigit() else None
    ok = code == SUCCESS
    Session.execute(FINISH_JOB, {
        "status": "succeeded" if ok else "failed", "error": None if ok else result_reason(code),
        "code": code, "kind": JOB_KIND, "command_id": command_id[:128],
    })


UNANSWERED_AFTER_MIN = 10
FAIL_UNANSWERED = text("""
    UPDATE jobs SET status = 'failed', finished_at = now(),
                    error = 'Mango не сообщил результат команды (result/callback) за ' || :minutes || ' мин'
    WHERE kind = :kind AND status = 'running' AND started_at < now() - make_interval(mins => :minutes)
""")


def fail_unanswered(minutes: int = UNANSWERED_AFTER_MIN) -> int:
    """Jobs whose command went out but whose result/callback never came (the webhook's result address is
    not registered in Mango's cabinet, or the event was lost): failed, so nobody waits on them forever."""
    return Session.execute(FAIL_UNANSWERED, {"kind": JOB_KIND, "minutes": minutes}).rowcount


# ---- the call a command placed ----------------------------------------------------------------------

@dataclass(frozen=True)
class Placed:
    job_id: str
    request_id: int | None
    callback_id: int | None


COMMAND_OF_CALL = text("""
    SELECT e.payload->>'command_id' FROM calls c JOIN mango_events e ON e.entry_id = c.entry_id
    WHERE c.id = :call_id AND e.event_type = 'call' AND e.payload->>'command_id' IS NOT NULL
    LIMIT 1
""")
JOB_OF_COMMAND = text("""
    SELECT id, params, result FROM jobs WHERE kind = :kind AND params->>'command_id' = :command_id
""")
NOTE_CALL = text("""
    UPDATE jobs SET result = COALESCE(result, '{}'::jsonb) || jsonb_build_object('call_id', :call_id)
    WHERE id = :id
""")
LINK_CALL = text("""
    UPDATE calls SET request_id = :request_id, updated_at = now()
    WHERE id = :call_id AND request_id IS DISTINCT FROM :request_id
      AND EXISTS (SELECT 1 FROM requests WHERE id = :request_id)
""")
LINK_RECORDINGS = text("""
    UPDATE recordings SET request_id = :request_id, match_status = 'matched', matched_at = now()
    WHERE call_id = :call_id AND request_id IS NULL
""")


def link_placed_call(call_pk: int) -> Placed | None:
    """The job of the command that placed this call, if leadline placed it; the call (and its
    recordings) linked to the job's request, and the job's result told the call's id."""
    command_id = Session.execute(COMMAND_OF_CALL, {"call_id": call_pk}).scalar()
    if not command_id:
        return None
    job = Session.execute(JOB_OF_COMMAND, {"kind": JOB_KIND, "command_id": command_id}).first()
    if job is None:
        return None
    params = job.params or {}
    request_id, callback_id = params.get("request_id"), params.get("callback_id")
    if (job.result or {}).get("call_id") != call_pk:
        Session.execute(NOTE_CALL, {"id": job.id, "call_id": call_pk})
    if request_id is not None:
        Session.execute(LINK_CALL, {"call_id": call_pk, "request_id": request_id})
        Session.execute(LINK_RECORDINGS, {"call_id": call_pk, "request_id": request_id})
    return Placed(str(job.id), request_id, callback_id)
