"""Telegram: masters' chats linked with a one-time code, the outbox of messages to them, the bot's API."""
