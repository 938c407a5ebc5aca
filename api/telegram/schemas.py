"""Schemas of the Telegram link API."""
from __future__ import annotations

from marshmallow import Schema, fields


class TelegramLinkSchema(Schema):
    code = fields.String(metadata={"description": "one-time code to send the bot (8 characters)",
                                   "example": "K7RM2QXD"})
    expires_at = fields.DateTime(metadata={"description": "the code stops working then (10 minutes)"})
    deep_link = fields.String(allow_none=True, metadata={
        "description": "t.me link that opens the bot with the code filled in (null while TELEGRAM_BOT_USERNAME "
                       "is not set)", "example": "https://t.me/leadline_bot?start=K7RM2QXD"})
    bot_username = fields.String(allow_none=True)
    instruction = fields.String(metadata={"description": "what to do, in Russian, for the user"})


class TelegramStatusSchema(Schema):
    linked = fields.Boolean(metadata={"description": "the user's chat is linked: job messages reach it"})
