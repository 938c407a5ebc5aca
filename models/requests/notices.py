"""What a master is told in Telegram when their request changes, and when.

Called by the use cases (rules.apply_changes, rules.record_deletion) in the transaction of the
change: the message goes into the outbox with it, or not at all. One message per save:

- the request is given to a master (created with one, assigned or reassigned): the new master gets
  the job (number, address, time in the business zone, problem, client's name and phone), the
  master it was taken from is told so (number and address only: the client is no longer theirs);
- its meeting time or address changes: its master gets the job again, with what changed;
- it is cancelled (Отказ, НеЗаказ) or deleted: its master is told.

Nobody is told of their own change (a master who cancels does not hear about it), and only masters
with a linked chat get a row.
"""
from __future__ import annotations

import html
from typing import Any

from sqlalchemy import select

from models.core.business_time import to_local
from models.core.db import Session
from models.core.enums import FINAL_STATUSES, STATUS_GROUPS
from models.people.tables import User
from models.requests.tables import Request
from models.telegram.outbox import queue_message

CANCELLED = frozenset(STATUS_GROUPS["cancelled"])
WATCHED = ("meeting_date", "address")
NOT_SET = "не указано"


CLIP = 500  # characters of one field: a message stays well within Telegram's 4096


def _e(value: Any) -> str:
    text = str(value)
    if len(text) > CLIP:
        text = text[:CLIP - 1] + "…"
    return html.escape(text, quote=False)


def _when(value) -> str:
    return to_local(value).strftime("%d.%m.%Y %H:%M") if value is not None else NOT_SET


def _phone(request: Request) -> str:
    raw = (request.client_phone_raw or "").strip()
    if raw:
        return raw
    digits = request.client_phone or ""
    return f"+{digits}" if digits.isdigit() else digits or NOT_SET


def job_text(request: Request, title: str, before: dict[str, Any] | None = None) -> str:
    """The whole job; with `before`, the old meeting time and address beside the changed ones."""
    before = before or {}
    when = _e(_when(request.meeting_date))
    if "meeting_date" in before:
        when += f" (было {_e(_when(before['meeting_date']))})"
    address = _e(request.address or NOT_SET)
    if "address" in before:
        address += f" (было: {_e(before['address'] or NOT_SET)})"
    client = ", ".join(part for part in (_e(request.client_name or "").strip(), _e(_phone(request))) if part)
    return "\n".join((
        f"<b>{_e(title)}</b>",
        f"📍 Адрес: {address}",
        f"🕒 Время: {when}",
        f"🔧 Проблема: {_e(request.problem or NOT_SET)}",
        f"👤 Клиент: {client}",
    ))


def short_text(request: Request, title: str) -> str:
    return f"<b>{_e(title)}</b>\n📍 Адрес: {_e(request.address or NOT_SET)}\n🕒 Время: {_e(_when(request.meeting_date))}"


def _linked(user_ids: set[int]) -> set[int]:
    if not user_ids:
        return set()
    return set(Session.scalars(select(User.id).where(User.id.in_(user_ids), User.chat_id.isnot(None))
                               .where(User.chat_id != "")))


def tell_masters(request: Request, before: dict[str, Any], changed: list[str], *, actor_id: int | None) -> None:
    """Queue the messages a saved change of `request` means (`before`: the tracked fields before it;
    `changed`: the fields that changed). In the caller's transaction."""
    old_master, new_master = before.get("master_id"), request.master_id
    messages: list[tuple[int, str, str]] = []  # (user, kind, text)
    number = f"Заявка №{request.id}"
    if "master_id" in changed:
        if old_master is not None:
            taken = "передана другому мастеру" if new_master is not None else "снята с вас"
            messages.append((old_master, "taken_away", short_text(request, f"↩️ {number} {taken}")))
        if new_master is not None and request.status not in FINAL_STATUSES:
            messages.append((new_master, "assigned", job_text(request, f"🆕 Новая заявка №{request.id}")))
    elif new_master is not None:
        if "status" in changed and request.status in CANCELLED and before.get("status") not in CANCELLED:
            messages.append((new_master, "cancelled",
                             short_text(request, f"❌ {number} отменена (статус «{request.status}»)")))
        elif any(name in changed for name in WATCHED) and request.status not in FINAL_STATUSES:
            what = [label for name, label in (("meeting_date", "время"), ("address", "адрес")) if name in changed]
            messages.append((new_master, "changed", job_text(
                request, f"✏️ {number}: изменено {' и '.join(what)}",
                {name: before[name] for name in WATCHED if name in changed})))
    recipients = _linked({user for user, _kind, _text in messages if user != actor_id})
    for user, kind, text_html in messages:
        if user in recipients:
            queue_message(text_html, kind=kind, user_id=user, request_id=request.id)


def tell_master_of_deletion(request: Request, *, actor_id: int | None) -> None:
    master = request.master_id
    if master is None or master == actor_id or request.status in FINAL_STATUSES or not _linked({master}):
        return
    queue_message(short_text(request, f"❌ Заявка №{request.id} удалена"), kind="deleted", user_id=master,
                  request_id=request.id)
