"""Linking a user's Telegram chat: a one-time code from the API, sent to the bot, read from the
bot's updates (getUpdates with the offset kept in telegram_bot_state; no public webhook needed).

The updates of one call and the new offset are committed together, so each update is acted on
once. The chat is stored in users.chat_id (the field the old system kept by hand); `/stop` in the
chat clears it. The bot answers through the outbox, like every other message.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from models.core.business_time import now_utc
from models.core.db import Session, unit_of_work
from models.people.tables import User
from models.telegram.bot import BotApi
from models.telegram.outbox import queue_message
from models.telegram.tables import TelegramBotState, TelegramLinkCode

log = logging.getLogger(__name__)

CODE_MINUTES = 10
# No 0/O, 1/I: read aloud or retyped without doubt.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # pragma: allowlist secret - an alphabet, not a secret
CODE_LENGTH = 8
CODE_RE = re.compile(rf"^[{CODE_ALPHABET}]{{{CODE_LENGTH}}}$")

REPLY_LINKED = ("✅ Telegram привязан к учётной записи «{name}». Сюда будут приходить ваши заявки: "
                "назначения, изменения времени и адреса, отмены.\nОтключить: /stop")
REPLY_BAD_CODE = "Код не подошёл или устарел. Получите новый код в приложении (он действует 10 минут)."
REPLY_HELLO = ("Здравствуйте! Чтобы получать заявки, получите код в приложении "
               "(«Привязать Telegram») и отправьте его сюда.")
REPLY_STOPPED = "Уведомления отключены. Чтобы включить снова, получите новый код в приложении."
REPLY_NOT_LINKED = "Этот чат не привязан ни к одной учётной записи."


@dataclass(frozen=True)
class LinkCode:
    code: str
    expires_at: datetime


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def issue_code(user: User, *, now: datetime | None = None) -> LinkCode:
    """A new one-time code for `user` (any earlier one stops working); the caller commits."""
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    expires_at = (now or now_utc()) + timedelta(minutes=CODE_MINUTES)
    stmt = insert(TelegramLinkCode).values(user_id=user.id, code_hash=_hash(code), expires_at=expires_at)
    Session.execute(stmt.on_conflict_do_update(
        index_elements=[TelegramLinkCode.user_id],
        set_={"code_hash": stmt.excluded.code_hash, "expires_at": stmt.excluded.expires_at,
              "created_at": now or now_utc()}))
    return LinkCode(code, expires_at)


def unlink_user(user: User) -> bool:
    """Forget the user's chat and any unused code; True when a chat was linked. The caller commits."""
    Session.execute(delete(TelegramLinkCode).where(TelegramLinkCode.user_id == user.id))
    was_linked = bool(user.chat_id)
    user.chat_id = None
    return was_linked


def deep_link(s: Any, code: str) -> str | None:
    return f"https://t.me/{s.TELEGRAM_BOT_USERNAME.lstrip('@')}?start={code}" if s.TELEGRAM_BOT_USERNAME else None


# ---- the bot's updates ---------------------------------------------------------------------------------

def _code_in(message_text: str) -> str | None:
    """The code of "/start CODE" (the deep link) or of a message that is just the code."""
    words = message_text.split()
    if words and words[0].split("@")[0].lower() == "/start":
        words = words[1:]
    if len(words) != 1:
        return None
    candidate = words[0].upper()
    return candidate if CODE_RE.match(candidate) else None


def _link(chat: str, code: str) -> str:
    user_id = Session.scalar(
        delete(TelegramLinkCode)
        .where(TelegramLinkCode.code_hash == _hash(code), TelegramLinkCode.expires_at > now_utc())
        .returning(TelegramLinkCode.user_id))
    if user_id is None:
        return REPLY_BAD_CODE
    # One account per chat: whoever had it before no longer gets its messages.
    Session.execute(update(User).where(User.chat_id == chat, User.id != user_id).values(chat_id=None))
    user = Session.get(User, user_id)
    user.chat_id = chat
    log.info("telegram: user %d linked a chat", user_id)
    return REPLY_LINKED.format(name=user.full_name)


def _stop(chat: str) -> str:
    unlinked = Session.execute(update(User).where(User.chat_id == chat).values(chat_id=None)
                               .returning(User.id)).scalars().all()
    for user_id in unlinked:
        log.info("telegram: user %d unlinked their chat (/stop)", user_id)
    return REPLY_STOPPED if unlinked else REPLY_NOT_LINKED


def handle_update(update_: dict[str, Any]) -> None:
    """Act on one update in the caller's transaction: private messages only (the bot may also sit
    in the managers' group)."""
    message = update_.get("message")
    if not isinstance(message, dict):
        return
    chat = message.get("chat") or {}
    message_text = message.get("text")
    if chat.get("type") != "private" or chat.get("id") is None or not isinstance(message_text, str):
        return
    chat_id = str(chat["id"])
    command = message_text.strip().split()[0].split("@")[0].lower() if message_text.strip() else ""
    if command == "/stop":
        reply = _stop(chat_id)
    else:
        code = _code_in(message_text)
        reply = _link(chat_id, code) if code else REPLY_HELLO
    queue_message(reply, kind="reply", chat_id=chat_id)


def read_updates(s: Any) -> dict[str, Any]:
    """One getUpdates call from the stored offset; its updates acted on and the offset moved past
    them in one transaction."""
    bot = BotApi(s)
    if not bot.configured:
        return {"skipped": "Telegram не настроен"}
    with unit_of_work(read_only=True):
        offset = Session.scalar(select(TelegramBotState.update_offset).where(TelegramBotState.bot_id == bot.bot)) or 0
    answer = bot.get_updates(offset)
    if not answer.ok or not isinstance(answer.result, list):
        log.warning("telegram: getUpdates failed: %s", answer.error)
        return {"error": answer.error}
    updates = [u for u in answer.result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]
    if not updates:
        return {"updates": 0, "offset": offset}
    new_offset = max(u["update_id"] for u in updates) + 1
    with unit_of_work():
        # The row locked first: two readers (never at once under the task's lock) could not both apply.
        stmt = insert(TelegramBotState).values(bot_id=bot.bot, update_offset=offset)
        Session.execute(stmt.on_conflict_do_nothing(index_elements=[TelegramBotState.bot_id]))
        stored = Session.scalar(select(TelegramBotState.update_offset)
                                .where(TelegramBotState.bot_id == bot.bot).with_for_update())
        if stored != offset:
            return {"skipped": "another reader moved the offset"}
        for update_ in sorted(updates, key=lambda u: u["update_id"]):
            handle_update(update_)
        Session.execute(update(TelegramBotState).where(TelegramBotState.bot_id == bot.bot)
                        .values(update_offset=new_offset, updated_at=now_utc()))
    return {"updates": len(updates), "offset": new_offset}
