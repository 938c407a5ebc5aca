"""Rules of a request that hold whoever changes it (API, telephony worker, recordings matcher):
server-side money, the history of every change, and the income booked on Готово exactly once."""
from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from models.crm import Request, RequestEvent, Transaction
from models.db import Session
from models.enums import STATUS_DONE, TRANSACTION_TYPE_INCOME
from models.lookups import TransactionType
from models.money import request_money
from models.phones import normalize_phone
from models.timez import now_utc, to_local

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


def income_note(request_id: int) -> str:
    return f"Приход по заявке {request_id}"


def apply_changes(request: Request, changes: dict[str, Any], *, user_id: int | None,
                  source: str = "api") -> list[str]:
    """Apply `changes` (already validated and authorised) to a request loaded FOR UPDATE.

    Recomputes money, records one history row per changed field, books or removes the income.
    Returns the names of the fields that changed. The caller commits.
    """
    changes = dict(changes)
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
    else:
        Session.add_all(
            RequestEvent(request_id=request.id, user_id=user_id, action="updated", field=name,
                         old_value=_text(before[name]), new_value=_text(getattr(request, name)), source=source)
            for name in changed
        )
        Session.flush()
    sync_income(request)
    return changed


def sync_income(request: Request) -> None:
    """Exactly one income row while the request is Готово; none otherwise.

    An upsert on the unique request_id: two saves racing each other still leave one row. Later
    edits update amount and city but never move the date it was booked on.
    """
    if request.status != STATUS_DONE:
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
    Session.add(RequestEvent(request_id=request.id, user_id=user_id, action="deleted",
                             old_value=json.dumps(snapshot, ensure_ascii=False), source=source))
