"""A local HTTP server speaking Mango Office's VPBX API, for the tests (signature checked).

- POST /vpbx/queries/recording/post: 302 to a one-time file URL (GET /files/<token>) for a known
  recording, 404 (result 3320) for an unknown one, 403 for `deleted-in-the-cabinet`.
- POST /vpbx/commands/callback: records the command (its `json` parsed) and answers {"result": 1000},
  or the next status queued with `fail_next` (a 503, a 429 ...).
Any request whose key or `sign` = sha256(key + json + salt) is wrong gets 401, as Mango does.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs

from tests.telephony_support import KEY, SALT


class MangoApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, recordings: dict[str, bytes] | None = None):
        super().__init__(("127.0.0.1", 0), MangoHandler)
        self.recordings = recordings or {}
        self.links: dict[str, str] = {}
        self.log: list[tuple[str, str, int]] = []
        self.commands: list[dict] = []  # every commands/callback accepted: the parsed json
        self.forms: list[dict[str, str]] = []  # every commands/callback form as sent
        self.answers: list[tuple[int, dict]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/vpbx/"

    def fail_next(self, status: int, body: dict | None = None) -> None:
        """The next command is answered with this status (and body) instead of being accepted."""
        self.answers.append((status, body or {"result": 5001 if status >= 500 else 3100}))


class MangoHandler(BaseHTTPRequestHandler):
    server: MangoApi

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._answer(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def do_POST(self) -> None:
        fields = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
        raw = fields.get("json", "")
        signed = fields.get("vpbx_api_key") == KEY and \
            fields.get("sign") == hashlib.sha256((KEY + raw + SALT).encode()).hexdigest()
        if self.path == "/vpbx/commands/callback":
            self.callback_command(fields, raw, signed)
        elif self.path == "/vpbx/queries/recording/post":
            self.recording(raw, signed)
        else:
            self.server.log.append(("POST", self.path, 404))
            self._json(404, {"result": 4001})

    def callback_command(self, fields: dict, raw: str, signed: bool) -> None:
        with self.server.lock:
            self.server.forms.append(fields)
            if not signed:
                status, body = 401, {"result": 3102}
            elif self.server.answers:
                status, body = self.server.answers.pop(0)
            else:
                status, body = 200, {"result": 1000}
                self.server.commands.append(json.loads(raw))
            self.server.log.append(("POST", self.path, status))
        self._json(status, body)

    def recording(self, raw: str, signed: bool) -> None:
        request = json.loads(raw) if signed else {}
        if not signed:
            status = 401
        else:
            status = 302 if request.get("action") == "download" and request["recording_id"] in self.server.recordings \
                else 403 if request["recording_id"] == "deleted-in-the-cabinet" else 404
        self.server.log.append(("POST", self.path, status))
        if status == 302:
            token = secrets.token_urlsafe(12)
            self.server.links[token] = request["recording_id"]
            self._answer(302, headers={"Location": f"/files/{token}"})
        else:
            self._json(status, {"result": 3320})

    def do_GET(self) -> None:
        token = self.path.rsplit("/", 1)[-1]
        recording_id = self.server.links.pop(token, None)  # one-time link
        status = 200 if recording_id is not None else 404
        self.server.log.append(("GET", "/files/<token>", status))
        if status == 200:
            self._answer(200, self.server.recordings[recording_id], {"Content-Type": "audio/mpeg"})
        else:
            self._answer(404)


@contextmanager
def running(recordings: dict[str, bytes] | None = None) -> Iterator[MangoApi]:
    server = MangoApi(recordings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
