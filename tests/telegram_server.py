"""A local server speaking the Telegram Bot API's sendMessage, for the alert tests.

It records every request (path and JSON body) and answers like Telegram: `{"ok": true, "result":
{message}}`, or, when a test scripts it, an error first (`fail_next(500)`, `fail_next(429,
retry_after=1)`), exactly as the Bot API shapes its errors.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "123456:TEST-token_value"
CHAT_ID = "-1001234567890"


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    status: int  # what the server answered
    at: float  # time.monotonic() when it arrived


@dataclass
class FakeTelegram:
    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        description = {429: "Too Many Requests: retry after", 400: "Bad Request: can't parse entities"}
        body: dict[str, Any] = {"ok": False, "error_code": status,
                                "description": description.get(status, "Internal Server Error")}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        with self.lock:
            self.script.extend([(status, body)] * times)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Bodies of the messages Telegram accepted (answered 200)."""
        with self.lock:
            return [r.body for r in self.received if r.status == 200]

    def texts(self) -> list[str]:
        return [body["text"] for body in self.delivered]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start() -> FakeTelegram:
    fake: FakeTelegram | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            arrived = time.monotonic()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            with fake.lock:
                scripted = fake.script.pop(0) if fake.script else None
                next_id = sum(1 for r in fake.received if r.status == 200) + 1
            if not self.path.endswith(f"/bot{TOKEN}/sendMessage"):
                status, answer = 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            elif scripted is not None:
                status, answer = scripted
            elif not body.get("chat_id") or not body.get("text"):
                status, answer = 400, {"ok": False, "error_code": 400,
                                       "description": "Bad Request: message text is empty"}
            else:
                status, answer = 200, {"ok": True, "result": {
                    "message_id": next_id, "chat": {"id": int(body["chat_id"]), "type": "supergroup"},
                    "date": 1_700_000_000, "text": body["text"]}}
            with fake.lock:
                fake.received.append(Received(self.path, body, status, arrived))
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakeTelegram(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake
