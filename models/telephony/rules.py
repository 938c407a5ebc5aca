"""Mango Office deliveries folded into calls, legs and requests.

Shared by the webhook receiver (parsing, dedupe keys) and the telephony worker (folding).

Identity: `entry_id` is the call (every leg, forward and transfer of it), `call_id` one leg,
`recording_id` one recording. Mango sends notifications in parallel, so they arrive repeated and
out of order; everything here is therefore idempotent and independent of arrival order:

- facts that only grow are merged whatever the order: the first time a leg was seen, the first
  time it was connected, the time and reason it ended;
- the current state of a leg (state, numbers, employee) is overwritten only by a higher `seq`;
- call-level values are recomputed from all legs after every event, never incremented;
- the summary (the final event of a call) is authoritative for direction, times and result;
- a request is created or attached once per call (`calls.request_id`), under a transaction-level
  advisory lock per client phone, so two calls of one phone ending at once cannot both create one.

The caller owns the transaction: the worker claims the inbox row, calls `apply_event` and commits
the claim and the effects together, so an event is either fully applied once or not at all.
"""
from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, NamedTuple

import orjson
from sqlalchemy import select, text

from models.callbacks import commands
from models.callbacks import rules as callbacks
from models.core.business_time import now_utc
from models.core.db import Session
from models.core.enums import FINAL_STATUSES, REQUEST_TYPE_FIRST, REQUEST_TYPE_REPEAT, STATUS_NEW
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign
from models.recordings.tables import Recording
from models.reports.call_rollups import ROLLUP_LOCK_CLASS
from models.requests.rules import apply_changes
from models.requests.tables import Request
from models.telephony.tables import Call, CallLeg
from settings import settings

CALL, SUMMARY, RECORDING, RECORD_ADDED, RECORD_TAGGED, DTMF, SMS = (
    "call", "summary", "recording", "record/added", "record/tagged", "dtmf", "sms",
)
UNKNOWN = "unknown"

# summary.call_direction
DIRECTIONS = {0: "internal", 1: "in", 2: "out"}
# Before the summary arrives the direction is guessed from call events; stronger evidence wins.
EVIDENCE_RANK = {"unknown": 0, "internal": 1, "in": 2, "out": 3}

MIN_EXTERNAL_DIGITS = 7  # shorter numbers are employees' extensions, not callers


class PayloadError(ValueError):
    """The delivery cannot be folded (not JSON, not an object, no ids): a permanent failure."""


@dataclass(frozen=True)
class FollowUp:
    """Work the worker must enqueue before it marks the event processed."""

    kind: str  # "download_recording"
    recording_id: str


# ---- lenient parsing ------------------------------------------------------------------------------
# The PDF types fields as integers and its own examples send strings: accept both.

def parse_payload(raw: str) -> dict[str, Any]:
    if "\x00" in raw or "\\u0000" in raw:
        raise PayloadError("JSON содержит символ NUL")
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"Некорректный JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise PayloadError("JSON не является объектом")
    return payload


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text_value = value.strip()
        if text_value.lstrip("-").isdigit() and len(text_value) <= 19:
            return int(text_value)
    return None


def as_text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    result = str(value).strip()
    return result[:limit] or None


def as_time(value: Any) -> datetime | None:
    """Mango times are Unix epoch seconds."""
    seconds = as_int(value)
    if not seconds or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def party(payload: dict[str, Any], key: str) -> dict[str, Any]:
    value = payload.get(key)
    return value if isinstance(value, dict) else {}


def external_number(value: Any) -> str | None:
    """A caller's or callee's phone as digits, or None for SIP addresses and employees' short numbers.

    Digits pulled out of a SIP URI are never a phone (`sip:line71554@vpbx400371758.mangosip.ru`).
    """
    raw = as_text(value, 200)
    if not raw:
        return None
    lowered = raw.lower()
    if "sip:" in lowered or "@" in lowered or "mangosip" in lowered:
        return None
    digits = normalize_phone(raw)
    if not digits or not MIN_EXTERNAL_DIGITS <= len(digits) <= 20:
        return None
    return digits


def extension(value: Any) -> str | None:
    return as_text(value, 20)


# ---- event types and dedupe keys --------------------------------------------------------------------

def event_type_from_path(path: str) -> str | None:
    """The event type in a sub-path Mango appended to the registered base, or None when it names none.

    `mango/events/call` -> call, `events/record/added` -> record/added, `result/callback` -> result/callback,
    `ping` -> ping. Tolerates a base registered without its trailing slash (`mangoevents/call`).
    """
    path = path.strip("/").lower()
    for marker in ("events/", "result/"):
        index = path.find(marker)
        if index >= 0:
            rest = path[index + len(marker):].strip("/")
            if not rest:
                return None
            return rest if marker == "events/" else "result/" + rest
    if path == "ping" or path.endswith("/ping"):
        return "ping"
    return None


def guess_event_type(payload: dict[str, Any]) -> str:
    """The type of a delivery posted to the bare base address, from the shape of its payload."""
    if "call_state" in payload:
        return CALL
    if "call_direction" in payload or "entry_result" in payload:
        return SUMMARY
    if "recording_state" in payload:
        return RECORDING
    if "dtmf" in payload:
        return DTMF
    if "recording_id" in payload and "product_id" in payload:
        return RECORD_ADDED
    return UNKNOWN


# The fields that identify one notification (Mango may deliver one more than once). A repeated delivery has
# the same values; two different notifications differ at least in one (seq is per leg, per recording, per
# DTMF counter).
IDENTITY = {
    CALL: ("entry_id", "call_id", "seq", "call_state", "location", "timestamp"),
    SUMMARY: ("entry_id",),
    RECORDING: ("entry_id", "recording_id", "seq", "recording_state", "call_id"),
    RECORD_ADDED: ("entry_id", "recording_id"),
    RECORD_TAGGED: ("entry_id", "recording_id", "timestamp"),
    DTMF: ("entry_id", "call_id", "seq", "dtmf", "timestamp"),
    SMS: ("command_id", "timestamp", "reason"),
}


def dedupe_key(event_type: str, payload: dict[str, Any] | None, raw: str) -> str:
    """`<type>:<sha256 of the identifying fields>`; the whole body when the type has none (or lacks them)."""
    fields = IDENTITY.get(event_type)
    values: list[str] | None = None
    if payload is not None and fields:
        picked = [payload.get(name) for name in fields]
        if any(value is not None for value in picked):
            values = ["" if value is None else str(value) for value in picked]
    material = "\x1f".join(values) if values is not None else "raw\x1f" + raw
    digest = hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{event_type[:60]}:{digest}"


# ---- the call row ---------------------------------------------------------------------------------

# The statements of the hot path are plain SQL, built once: a call event is the most frequent
# delivery, and building ORM statements cost more than running them.

UPSERT_CALL = text("""
    INSERT INTO calls (entry_id) VALUES (:entry_id)
    ON CONFLICT (entry_id) DO UPDATE SET entry_id = EXCLUDED.entry_id
    RETURNING id, direction, client_phone, line_number, campaign_id, summary_received
""")
"""Create the call or touch it: either way its row is locked until the transaction ends, so events of
one call are applied one after another even when several workers hold them at once."""

# Call-level values recomputed from every leg of the call (never incremented): the first time any
# leg (or the summary) saw it; until the call is closed, the first time an employee answered; the
# operator, the employee on the leg connected last (after transfers, the one who finished), else the
# one the caller names (:operator); the campaign of its line, kept once found.
STARTED = """
    started_at = LEAST(calls.started_at, CAST(:started_at AS timestamptz),
                       (SELECT min(leg.started_at) FROM call_legs leg WHERE leg.call_pk = calls.id))"""
ANSWERED_FROM_LEGS = """
    answered_at = CASE WHEN calls.summary_received OR calls.ended_at IS NOT NULL THEN calls.answered_at
                       ELSE (SELECT min(leg.connected_at) FROM call_legs leg WHERE leg.call_pk = calls.id) END"""
OPERATOR = """
    operator_extension = COALESCE(
        (SELECT leg.extension FROM call_legs leg
         WHERE leg.call_pk = calls.id AND leg.connected_at IS NOT NULL AND leg.extension IS NOT NULL
         ORDER BY leg.connected_at DESC, leg.seq DESC, leg.id DESC LIMIT 1),
        calls.operator_extension, CAST(:operator AS varchar))"""
CAMPAIGN = """
    campaign_id = COALESCE(calls.campaign_id,
                           (SELECT c.id FROM advertising_campaigns c WHERE c.is_active
                            AND c.phone = COALESCE(CAST(:line_number AS varchar), calls.line_number)))"""
# What settling a closed call needs to know.
FACTS = ("id, direction, client_phone, line_number, campaign_id, missed, started_at, ended_at, request_id, "
         "summary_received")

# Values decided in Python fill only what is still empty (the row is locked, so they are current).
UPDATE_CALL_FROM_EVENT = text(f"""
    UPDATE calls SET
        last_seq = GREATEST(last_seq, :seq),
        direction = COALESCE(:direction, direction),
        client_phone = COALESCE(client_phone, :client_phone),
        line_number = COALESCE(line_number, :line_number),
        {STARTED}, {ANSWERED_FROM_LEGS}, {OPERATOR}, {CAMPAIGN},
        updated_at = now()
    WHERE id = :id
    RETURNING {FACTS}
""")  # nosec B608 # the f-string joins module constants; values are bound parameters

# The summary is authoritative for what it says.
UPDATE_CALL_FROM_SUMMARY = text(f"""
    UPDATE calls SET
        direction = COALESCE(:direction, direction),
        line_number = COALESCE(:line_number, line_number),
        client_phone = COALESCE(:client_phone, client_phone),
        answered_at = :answered_at,
        ended_at = COALESCE(:ended_at, ended_at, now()),
        talk_seconds = :talk_seconds,
        disconnect_reason = :disconnect_reason,
        missed = :missed,
        result = :result,
        summary_received = true,
        {STARTED}, {OPERATOR}, {CAMPAIGN},
        updated_at = now()
    WHERE id = :id
    RETURNING {FACTS}
""")  # nosec B608 # the f-string joins module constants; values are bound parameters

REFRESH_CALL = text(f"""
    UPDATE calls SET {STARTED}, {ANSWERED_FROM_LEGS}, {OPERATOR}, {CAMPAIGN}, updated_at = now()
    WHERE id = :id
    RETURNING {FACTS}
""")  # nosec B608 # the f-string joins module constants; values are bound parameters

LINK_REQUEST = text("UPDATE calls SET request_id = :request_id, updated_at = now() WHERE id = :id")
LINK_RECORDINGS = text("""
    UPDATE recordings SET request_id = :request_id, match_status = 'matched', matched_at = now()
    WHERE call_id = :id AND request_id IS NULL
""")
PHONE_LOCK_PREFIX = "leadline:mango:phone:"
LOCK_PHONE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
NEWEST_REQUEST = text("""
    SELECT id FROM requests WHERE client_phone = :phone ORDER BY created_at DESC, id DESC LIMIT 1
""")
OPEN_REQUEST = text("""
    SELECT id FROM requests
    WHERE client_phone = :phone AND status <> ALL(:final) AND created_at >= :since
    ORDER BY created_at DESC, id DESC LIMIT 1
""")
REQUEST_TYPE = text("""
    SELECT id FROM request_types
    WHERE name = CASE WHEN EXISTS (SELECT 1 FROM requests WHERE client_phone = :phone) THEN :repeat ELSE :first END
""")

# Merged in SQL so the result does not depend on the order of arrival: times only move outwards
# (first seen, first connected, last ended); the state, numbers and employee are replaced only by a
# notification with a higher seq. Every SET expression reads the row as it was before this statement.
MERGE_LEG = text("""
    INSERT INTO call_legs AS old (call_pk, call_id, seq, state, from_number, to_number, extension,
                                  started_at, connected_at, ended_at, disconnect_reason, updated_at)
    VALUES (:call_pk, :call_id, :seq, :state, :from_number, :to_number, :extension,
            :at, :connected_at, :ended_at, :disconnect_reason, now())
    ON CONFLICT (call_id) DO UPDATE SET
        started_at = LEAST(old.started_at, EXCLUDED.started_at),
        connected_at = LEAST(old.connected_at, EXCLUDED.connected_at),
        ended_at = GREATEST(old.ended_at, EXCLUDED.ended_at),
        disconnect_reason = CASE WHEN EXCLUDED.ended_at IS NOT NULL
                                      AND (old.ended_at IS NULL OR EXCLUDED.ended_at >= old.ended_at)
                                 THEN EXCLUDED.disconnect_reason ELSE old.disconnect_reason END,
        seq = GREATEST(old.seq, EXCLUDED.seq),
        state = CASE WHEN EXCLUDED.seq > old.seq OR old.state IS NULL THEN EXCLUDED.state ELSE old.state END,
        from_number = CASE WHEN EXCLUDED.seq > old.seq OR old.state IS NULL
                           THEN EXCLUDED.from_number ELSE old.from_number END,
        to_number = CASE WHEN EXCLUDED.seq > old.seq OR old.state IS NULL
                         THEN EXCLUDED.to_number ELSE old.to_number END,
        extension = CASE WHEN EXCLUDED.seq > old.seq OR old.state IS NULL
                         THEN EXCLUDED.extension ELSE old.extension END,
        updated_at = now()
""")


LOCK_CALLS = text("""
    INSERT INTO calls (entry_id)
    SELECT entry_id FROM unnest(CAST(:entry_ids AS varchar[])) WITH ORDINALITY AS wanted(entry_id, n) ORDER BY n
    ON CONFLICT (entry_id) DO UPDATE SET entry_id = EXCLUDED.entry_id
    RETURNING entry_id, id, direction, client_phone, line_number, campaign_id, summary_received
""")
"""`UPSERT_CALL` for many calls at once, in the order given."""


class CallHead(NamedTuple):
    """What folding an event reads of its call before changing it (UPSERT_CALL's columns)."""

    id: int
    direction: str | None
    client_phone: str | None
    line_number: str | None
    campaign_id: int | None
    summary_received: bool


# Within a batch (`folding_batch`) the batch's calls are locked from the start, so nothing but the
# batch itself changes them: their heads are kept here, taken from what each UPDATE returns, instead of
# being read again with UPSERT_CALL for every event.
_batch_calls: ContextVar[dict[str, CallHead] | None] = ContextVar("leadline_mango_batch_calls", default=None)


@contextmanager
def folding_batch() -> Iterator[None]:
    """Fold several deliveries in the caller's transaction: `lock_calls` first, then `apply_event`
    for each in the order they arrived."""
    token = _batch_calls.set({})
    try:
        yield
    finally:
        _batch_calls.reset(token)


def call_head(entry_id: str) -> CallHead:
    """The call of `entry_id`, created if new and locked until the transaction ends."""
    known = _batch_calls.get()
    head = known.get(entry_id) if known is not None else None
    if head is None:
        row = Session.execute(UPSERT_CALL, {"entry_id": entry_id}).one()
        head = CallHead(row.id, row.direction, row.client_phone, row.line_number, row.campaign_id,
                        row.summary_received)
        if known is not None:
            known[entry_id] = head
    return head


def remember_call(entry_id: str, facts) -> None:
    """Keep a batch's head of the call in step with what an UPDATE of it returned (FACTS)."""
    known = _batch_calls.get()
    if known is not None:
        known[entry_id] = CallHead(facts.id, facts.direction, facts.client_phone, facts.line_number,
                                   facts.campaign_id, facts.summary_received)


# The deliveries that create and lock their call when folded.
TYPES_WITH_A_CALL = (CALL, SUMMARY, RECORD_ADDED)


def call_entry_id(event_type: str, payload: dict[str, Any]) -> str | None:
    """The call a delivery will lock when folded, or None."""
    return as_text(payload.get("entry_id"), 128) if event_type in TYPES_WITH_A_CALL else None


def lock_calls(entry_ids: Iterable[str]) -> None:
    """Create or lock the calls of a batch of deliveries before folding any of them, in one order
    (sorted by entry id) for every batch: two workers folding batches that share calls then wait for
    each other instead of each holding a call the other needs (a deadlock). A call created here for
    a delivery that turns out not to fold is rolled back with the batch."""
    wanted = sorted(set(entry_ids))
    if not wanted:
        return
    known = _batch_calls.get()
    for row in Session.execute(LOCK_CALLS, {"entry_ids": wanted}):
        if known is not None:
            known[row.entry_id] = CallHead(row.id, row.direction, row.client_phone, row.line_number,
                                           row.campaign_id, row.summary_received)


# Every per-number lock folding takes (the call rollup's trigger, the request decision's, the callback
# queue's), for many numbers, sorted, in the order a single delivery takes them.
LOCK_PHONES = text(f"""
    SELECT pg_advisory_xact_lock({ROLLUP_LOCK_CLASS}, hashtext(phone)),
           pg_advisory_xact_lock(hashtextextended(:request_prefix || phone, 0)),
           pg_advisory_xact_lock(hashtextextended(:callback_prefix || phone, 0))
    FROM (SELECT DISTINCT phone FROM unnest(CAST(:phones AS varchar[])) AS phone ORDER BY phone) AS wanted
""")  # nosec B608 # the f-string holds a module constant; values are bound parameters


def lock_batch(deliveries: list[tuple[str, dict[str, Any]]]) -> None:
    """Lock what a batch of (event type, payload) may touch before folding any of it, in one order for
    every batch: its calls (`lock_calls`), then every client number its calls hold or its call events
    and summaries name. Two batches then wait for each other instead of each holding what the other
    needs (a deadlock, which would roll a batch back to be folded one delivery at a time)."""
    lock_calls(filter(None, (call_entry_id(event_type, payload) for event_type, payload in deliveries)))
    phones = {head.client_phone for head in (_batch_calls.get() or {}).values() if head.client_phone}
    for event_type, payload in deliveries:
        phones.update(client_numbers(event_type, payload))
    if phones:
        Session.execute(LOCK_PHONES, {"phones": sorted(phones), "request_prefix": PHONE_LOCK_PREFIX,
                                      "callback_prefix": callbacks.PHONE_LOCK_PREFIX}).all()


def client_numbers(event_type: str, payload: dict[str, Any]) -> set[str]:
    """The numbers a call event or summary may make its call's client number (as folding decides it:
    the caller of an incoming call, the callee of an outgoing one); never a tracking line."""
    if event_type == CALL:
        sides = {"in": ("from",), "out": ("to",)}.get(direction_evidence(payload), ())
    elif event_type == SUMMARY:
        direction = DIRECTIONS.get(as_int(payload.get("call_direction")))
        sides = {"in": ("from",), "out": ("to",), "internal": ()}.get(direction, ("from", "to"))
    else:
        return set()
    return {number for number in (external_number(party(payload, side).get("number")) for side in sides) if number}


def lock_call(entry_id: str) -> Call:
    """The call of `entry_id` (created if new) as an ORM object, locked."""
    call_id = Session.execute(UPSERT_CALL, {"entry_id": entry_id}).one().id
    return Session.get(Call, call_id, populate_existing=True)


def required_text(payload: dict[str, Any], name: str) -> str:
    value = as_text(payload.get(name), 128)
    if not value:
        raise PayloadError(f"нет поля {name}")
    return value


def _earliest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def refresh_from_legs(call_pk: int):
    """Recompute the leg-derived values of a call; returns its facts."""
    return Session.execute(REFRESH_CALL, {"id": call_pk, "started_at": None, "operator": None,
                                          "line_number": None}).one()


# ---- events/call ------------------------------------------------------------------------------------

def direction_evidence(payload: dict[str, Any]) -> str | None:
    """What one call event says about the direction of its call.

    Call events carry no call_direction, and the first leg of a callback rings the operator, so it
    looks inbound: a callback initiator or a task id mean outbound; a leg taken from another call (a
    transfer) says nothing; otherwise a command id means outbound."""
    caller, callee = party(payload, "from"), party(payload, "to")
    if payload.get("callback_initiator") or payload.get("task_id") is not None:
        return "out"
    if caller.get("taken_from_call_id"):
        return None  # a leg created by a transfer: says nothing about who called whom
    if payload.get("command_id"):
        return "out"
    caller_ext, callee_ext = extension(caller.get("extension")), extension(callee.get("extension"))
    if caller_ext is None and external_number(caller.get("number")):
        return "in"
    if caller_ext and callee_ext is None and external_number(callee.get("number")):
        return "out"
    if caller_ext and callee_ext:
        return "internal"
    return None


def merge_leg(call_pk: int, payload: dict[str, Any], call_id: str, seq: int, at: datetime) -> None:
    state = as_text(payload.get("call_state"), 20)
    location = as_text(payload.get("location"), 20)
    caller, callee = party(payload, "from"), party(payload, "to")
    ended = state == "Disconnected"
    Session.execute(MERGE_LEG, {
        "call_pk": call_pk, "call_id": call_id, "seq": seq, "state": state,
        "from_number": external_number(caller.get("number")),
        "to_number": external_number(callee.get("number")),
        "extension": extension(callee.get("extension")) or extension(caller.get("extension")),
        "at": at,
        # An IVR or a queue answering is no conversation.
        "connected_at": at if state == "Connected" and location in (None, "abonent") else None,
        "ended_at": at if ended else None,
        "disconnect_reason": as_int(payload.get("disconnect_reason")) if ended else None,
    })


def apply_call_event(payload: dict[str, Any]) -> int:
    """Fold one events/call notification into its call and leg."""
    entry_id = required_text(payload, "entry_id")
    call_id = required_text(payload, "call_id")
    seq = as_int(payload.get("seq")) or 0
    at = as_time(payload.get("timestamp")) or now_utc()
    caller, callee = party(payload, "from"), party(payload, "to")

    call = call_head(entry_id)
    merge_leg(call.id, payload, call_id, seq, at)

    values: dict[str, Any] = {"id": call.id, "seq": seq, "direction": None, "client_phone": None,
                              "line_number": None, "started_at": at, "operator": None}
    if not call.summary_received:  # after the summary, its values stand
        direction = call.direction or "unknown"
        evidence = direction_evidence(payload)
        if evidence and EVIDENCE_RANK[evidence] > EVIDENCE_RANK[direction]:
            direction = values["direction"] = evidence
        if evidence == direction and call.client_phone is None:
            if evidence == "in":
                values["client_phone"] = external_number(caller.get("number"))
            elif evidence == "out":
                values["client_phone"] = external_number(callee.get("number"))
        if call.line_number is None:
            values["line_number"] = external_number(callee.get("line_number"))
    facts = Session.execute(UPDATE_CALL_FROM_EVENT, values).one()
    remember_call(entry_id, facts)
    if facts.ended_at is not None:
        settle(facts)  # a late event of a closed call: linking is idempotent
    return call.id


# ---- events/summary ---------------------------------------------------------------------------------

def classify(direction: str | None, talked: bool, reason: int | None) -> str:
    """A short outcome for lists and reports from Mango's `disconnect_reason` codes (1121 busy,
    1122-1124 rejected; 2xxx billing restrictions, 3xxx-4xxx unreachable, 5xxx Mango's own errors): an
    unknown code is read as its class."""
    if talked:
        return "answered"
    if reason is not None:
        if reason == 1121:
            return "busy"
        if reason in (1122, 1123, 1124):
            return "rejected"
        if 2000 <= reason < 3000:
            return "billing_restricted"
        if 3000 <= reason < 5000:
            return "unreachable"
        if reason >= 5000:
            return "mango_error"
    return "no_answer" if direction == "out" else "missed"


def apply_summary(payload: dict[str, Any]) -> int:
    entry_id = required_text(payload, "entry_id")
    caller, callee = party(payload, "from"), party(payload, "to")
    call = call_head(entry_id)

    direction = DIRECTIONS.get(as_int(payload.get("call_direction"))) or call.direction
    created, talk, end = (as_time(payload.get(name)) for name in ("create_time", "talk_time", "end_time"))
    # entry_result 1 = a conversation, yet Mango's own documentation shows an IVR-only call with 1 and
    # talk_time 0: a talk time is required too.
    talked = as_int(payload.get("entry_result")) == 1 and talk is not None
    reason = as_int(payload.get("disconnect_reason"))
    client = caller if direction == "in" else callee if direction == "out" else {}
    facts = Session.execute(UPDATE_CALL_FROM_SUMMARY, {
        "id": call.id,
        "direction": direction if direction != "unknown" else None,
        "line_number": external_number(payload.get("line_number")),
        "client_phone": external_number(client.get("number")),
        "started_at": created,
        "answered_at": talk if talked else None,
        "ended_at": end,
        "talk_seconds": max(0, int((end - talk).total_seconds())) if talked and end else 0,
        "disconnect_reason": reason,
        "missed": not talked,
        "result": classify(direction, talked, reason),
        # Only when no leg told who answered: the summary's `to` may be the first employee who missed it.
        "operator": extension((caller if direction == "out" else callee).get("extension")) if talked else None,
    }).one()
    remember_call(entry_id, facts)
    settle(facts)
    return call.id


def close_without_summary(call_pk: int) -> None:
    """Close a call whose summary never came, from its legs (the sweeper calls this, call locked).

    `summary_received` stays false, so a summary arriving later still overrides these values.
    """
    legs = Session.scalars(select(CallLeg).where(CallLeg.call_pk == call_pk)).all()
    call = Session.get(Call, call_pk)
    if call is None or not legs or any(leg.ended_at is None for leg in legs) or call.ended_at is not None:
        return
    answered = _earliest(*(leg.connected_at for leg in legs))
    call.ended_at = max(leg.ended_at for leg in legs)
    call.answered_at = answered
    call.talk_seconds = max(0, int((call.ended_at - answered).total_seconds())) if answered else 0
    last = max(legs, key=lambda leg: (leg.ended_at, leg.seq, leg.id))
    call.disconnect_reason = last.disconnect_reason
    call.missed = answered is None
    call.result = classify(call.direction, answered is not None, call.disconnect_reason)
    Session.flush()
    settle(refresh_from_legs(call_pk))


# ---- attribution and requests -----------------------------------------------------------------------

def lock_phone(phone: str) -> None:
    """Serialise request decisions for one client phone until the transaction ends."""
    Session.execute(LOCK_PHONE, {"key": PHONE_LOCK_PREFIX + phone})


def settle(facts) -> int | None:
    """Link a finished call to its request, then let the callback queue see it (models/callbacks)."""
    request_id = link_request(facts)
    callbacks.after_call_folded(facts, request_id)
    return request_id


def link_request(facts) -> int | None:
    """Link a finished call to its request, creating a Новая one for an incoming campaign call.

    `facts` is the call's row (FACTS columns). Idempotent: a call linked once stays linked; events
    arriving after the close call this again. Returns the request id.
    """
    if facts.request_id is not None or not facts.client_phone:
        return facts.request_id
    request_id = None
    if facts.direction == "out":
        request_id = Session.execute(NEWEST_REQUEST, {"phone": facts.client_phone}).scalar()
    elif facts.direction == "in" and facts.campaign_id is not None:
        lock_phone(facts.client_phone)
        request_id = open_request_of(facts.client_phone, facts.started_at or now_utc())
        if request_id is None and (not facts.missed or settings.MANGO_MISSED_CREATES_REQUEST):
            request_id = create_request(facts).id
    if request_id is not None:
        Session.execute(LINK_REQUEST, {"id": facts.id, "request_id": request_id})
        link_recordings(facts.id, request_id)
    return request_id


def open_request_of(phone: str, reference: datetime) -> int | None:
    """The newest request of `phone` not in a final status, created within the repeat window."""
    since = reference - timedelta(minutes=settings.MANGO_REPEAT_WINDOW_MIN)
    return Session.execute(OPEN_REQUEST, {"phone": phone, "final": list(FINAL_STATUSES), "since": since}).scalar()


def request_type_for(phone: str) -> int:
    """Впервые for a phone never seen in a request, Повтор otherwise."""
    params = {"phone": phone, "repeat": REQUEST_TYPE_REPEAT, "first": REQUEST_TYPE_FIRST}
    type_id = Session.execute(REQUEST_TYPE, params).scalar()
    if type_id is None:
        raise PayloadError(f"нет типа заявки «{REQUEST_TYPE_FIRST}» или «{REQUEST_TYPE_REPEAT}»")
    return type_id


def create_request(facts) -> Request:
    city_id = Session.scalar(select(AdvertisingCampaign.city_id).where(AdvertisingCampaign.id == facts.campaign_id))
    request = Request(created_by_id=None)
    apply_changes(request, {
        "status": STATUS_NEW,
        "city_id": city_id,
        "request_type_id": request_type_for(facts.client_phone),
        "advertising_campaign_id": facts.campaign_id,
        "client_phone": facts.client_phone,
        "ats_number": facts.line_number,
    }, user_id=None, source="mango")
    return request


def link_recordings(call_pk: int, request_id: int) -> None:
    Session.execute(LINK_RECORDINGS, {"id": call_pk, "request_id": request_id})


# ---- recordings -----------------------------------------------------------------------------------

def download_configured() -> bool:
    return bool(settings.MANGO_API_KEY and settings.MANGO_API_SALT)


def apply_record_added(payload: dict[str, Any]) -> list[FollowUp]:
    """A recording is in Mango's cloud: make sure its call exists and ask for the download."""
    recording_id = required_text(payload, "recording_id")
    entry_id = as_text(payload.get("entry_id"), 128)
    call = lock_call(entry_id) if entry_id else None
    existing = Session.scalar(select(Recording).where(Recording.mango_recording_id == recording_id))
    if existing is not None:
        if call is not None and existing.call_id is None:
            existing.call_id = call.id
            Session.flush()
        if call is not None and call.request_id is not None:
            link_recordings(call.id, call.request_id)
        return []
    return [FollowUp("download_recording", recording_id)] if download_configured() else []


# ---- dispatch ---------------------------------------------------------------------------------------

def apply_event(event_type: str, payload: dict[str, Any]) -> list[FollowUp]:
    """Fold one delivery into calls and requests; returns the work to enqueue before committing.

    `result/callback` completes the job of a call placed from leadline. Types with no effect on calls
    (recording progress, tagged, DTMF, SMS, other command results, unknown ones) are kept in the inbox only.
    """
    if event_type == CALL:
        apply_call_event(payload)
    elif event_type == SUMMARY:
        apply_summary(payload)
    elif event_type == RECORD_ADDED:
        return apply_record_added(payload)
    elif event_type == commands.RESULT_EVENT:
        commands.apply_result(payload)
    return []


def stale_unsummarised_calls(older_than: timedelta, limit: int = 500) -> Iterable[int]:
    """Calls with every leg ended, no summary and no close, untouched for `older_than`."""
    cutoff = now_utc() - older_than
    open_leg = select(CallLeg.id).where(CallLeg.call_pk == Call.id, CallLeg.ended_at.is_(None)).exists()
    any_leg = select(CallLeg.id).where(CallLeg.call_pk == Call.id).exists()
    return Session.scalars(
        select(Call.id)
        .where(Call.summary_received.is_(False), Call.ended_at.is_(None), Call.updated_at < cutoff, any_leg,
               ~open_leg)
        .order_by(Call.id).limit(limit)
    ).all()
