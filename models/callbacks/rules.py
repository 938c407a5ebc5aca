"""The callback queue: every missed caller is called back.

A missed incoming call (no conversation) whose number has no answered call after it opens a callback
item, due CALLBACK_SLA_MIN minutes after the first missed call; while the item is open, a later missed
call from the same number adds to it (one open item per number: a unique partial index). An item is
closed by the calls themselves when the number calls again and is answered (`answered_inbound`) or
a call to it is answered (`called_back`, from the softphone or click-to-call), or by an operator who
claimed it (`close`). Items left open CALLBACK_EXPIRE_HOURS after their last missed call expire.

Call folding feeds it: models/telephony/rules.settle calls `after_call_folded` once a call is
finished, and again for late events of a finished call, in the transaction that folds the event (the
call's row locked). Everything here is idempotent: a missed call is counted once (callback_calls is
keyed by the call), and decisions for one number are serialised by a transaction-level advisory lock.
The calls table is read with plain SQL: this domain sits beside telephony, which calls into it.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, text, true

from models.access import requests_visible_to
from models.callbacks import commands
from models.callbacks.tables import MANUAL_OUTCOMES, Callback
from models.core.business_time import now_utc
from models.core.db import Session
from models.core.enums import ADMIN, CALLCENTR, DIRECTOR, MANAGER
from models.core.errors import Invalid, NotFound, RuleViolation
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign
from models.people.tables import User
from models.requests.tables import Request
from settings import settings

# Who works the queue: the call centre, directors (their city), managers and admins.
CALLBACK_ROLES = (CALLCENTR, DIRECTOR, MANAGER)
OVERRIDE_ROLES = (ADMIN, MANAGER)  # may close an item another operator holds

# One round trip each where the order allows it. The lock on the number comes first, in a statement of its
# own: a statement's snapshot is taken as it starts, so what depends on other transactions' commits
# (ANSWERED_SINCE, the upsert) must be read by later statements, after the lock was granted. What this
# statement reads alongside is this call's own (its row is locked by the folding).
# One folding of a number's calls at a time (the advisory lock of hashtextextended(prefix || phone, 0)).
PHONE_LOCK_PREFIX = "leadline:callbacks:phone:"
LOCK_AND_COUNTED = text("""
    SELECT pg_advisory_xact_lock(hashtextextended(:key, 0)),
           EXISTS (SELECT 1 FROM callback_calls WHERE call_id = :call_id) AS counted,
           (SELECT answered_at FROM calls WHERE id = :call_id) AS answered_at
""")
ANSWERED_SINCE = text("""
    SELECT 1 FROM calls
    WHERE client_phone = :phone AND id <> :call_id AND missed IS FALSE AND answered_at >= :since
      AND direction IN ('in', 'out')
    LIMIT 1
""")
ADD_MISSED = text("""
    WITH item AS (
    INSERT INTO callbacks AS cb (phone, status, campaign_id, city_id, line_number, missed_calls,
                                 first_missed_at, last_missed_at, due_at, request_id)
    VALUES (:phone, 'open', :campaign_id,
            COALESCE((SELECT city_id FROM advertising_campaigns WHERE id = :campaign_id),
                     (SELECT city_id FROM requests WHERE id = :request_id)),
            :line_number, 1, :at, :at, CAST(:at AS timestamptz) + make_interval(mins => :sla), :request_id)
    ON CONFLICT (phone) WHERE status = 'open' DO UPDATE SET
        missed_calls = cb.missed_calls + 1,
        first_missed_at = LEAST(cb.first_missed_at, EXCLUDED.first_missed_at),
        last_missed_at = GREATEST(cb.last_missed_at, EXCLUDED.last_missed_at),
        due_at = LEAST(cb.due_at, EXCLUDED.due_at),
        campaign_id = COALESCE(cb.campaign_id, EXCLUDED.campaign_id),
        city_id = COALESCE(cb.city_id, EXCLUDED.city_id),
        line_number = COALESCE(cb.line_number, EXCLUDED.line_number),
        request_id = COALESCE(cb.request_id, EXCLUDED.request_id),
        updated_at = now()
    RETURNING id)
    INSERT INTO callback_calls (call_id, callback_id) SELECT :call_id, id FROM item
""")
# An answered call closes the open item of its number when it came after the item's last missed call
# (a missed call after it is still owed a callback), and the item a click-to-call was placed for.
CLOSE_ANSWERED = text("""
    UPDATE callbacks SET status = 'done', outcome = :outcome, closed_at = :at, closing_call_id = :call_id,
                         request_id = COALESCE(request_id, :request_id), updated_at = now()
    WHERE status = 'open' AND ((phone = :phone AND last_missed_at <= :at) OR id = :callback_id)
    RETURNING id
""")


class Conflict(RuleViolation):
    """The item is not in a state that allows this (409)."""

    status = 409


# ---- fed by call folding ----------------------------------------------------------------------------

def after_call_folded(facts: Any, request_id: int | None) -> None:
    """A finished call (the FACTS row of models/telephony/rules.py) and the request it is linked to:
    open or extend the callback item of a missed incoming call, close the item of an answered one,
    link a call placed from leadline to its request and item. Idempotent."""
    if facts.ended_at is None:
        return
    placed = commands.link_placed_call(facts.id) if facts.direction == "out" else None
    if placed is not None and placed.request_id is not None:
        request_id = placed.request_id
    phone = facts.client_phone
    if not phone or facts.direction not in ("in", "out") or (facts.missed and facts.direction != "in"):
        return
    own = Session.execute(LOCK_AND_COUNTED, {"key": PHONE_LOCK_PREFIX + phone, "call_id": facts.id}).one()
    if facts.missed:
        if not own.counted:
            _add_missed(facts, phone, request_id)
        return
    Session.execute(CLOSE_ANSWERED, {
        "outcome": "answered_inbound" if facts.direction == "in" else "called_back",
        "at": own.answered_at or facts.started_at or facts.ended_at,
        "call_id": facts.id, "request_id": request_id, "phone": phone,
        "callback_id": placed.callback_id if placed is not None else None,
    })


def _add_missed(facts: Any, phone: str, request_id: int | None) -> None:
    at = facts.started_at or facts.ended_at
    if Session.execute(ANSWERED_SINCE, {"phone": phone, "call_id": facts.id, "since": at}).first() is not None:
        return  # answered, or called back, after this call already
    Session.execute(ADD_MISSED, {
        "phone": phone, "campaign_id": facts.campaign_id, "request_id": request_id, "call_id": facts.id,
        "line_number": facts.line_number, "at": at, "sla": settings.CALLBACK_SLA_MIN,
    })


# ---- who sees what --------------------------------------------------------------------------------

def callbacks_visible_to(user: User) -> ColumnElement[bool]:
    """The call centre, managers and admins see every item; a director those of their city (every
    city without one of their own)."""
    role = user.role_name
    if role in (ADMIN, MANAGER, CALLCENTR):
        return true()
    if role == DIRECTOR:
        return true() if user.city_id is None else Callback.city_id == user.city_id
    return false()


def overdue_condition(now: datetime | None = None) -> ColumnElement[bool]:
    return and_(Callback.status == "open", Callback.due_at < (now or func.now()))


def visible_item(callback_id: int, user: User, *, lock: bool = False) -> Callback:
    stmt = select(Callback).where(Callback.id == callback_id, callbacks_visible_to(user))
    if lock:
        stmt = stmt.with_for_update()
    item = Session.scalar(stmt) if 0 < callback_id <= 2 ** 62 else None
    if item is None:
        raise NotFound("Перезвон не найден", code="not_found")
    return item


def claim_lapsed() -> ColumnElement[bool]:
    return Callback.claimed_at < func.now() - func.make_interval(0, 0, 0, 0, 0, settings.CALLBACK_CLAIM_MIN)


def held_by_another(item: Callback, user: User) -> bool:
    if item.claimed_by_id is None or item.claimed_by_id == user.id or item.claimed_at is None:
        return False
    return (now_utc() - item.claimed_at).total_seconds() < settings.CALLBACK_CLAIM_MIN * 60


# ---- what operators do ------------------------------------------------------------------------------

def claim(callback_id: int, user: User) -> None:
    """Take an open item. One conditional UPDATE decides: of two operators claiming at once, the
    second finds the row held (PostgreSQL re-reads the row it waited for) and is refused."""
    visible_item(callback_id, user)
    claimed = Session.execute(
        Callback.__table__.update()
        .where(Callback.id == callback_id, Callback.status == "open",
               or_(Callback.claimed_by_id.is_(None), Callback.claimed_by_id == user.id, claim_lapsed()))
        .values(claimed_by_id=user.id, claimed_at=func.now(), updated_at=func.now())
        .returning(Callback.id)
    ).first()
    if claimed is None:
        item = Session.get(Callback, callback_id, populate_existing=True)
        if item.status != "open":
            raise Conflict("Перезвон уже закрыт", code="callback_closed")
        raise Conflict("Этот перезвон уже взял другой оператор", code="callback_claimed")


def close(callback_id: int, user: User, outcome: str, request_id: int | None) -> None:
    """Close an open item with an operator's outcome (and the request it led to). The holder of a
    live claim closes it; managers and admins may close any."""
    if outcome not in MANUAL_OUTCOMES:
        raise Invalid("Недопустимый результат", code="validation_error",
                      errors={"outcome": ["Допустимые значения: " + ", ".join(MANUAL_OUTCOMES)]})
    item = visible_item(callback_id, user, lock=True)
    if item.status != "open":
        raise Conflict("Перезвон уже закрыт", code="callback_closed")
    if user.role_name not in OVERRIDE_ROLES and held_by_another(item, user):
        raise Conflict("Этот перезвон взял другой оператор", code="callback_claimed")
    item.status, item.outcome = "done", outcome
    item.closed_at, item.closed_by_id = now_utc(), user.id
    if request_id is not None:
        item.request_id = request_id
    Session.flush()


def expire_stale(limit: int = 1000) -> int:
    """Open items whose last missed call is older than CALLBACK_EXPIRE_HOURS: expired."""
    return Session.execute(text("""
        UPDATE callbacks SET status = 'expired', closed_at = now(), updated_at = now()
        WHERE id IN (SELECT id FROM callbacks WHERE status = 'open'
                     AND last_missed_at < now() - make_interval(hours => :hours)
                     ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    """), {"hours": settings.CALLBACK_EXPIRE_HOURS, "limit": limit}).rowcount


# ---- figures (metrics and the alert rule) -------------------------------------------------------------

TIME_TO_CALLBACK_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400)


def overdue_count() -> int:
    return Session.scalar(text("SELECT count(*) FROM callbacks WHERE status = 'open' AND due_at < now()"))


def figures(connection=None) -> dict[str, Any]:
    """Open and overdue items; the time from the first missed call to the callback (or answered call)
    of every item done so far, as cumulative histogram buckets. On `connection` when given."""
    run = (connection or Session).execute
    open_count, overdue = run(text(
        "SELECT count(*), count(*) FILTER (WHERE due_at < now()) FROM callbacks WHERE status = 'open'"
    )).one()
    bounds = ", ".join(f"count(*) FILTER (WHERE seconds <= {int(b)})" for b in TIME_TO_CALLBACK_BUCKETS)
    row = run(text(
        f"SELECT count(*), coalesce(sum(seconds), 0), {bounds} FROM ("  # nosec B608 - integer constants
        " SELECT GREATEST(EXTRACT(EPOCH FROM closed_at - first_missed_at), 0) AS seconds"
        " FROM callbacks WHERE status = 'done' AND closed_at IS NOT NULL) done"
    )).one()
    return {"open": open_count, "overdue": overdue, "count": row[0], "sum": float(row[1]),
            "buckets": list(zip(TIME_TO_CALLBACK_BUCKETS, row[2:]))}


# ---- click-to-call ----------------------------------------------------------------------------------

def mango_commands_configured() -> bool:
    return bool(settings.MANGO_ENABLED and settings.MANGO_API_KEY and settings.MANGO_API_SALT)


def _campaign_line(campaign_id: int | None) -> str | None:
    if campaign_id is None:
        return None
    return Session.scalar(select(AdvertisingCampaign.phone).where(AdvertisingCampaign.id == campaign_id))


def _open_item_of(phone: str) -> Callback | None:
    return Session.scalar(select(Callback).where(Callback.phone == phone, Callback.status == "open"))


def _newest_request_of(phone: str, user: User) -> Request | None:
    return Session.scalar(select(Request).where(Request.client_phone == phone, requests_visible_to(user))
                          .order_by(Request.created_at.desc(), Request.id.desc()).limit(1))


def call_params(user: User, *, phone: str | None = None, request_id: int | None = None,
                callback_id: int | None = None) -> dict[str, Any]:
    """What a call placed by `user` needs (the params of its job): to the client of a request, of a
    callback item, or to a number; from the user's Mango extension, on the campaign's tracking line."""
    if not mango_commands_configured():
        raise Conflict("Звонки через Mango Office не настроены (MANGO_API_KEY, MANGO_API_SALT)",
                       code="mango_not_configured")
    extension = Session.scalar(select(User.mango_extension).where(User.id == user.id))
    if not extension:
        raise Conflict("У вас не указан добавочный номер Mango: попросите администратора его задать",
                       code="no_mango_extension")
    item: Callback | None = None
    request: Request | None = None
    if request_id is not None:
        request = Session.scalar(select(Request).where(Request.id == request_id, requests_visible_to(user)))
        if request is None:
            raise NotFound("Заявка не найдена", code="not_found")
        phone = request.client_phone
        item = _open_item_of(phone) if phone else None
    elif callback_id is not None:
        item = visible_item(callback_id, user)
        phone = item.phone
        request = Session.get(Request, item.request_id) if item.request_id else _newest_request_of(phone, user)
    else:
        phone = normalize_phone(phone)
        if not phone or not 10 <= len(phone) <= 15:
            raise Invalid("Некорректный номер телефона", code="validation_error",
                          errors={"phone": ["Некорректный номер телефона"]})
        item = _open_item_of(phone)
        request = _newest_request_of(phone, user)
    if not phone:
        raise Invalid("У заявки нет телефона клиента", code="no_phone")
    line = None
    if request is not None:
        line = _campaign_line(request.advertising_campaign_id)
    if line is None and item is not None:
        line = item.line_number or _campaign_line(item.campaign_id)
    return {
        "command_id": commands.new_command_id(), "extension": extension, "to_number": phone,
        "line_number": line, "request_id": request.id if request is not None else None,
        "callback_id": item.id if item is not None else None,
    }
