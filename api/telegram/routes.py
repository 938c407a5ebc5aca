"""Telegram for masters: a one-time code links the master's chat with the bot.

The master asks for a code here and sends it to the bot (the deep link does it in one tap); the
workers read the bot's updates and store the chat (tasks/telegram.py). From then on the master is
told of every job given to them, taken from them, moved, re-addressed or cancelled. `/stop` to the
bot, or DELETE here, unlinks.
"""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from sqlalchemy import select

from api.auth.schemas import MessageSchema
from api.extensions import Blueprint
from api.resources import commit_or_409
from api.security import roles_required
from api.telegram.schemas import TelegramLinkSchema, TelegramStatusSchema
from models.core.db import Session
from models.core.enums import MASTER
from models.people.tables import User
from models.telegram import links
from settings import settings

blp = Blueprint("telegram", __name__, url_prefix="/api/users/me",
                description="Telegram: a master links their chat to get their jobs there")


def _me() -> User:
    return Session.get(User, g.current_user.id, with_for_update={"of": User})


@blp.route("/telegram-link")
class TelegramLink(MethodView):
    @roles_required(MASTER)
    @blp.response(200, TelegramStatusSchema)
    def get(self):
        """Whether the caller's Telegram chat is linked (master, admin)."""
        return {"linked": bool(Session.scalar(select(User.chat_id).where(User.id == g.current_user.id)))}

    @roles_required(MASTER)
    @blp.response(201, TelegramLinkSchema)
    def post(self):
        """A new one-time code (10 minutes; an earlier code stops working) and the bot's deep link.
        Send the code to the bot (or open the link): the chat is linked within seconds (master, admin)."""
        link = links.issue_code(_me())
        commit_or_409()
        deep_link = links.deep_link(settings, link.code)
        bot = f"@{settings.TELEGRAM_BOT_USERNAME.lstrip('@')}" if settings.TELEGRAM_BOT_USERNAME else "боту"
        return {
            "code": link.code, "expires_at": link.expires_at, "deep_link": deep_link,
            "bot_username": settings.TELEGRAM_BOT_USERNAME,
            "instruction": (f"Откройте ссылку {deep_link} и нажмите «Старт»" if deep_link
                            else f"Отправьте код {link.code} {bot} в Telegram") + " — код действует 10 минут.",
        }, 201

    @roles_required(MASTER)
    @blp.response(200, MessageSchema)
    def delete(self):
        """Unlink the caller's chat: no more messages (master, admin)."""
        was_linked = links.unlink_user(_me())
        commit_or_409()
        return {"message": "Telegram отвязан" if was_linked else "Telegram не был привязан"}
