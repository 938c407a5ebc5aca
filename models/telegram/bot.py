"""The Bot API, as the outbox, the update reader and the digest use it: sendMessage, sendPhoto,
getUpdates, each answered as an `Answer` that says whether trying again can help and when.

Every send first takes a slot of the bot's pace (TELEGRAM_MAX_PER_SECOND), kept in Redis so that
every worker process sending for the same bot shares it; a 429 pauses the whole bot for Telegram's
`retry_after`. The token is part of the URL: it is never logged or stored, and is masked in any
error text kept.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import requests

from models.core.redis import get_redis, key

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 300.0


@dataclass(frozen=True)
class Answer:
    ok: bool
    status: int | None = None  # None: no HTTP answer (network error)
    result: Any = None
    error: str | None = None
    retry_after: float | None = None  # what Telegram asked for with a 429

    @property
    def retryable(self) -> bool:
        """A network error, a 429 or a 5xx: the same call may succeed later. A 400/401/403 cannot."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def message_id(self) -> int | None:
        return self.result.get("message_id") if isinstance(self.result, dict) else None


def bot_id(token: str | None) -> int:
    """The bot's number: the part of the token before the colon (0 when it has none)."""
    head = (token or "").split(":", 1)[0]
    return int(head) if head.isdigit() else 0


class Pace:
    """At most `per_second` sends a second for one bot, across processes: each send takes a slot
    (a Redis key that lives 1/per_second s); a 429 holds every send until its retry_after."""

    def __init__(self, bot: int, per_second: int):
        self.slot_key = key("telegram", "slot", str(bot))
        self.pause_key = key("telegram", "pause", str(bot))
        self.slot_ms = max(1, math.ceil(1000 / max(1, per_second)))

    def pause(self, seconds: float) -> None:
        get_redis().set(self.pause_key, "1", px=max(1, int(seconds * 1000)))

    def paused_for(self) -> float:
        return max(0, get_redis().pttl(self.pause_key)) / 1000

    def acquire(self, max_wait: float) -> bool:
        """Wait for a slot; False when none comes within `max_wait` seconds (the bot is paused)."""
        redis = get_redis()
        deadline = time.monotonic() + max_wait
        while True:
            paused = self.paused_for()
            if not paused and redis.set(self.slot_key, "1", nx=True, px=self.slot_ms):
                return True
            wait = paused or max(0.005, redis.pttl(self.slot_key) / 1000)
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)


class BotApi:
    def __init__(self, s: Any):
        self.s = s
        self.bot = bot_id(s.TELEGRAM_BOT_TOKEN)
        self.pace = Pace(self.bot, s.TELEGRAM_MAX_PER_SECOND)

    @property
    def configured(self) -> bool:
        return bool(self.s.TELEGRAM_BOT_TOKEN)

    def _url(self, method: str) -> str:
        return f"{self.s.TELEGRAM_API_URL.rstrip('/')}/bot{self.s.TELEGRAM_BOT_TOKEN}/{method}"

    def call(self, method: str, *, timeout: float | None = None, **kwargs: Any) -> Answer:
        """One call (`json=` or `data=`/`files=` as requests takes them); never raises."""
        if not self.configured:
            return Answer(False, 400, error="Telegram не настроен (TELEGRAM_BOT_TOKEN)")
        seconds = timeout or self.s.TELEGRAM_TIMEOUT_SECONDS
        try:
            response = requests.post(self._url(method), timeout=seconds, **kwargs)
        except requests.RequestException as exc:
            return Answer(False, None, error=f"{type(exc).__name__}: {self.s.mask(str(exc))[:300]}")
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        if response.status_code == 200 and payload.get("ok"):
            return Answer(True, 200, result=payload.get("result"))
        description = self.s.mask(str(payload.get("description") or ""))[:300]
        retry_after = None
        if response.status_code == 429:
            try:
                retry_after = min(float((payload.get("parameters") or {}).get("retry_after")), MAX_RETRY_AFTER_SECONDS)
            except (TypeError, ValueError):
                retry_after = 1.0
        error = f"HTTP {response.status_code}" + (f": {description}" if description else "")
        return Answer(False, response.status_code, error=error, retry_after=retry_after)

    def _send(self, method: str, max_wait: float, **kwargs: Any) -> Answer:
        if not self.pace.acquire(max_wait):
            return Answer(False, 429, error="отправка приостановлена (429 от Telegram)",
                          retry_after=max(self.pace.paused_for(), 0.1))
        answer = self.call(method, **kwargs)
        if answer.status == 429:
            self.pace.pause(answer.retry_after or 1.0)
            log.warning("telegram: %s answered 429, every send waits %.1f s", method, answer.retry_after or 1.0)
        return answer

    def send_message(self, chat_id: str, text_html: str, *, max_wait: float = 5.0) -> Answer:
        return self._send("sendMessage", max_wait, json={
            "chat_id": chat_id, "text": text_html, "parse_mode": "HTML", "disable_web_page_preview": True})

    def send_photo(self, chat_id: str, png: bytes, caption_html: str = "", *, max_wait: float = 5.0) -> Answer:
        return self._send("sendPhoto", max_wait, data={"chat_id": chat_id, "caption": caption_html,
                                                       "parse_mode": "HTML"},
                          files={"photo": ("chart.png", png, "image/png")})

    def get_updates(self, offset: int, *, limit: int = 100) -> Answer:
        """The updates from `offset` on, without waiting (no long poll: a beat task asks often)."""
        return self.call("getUpdates", json={"offset": offset, "limit": limit, "timeout": 0,
                                             "allowed_updates": ["message"]})
