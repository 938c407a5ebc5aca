"""Rules of a request that hold whoever changes it (API, telephony worker, recordings matcher,
import): who may change which field, what counts as a change, the money (computed on the server,
bounded, never negative where it is entered), the history of every change, and the income booked
on Готово exactly once."""
from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from models.cash.tables import Transaction
from models.core.business_time import now_utc, to_local
from models.core.db import Session
from models.core.enums import (
    ADMIN,
    CALLCENTR,
    DIRECTOR,
    FINAL_STATUSES,
    MANAGER,
    MASTER,
    REQUEST_TYPE_FIRST,
    REQUEST_TYPE_REPEAT,
    STATUS_DONE,
    TRANSACTION_TYPE_INCOME,
)
from models.core.errors import Forbidden, Invalid
from models.core.phones import normalize_phone
from models.directories.tables import AdvertisingCampaign, City, Direction, RequestType, TransactionType
from models.people.tables import User
from models.requests.money import AMOUNT_LABELS, entered_amount, request_money, to_money
from models.requests.notices import tell_master_of_deletion, tell_masters
from models.requests.tables import Request, RequestEvent

# Fields recorded in the history, in the order they are compared.
TRACKED_FIELDS = (
    "status", "city_id", "request_type_id", "direction_id", "advertising_campaign_id", "master_id",
    "client_phone", "client_name", "address", "meeting_date", "problem", "master_notes",
    "result", "expenses", "net_amount", "master_handover",
    "ats_number", "call_center_name", "call_center_notes", "avito_chat_id",
)
MONEY_INPUTS = ("result", "expenses")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_local(value).isoformat()
    if isinstance(value, (date, Decimal)):
        return str(value)
    return str(value)


TEXT_FIELDS = frozenset({"client_name", "address", "problem", "master_notes", "ats_number", "call_center_name",
                         "call_center_notes", "avito_chat_id"})

# Who may change which fields (admin and manager: all of them).
DIRECTOR_FIELDS = frozenset({"status", "master_id", "result", "expenses", "master_handover", "master_notes",
                             "meeting_date"})
MASTER_FIELDS = frozenset({"status", "master_notes", "result", "expenses"})
MASTER_STATUSES = frozenset({"Принял", "В пути", "В работе", "Готово", "Отказ", "Модерн", "НеЗаказ"})
# What only admin and manager may change once a request is final.
FINAL_LOCKED_FIELDS = frozenset({"status", "master_id", "result", "expenses", "master_handover"})


# ---- references -----------------------------------------------------------------------------------

def check_references(data: dict[str, Any], user: User) -> None:
    """Referenced rows exist (and a master is a master of the right city): a 422 naming the field."""
    errors: dict[str, list[str]] = {}
    checks = (
        ("city_id", City, "Город не найден"),
        ("request_type_id", RequestType, "Тип заявки не найден"),
        ("direction_id", Direction, "Направление не найдено"),
        ("advertising_campaign_id", AdvertisingCampaign, "Рекламная кампания не найдена"),
    )
    for field, model, message in checks:
        if data.get(field) is not None and Session.get(model, data[field]) is None:
            errors[field] = [message]
    master_id = data.get("master_id")
    if master_id is not None:
        master = Session.get(User, master_id)
        if master is None or master.role_name != MASTER:
            errors["master_id"] = ["Мастер не найден"]
        elif user.role_name == DIRECTOR and user.city_id is not None and master.city_id != user.city_id:
            errors["master_id"] = ["Мастер из другого города"]
    if errors:
        raise Invalid("Ошибка в данных заявки", code="validation_error", errors=errors)


def check_city(user: User, city_id: int | None) -> None:
    """A director works in their own city (every city when they have none)."""
    if user.role_name == DIRECTOR and user.city_id is not None and city_id != user.city_id:
        raise Forbidden("Нет доступа к заявкам другого города", code="other_city")


def default_request_type(phone: str) -> int:
    """Впервые for a new phone, Повтор when the phone already has a request."""
    normalized = normalize_phone(phone)
    seen = normalized and Session.scalar(select(Request.id).where(Request.client_phone == normalized).limit(1))
    name = REQUEST_TYPE_REPEAT if seen else REQUEST_TYPE_FIRST
    type_id = Session.scalar(select(RequestType.id).where(RequestType.name == name))
    if type_id is None:
        raise Invalid("Укажите тип заявки", code="validation_error",
                      errors={"request_type_id": ["Тип заявки не указан"]})
    return type_id


# ---- what counts as a change ---------------------------------------------------------------------

def comparable(name: str, value: Any) -> Any:
    """`value` of field `name` in the form the update stores it, so that a value sent back as it was
    read (a phone as typed, a meeting time without its microseconds, an amount as a string, '' for
    "not set") equals the stored one."""
    if name == "expenses" and value is None:
        return Decimal("0.00")  # the column holds 0 for "no expenses"
    if value is None:
        return None
    if name == "client_phone":
        return normalize_phone(value) or str(value).strip()
    if name in TEXT_FIELDS:
        return str(value).strip() or None
    if name in AMOUNT_LABELS:
        try:
            return to_money(Decimal(str(value)))
        except (InvalidOperation, ValueError):
            return value  # not an amount: certainly a change, refused by check_money
    if name == "meeting_date" and isinstance(value, datetime):
        return value.replace(microsecond=0)
    return value


def real_changes(request: Request, changes: dict[str, Any]) -> dict[str, Any]:
    """The fields of `changes` whose value differs from the stored one after normalisation."""
    return {name: value for name, value in changes.items()
            if comparable(name, value) != comparable(name, getattr(request, name, None))}


# ---- who may change what ---------------------------------------------------------------------------

def authorize_update(role: str, request: Request, changed: dict[str, Any]) -> None:
    """Refuse (403) a change `role` may not make; `changed` holds only real changes (real_changes)."""
    if not changed or role in (ADMIN, MANAGER):
        return
    final = request.status in FINAL_STATUSES
    if role == CALLCENTR:
        locked = sorted(FINAL_LOCKED_FIELDS & changed.keys()) if final else []
        if locked:
            raise Forbidden(f"Заявка в статусе «{request.status}»: статус, мастера и деньги меняют только "
                            "администратор и менеджер", code="final_status",
                            errors={name: ["Нельзя изменить"] for name in locked})
        return
    if role == DIRECTOR:
        allowed = DIRECTOR_FIELDS
        who = "директор"
    elif role == MASTER:
        allowed = MASTER_FIELDS
        who = "мастер"
    else:
        raise Forbidden("Недостаточно прав", code="forbidden")
    if final:
        raise Forbidden(f"Заявка в статусе «{request.status}»: {who} не может её изменять", code="final_status")
    forbidden = sorted(changed.keys() - allowed)
    if forbidden:
        raise Forbidden("Недостаточно прав для изменения полей: " + ", ".join(forbidden),
                        code="field_forbidden", errors={name: ["Нельзя изменить"] for name in forbidden})
    if role == MASTER and "status" in changed and changed["status"] not in MASTER_STATUSES:
        raise Forbidden(f"Мастер не может установить статус «{changed['status']}»", code="status_forbidden")


# ---- money -----------------------------------------------------------------------------------------

def check_money(request: Request, changes: dict[str, Any], role: str | None) -> dict[str, Any]:
    """`changes` with its amounts checked and normalised; a master may not enter expenses above the
    result (office roles may record a loss)."""
    changes = dict(changes)
    for name in AMOUNT_LABELS:
        if name in changes:
            changes[name] = entered_amount(name, changes[name])
    if "expenses" in changes and changes["expenses"] is None:
        changes["expenses"] = Decimal("0.00")
    if role == MASTER and ("result" in changes or "expenses" in changes):
        result = changes.get("result", request.result) or Decimal(0)
        expenses = changes.get("expenses", request.expenses) or Decimal(0)
        if expenses > result:
            message = "расходы мастера не могут быть больше итога"
            raise Invalid(f"Расходы: {message}", code="expenses_above_result", errors={"expenses": [message]})
    return changes


# ---- the use cases: create and update, the one place the rules are applied ----------------------------

def create_request(user: User, data: dict[str, Any]) -> Request:
    """A new request by `user` from parsed fields (status Новая unless given); the caller commits."""
    data = dict(data)
    check_city(user, data.get("city_id"))
    check_references(data, user)
    if data.get("request_type_id") is None:
        data["request_type_id"] = default_request_type(data["client_phone"])
    request = Request(created_by_id=user.id)
    apply_changes(request, data, user_id=user.id, role=user.role_name)
    return request


def update_request(user: User, request: Request, data: dict[str, Any]) -> list[str]:
    """`user` saves `data` (parsed; the whole form, as the SPA sends it) onto `request`, loaded FOR
    UPDATE: only what really changed counts, is authorised and is applied. Returns the changed
    fields; the caller commits."""
    changes = real_changes(request, data)
    authorize_update(user.role_name, request, changes)
    if "city_id" in changes:
        check_city(user, changes["city_id"])
    check_references(changes, user)
    return apply_changes(request, changes, user_id=user.id, role=user.role_name)


def income_note(request_id: int) -> str:
    return f"Приход по заявке {request_id}"


def apply_changes(request: Request, changes: dict[str, Any], *, user_id: int | None,
                  source: str = "api", role: str | None = None) -> list[str]:
    """Apply `changes` (parsed; for an update, authorised with authorize_update) to a request loaded
    FOR UPDATE (or a new one).

    Only real changes are applied (real_changes); amounts are checked (check_money, with the rules of
    `role`: None for the system); money is recomputed; one history row per changed field; the income
    booked or removed. Returns the names of the fields that changed. The caller commits.
    """
    if request.id is not None:
        changes = real_changes(request, changes)
    changes = check_money(request, changes, role)
    if "client_phone" in changes:
        raw = changes.pop("client_phone")
        changes["client_phone"] = normalize_phone(raw) or raw
        request.client_phone_raw = raw
    explicit_handover = changes.pop("master_handover", None)
    changes.pop("net_amount", None)  # always derived: the SPA sends a stale value

    before = {name: getattr(request, name) for name in TRACKED_FIELDS}
    was_done = request.status == STATUS_DONE
    for name, value in changes.items():
        setattr(request, name, value)

    if any(name in changes for name in MONEY_INPUTS) or explicit_handover is not None or request.id is None:
        net, handover = request_money(request.result, request.expenses)
        request.net_amount = net
        request.master_handover = explicit_handover if explicit_handover is not None else handover

    is_done = request.status == STATUS_DONE
    if is_done and not was_done:
        request.completed_at = now_utc()

    changed = [name for name in TRACKED_FIELDS if getattr(request, name) != before[name]]
    if request.id is None:
        Session.add(request)
        Session.flush()
        Session.add(RequestEvent(request_id=request.id, user_id=user_id, action="created", source=source))
    elif changed:
        Session.add_all(
            RequestEvent(request_id=request.id, user_id=user_id, action="updated", field=name,
                         old_value=_text(before[name]), new_value=_text(getattr(request, name)), source=source)
            for name in changed
        )
        Session.flush()
    else:
        return changed  # nothing changed: nothing written, the income is as it was
    sync_income(request)
    tell_masters(request, before, changed, actor_id=user_id)  # into the outbox, in this transaction
    return changed


def sync_income(request: Request) -> None:
    """Exactly one income row while the request is Готово with a positive handover; none otherwise
    (a loss the office recorded, or nothing to hand over, books no income).

    An upsert on the unique request_id: two saves racing each other still leave one row. Later
    edits update amount and city but never move the date it was booked on.
    """
    if request.status != STATUS_DONE or request.master_handover is None or request.master_handover <= 0:
        Session.execute(delete(Transaction).where(Transaction.request_id == request.id))
        return
    income_type_id = Session.scalar(select(TransactionType.id).where(TransactionType.name == TRANSACTION_TYPE_INCOME))
    if income_type_id is None:
        raise RuntimeError(f"transaction type {TRANSACTION_TYPE_INCOME!r} is missing")
    booked_on = to_local(request.completed_at or now_utc()).date()
    stmt = insert(Transaction).values(
        city_id=request.city_id,
        transaction_type_id=income_type_id,
        amount=request.master_handover,
        notes=income_note(request.id),
        payment_reason="Сдача денег мастером",
        specified_date=booked_on,
        request_id=request.id,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[Transaction.request_id],
        index_where=Transaction.request_id.isnot(None),
        set_={"amount": stmt.excluded.amount, "city_id": stmt.excluded.city_id, "updated_at": now_utc()},
    )
    Session.execute(stmt)


def record_deletion(request: Request, *, user_id: int | None, source: str = "api") -> None:
    """The history keeps what a deleted request held."""
    snapshot = {name: _text(getattr(request, name)) for name in TRACKED_FIELDS}
    tell_master_of_deletion(request, actor_id=user_id)
    Session.add(RequestEvent(request_id=request.id, user_id=user_id, action="deleted",
                             old_value=json.dumps(snapshot, ensure_ascii=False), source=source))
