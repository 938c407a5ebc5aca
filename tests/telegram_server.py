"""A local server speaking the Telegram Bot API, for the alert, master and digest tests:
sendMessage (JSON), sendPhoto (multipart, the photo kept as bytes) and getUpdates (updates a test
adds with `user_sends`, handed out from the offset asked for, as Telegram does: asking with an
offset confirms, and forgets, every update before it).

It records every request (path and body) and answers like Telegram: `{"ok": true, "result":
{message}}`, or, when a test scripts it, an error first (`fail_next(500)`, `fail_next(429,
retry_after=1)`, optionally for one method only), exactly as the Bot API shapes its errors.
"""
from __future__ import annotations

import email.parser
import email.policy
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
    script: list[tuple[int, dict[str, Any], str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    updates: list[dict[str, Any]] = field(default_factory=list)
    next_update_id: int = 1000

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1,
                  method: str | None = None) -> None:
        description = {429: "Too Many Requests: retry after", 400: "Bad Request: can't parse entities"}
        body: dict[str, Any] = {"ok": False, "error_code": status,
                                "description": description.get(status, "Internal Server Error")}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        with self.lock:
            self.script.extend([(status, body, method)] * times)

    def user_sends(self, chat_id: int, text: str, *, chat_type: str = "private") -> int:
        """A user writes to the bot: an update getUpdates will hand out. Returns its update_id."""
        with self.lock:
            self.next_update_id += 1
            update_id = self.next_update_id
            self.updates.append({"update_id": update_id, "message": {
                "message_id": update_id, "date": int(time.time()), "text": text,
                "chat": {"id": chat_id, "type": chat_type},
                "from": {"id": chat_id, "is_bot": False, "first_name": "Мастер"}}})
        return update_id

    def calls(self, method: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.endswith("/" + method)]

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        """Bodies of the `method` calls Telegram accepted."""
        return [r.body for r in self.calls(method) if r.status == 200]

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Bodies of the messages Telegram accepted (answered 200)."""
        return self.sent("sendMessage")

    def texts(self) -> list[str]:
        return [body["text"] for body in self.delivered]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start() -> FakeTelegram:
    fake: FakeTelegram | None = None

    def parse(content_type: str, raw: bytes) -> dict[str, Any]:
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
            body: dict[str, Any] = {}
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                value = part.get_payload(decode=True)
                body[name] = value if part.get_filename() else value.decode()
            return body
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}

    def answer_for(method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with fake.lock:
            if method == "getUpdates":
                offset = int(body.get("offset") or 0)
                fake.updates = [u for u in fake.updates if u["update_id"] >= offset]  # confirmed: forgotten
                return 200, {"ok": True, "result": list(fake.updates[: int(body.get("limit") or 100)])}
            next_id = sum(1 for r in fake.received if r.status == 200) + 1
        if method == "sendMessage":
            if not body.get("chat_id") or not body.get("text"):
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            return 200, {"ok": True, "result": {
                "message_id": next_id, "chat": {"id": int(body["chat_id"]), "type": "supergroup"},
                "date": 1_700_000_000, "text": body["text"]}}
        if method == "sendPhoto":
            if not body.get("chat_id") or not isinstance(body.get("photo"), bytes):
                return 400, {"ok": False, "error_code": 400,
                             "description": "Bad Request: there is no photo in the request"}
            return 200, {"ok": True, "result": {
                "message_id": next_id, "chat": {"id": int(body["chat_id"]), "type": "supergroup"},
                "date": 1_700_000_000, "photo": [{"file_id": f"photo-{next_id}", "width": 800, "height": 400}]}}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            arrived = time.monotonic()
            body = parse(self.headers.get("Content-Type") or "", raw)
            prefix = f"/bot{TOKEN}/"
            method = self.path[len(prefix):] if self.path.startswith(prefix) else ""
            with fake.lock:
                index = next((i for i, (_s, _b, only) in enumerate(fake.script) if only in (None, method)), None)
                scripted = fake.script.pop(index)[:2] if index is not None and method else None
            status, answer = scripted if scripted is not None else answer_for(method, body)
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
