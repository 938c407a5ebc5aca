"""Mango deliveries for the telephony tests, shaped like the notifications of Mango Office's VPBX API
(events/call, events/summary, events/recording, events/record/added; values invented)."""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from typing import Any, Iterator

KEY = "9ipl5monmwkkyg3adfx2s6frz7b"
SALT = "k2v8s0d7x1q4m6n3b5c9z0a1s2d3f4g5"
LINE = "74951234567"  # the campaign's tracking line, as Mango reports it
OTHER_LINE = "74957654321"  # a line with no campaign
CLIENT = "79161234567"
T0 = 1735896305  # 2025-01-03 09:25:05 UTC

Delivery = tuple[str, dict[str, Any]]


def compact(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def sign(raw: str, key: str = KEY, salt: str = SALT) -> str:
    return hashlib.sha256((key + raw + salt).encode()).hexdigest()


def form(payload: dict[str, Any] | str, key: str = KEY, salt: str = SALT) -> dict[str, str]:
    raw = payload if isinstance(payload, str) else compact(payload)
    return {"vpbx_api_key": key, "sign": sign(raw, key, salt), "json": raw}


def path_of(event_type: str) -> str:
    return f"/api/webhook/mango/events/{event_type}"


@contextmanager
def overridden(**values) -> Iterator[None]:
    """Change settings for the length of a block (the settings object is frozen; tests reach under it)."""
    from settings import settings

    saved = {name: getattr(settings, name) for name in values}
    for name, value in values.items():
        object.__setattr__(settings, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            object.__setattr__(settings, name, value)


def signing():
    """Webhook signatures checked with KEY and SALT for the length of a block."""
    return overridden(MANGO_API_KEY=KEY, MANGO_API_SALT=SALT)


# ---- payload builders -----------------------------------------------------------------------------

def call_event(entry: str, call_id: str, seq: int, state: str, ts: int, *, location: str = "abonent",
               frm: dict | None = None, to: dict | None = None, **extra) -> Delivery:
    payload = {"entry_id": entry, "call_id": call_id, "timestamp": ts, "seq": seq, "call_state": state,
               "location": location, "from": frm or {}, "to": to or {}}
    payload.update(extra)
    return "call", payload


def summary(entry: str, direction: int, *, frm: dict, to: dict, line: str | None, create: int, forward: int,
            talk: int, end: int, result: int, reason: int) -> Delivery:
    payload = {"entry_id": entry, "call_direction": direction, "from": frm, "to": to, "create_time": create,
               "forward_time": forward, "talk_time": talk, "end_time": end, "entry_result": result,
               "disconnect_reason": reason}
    if line:
        payload["line_number"] = line
    return "summary", payload


def operator(ext: str, name: str = "petrova") -> dict:
    return {"extension": ext, "number": f"sip:{name}@vpbx400123456.mangosip.ru"}


def incoming_answered(entry: str, client: str = CLIENT, line: str = LINE, t0: int = T0, ext: str = "105",
                      talk_seconds: int = 83) -> list[Delivery]:
    """IVR leg, then an operator leg that answers; the caller hangs up; summary."""
    ivr, op = f"{entry}-ivr", f"{entry}-op"
    caller = {"number": client}
    to_op = {**operator(ext), "line_number": line, "acd_group": "200"}
    end = t0 + 13 + talk_seconds
    return [
        call_event(entry, ivr, 1, "Appeared", t0, location="ivr", frm=caller, to={"number": line, "line_number": line}),
        call_event(entry, ivr, 2, "Disconnected", t0 + 6, location="ivr", frm=caller,
                   to={"number": line, "line_number": line}, disconnect_reason=1100),
        call_event(entry, op, 1, "Appeared", t0 + 7, frm=caller, to=to_op, dct={"type": 0}),
        call_event(entry, op, 2, "Connected", t0 + 13, frm=caller, to=to_op, dct={"type": 0}),
        call_event(entry, op, 3, "Disconnected", end, frm=caller, to=to_op, disconnect_reason=1110,
                   dct={"type": 0}),
        summary(entry, 1, frm=caller, to=operator(ext), line=line, create=t0, forward=t0 + 6, talk=t0 + 13, end=end,
                result=1, reason=1110),
    ]


def incoming_missed(entry: str, client: str = CLIENT, line: str = LINE, t0: int = T0) -> list[Delivery]:
    """Queued to group 200, nobody answers, the wait limit ends it; summary to the group."""
    queue, ring = f"{entry}-queue", f"{entry}-ring"
    caller = {"number": client}
    return [
        call_event(entry, queue, 1, "Appeared", t0, location="queue", frm=caller,
                   to={"number": line, "line_number": line, "acd_group": "200"}),
        call_event(entry, ring, 1, "Appeared", t0 + 2, frm=caller, to={**operator("105"), "line_number": line}),
        call_event(entry, ring, 2, "Disconnected", t0 + 30, frm=caller, to={**operator("105"), "line_number": line},
                   disconnect_reason=1111),
        call_event(entry, queue, 2, "Disconnected", t0 + 42, location="queue", frm=caller,
                   to={"number": line, "line_number": line, "acd_group": "200"}, disconnect_reason=1163),
        summary(entry, 1, frm=caller, to={"extension": "200"}, line=line, create=t0, forward=0, talk=0, end=t0 + 42,
                result=0, reason=1163),
    ]


def incoming_transferred(entry: str, client: str = CLIENT, line: str = LINE, t0: int = T0) -> list[Delivery]:
    """Operator 105 answers, consults 107 and transfers; the client finishes the call with 107."""
    first, consult, second = f"{entry}-op1", f"{entry}-consult", f"{entry}-op2"
    caller = {"number": client}
    op1 = {**operator("105"), "line_number": line}
    op2 = {**operator("107", "ivanov"), "line_number": line}
    return [
        call_event(entry, first, 1, "Appeared", t0, frm=caller, to=op1),
        call_event(entry, first, 2, "Connected", t0 + 5, frm=caller, to=op1),
        call_event(entry, consult, 1, "Appeared", t0 + 40, frm=operator("105"), to=operator("107", "ivanov"),
                   transfer="consultative"),
        call_event(entry, consult, 2, "Connected", t0 + 45, frm=operator("105"), to=operator("107", "ivanov"),
                   transfer="consultative"),
        call_event(entry, first, 3, "Disconnected", t0 + 60, frm=caller, to={**op1, "was_transferred": True},
                   disconnect_reason=1100),
        call_event(entry, consult, 3, "Disconnected", t0 + 60, frm=operator("105"), to=operator("107", "ivanov"),
                   disconnect_reason=1100),
        call_event(entry, second, 1, "Connected", t0 + 60, frm={**caller, "taken_from_call_id": first}, to=op2,
                   transfer="blind"),
        call_event(entry, second, 2, "Disconnected", t0 + 200, frm=caller, to=op2, disconnect_reason=1110),
        summary(entry, 1, frm=caller, to=operator("107", "ivanov"), line=line, create=t0, forward=t0,
                talk=t0 + 5, end=t0 + 200, result=1, reason=1110),
    ]


def outbound_callback(entry: str, client: str = CLIENT, line: str = LINE, t0: int = T0 + 3600,
                      answered: bool = True) -> list[Delivery]:
    """Employee 105 calls the client back from the softphone."""
    leg = f"{entry}-out"
    me = operator("105")
    callee = {"number": client}
    events = [call_event(entry, leg, 1, "Appeared", t0, frm=me, to=callee)]
    end = t0 + (127 if answered else 30)
    if answered:
        events.append(call_event(entry, leg, 2, "Connected", t0 + 9, frm=me, to=callee))
    events.append(call_event(entry, leg, 3 if answered else 2, "Disconnected", end, frm=me, to=callee,
                             disconnect_reason=1100))
    events.append(summary(entry, 2, frm=me, to=callee, line=line, create=t0, forward=t0,
                          talk=t0 + 9 if answered else 0, end=end, result=1 if answered else 0, reason=1100))
    return events


def record_added(entry: str, recording_id: str, ts: int = T0 + 130) -> Delivery:
    return "record/added", {"entry_id": entry, "product_id": 400123456, "user_id": 400567890, "timestamp": ts,
                            "recording_id": recording_id}
