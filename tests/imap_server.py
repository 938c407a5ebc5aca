"""A throw-away Dovecot IMAP server on a loopback port, and the Mango-style mails the tests put in it.

`DovecotServer(root)` writes a private configuration under `root` (its own base_dir, so a system
instance is never touched; plain IMAP on 127.0.0.1 and a free port; one passwd-file user; maildir
under `root`; log to `root/dovecot.log`), starts it, and stops it at the end. `stop()` and `start()`
again bring it down and back on the same port. Used by the tests (fixture `imap_server` in the
recordings tests) and by bench/recordings.py.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Iterable

from imapclient import IMAPClient

from embedded import free_port

USER = "zapisi@leadline.test"


def _mail_owner() -> tuple[str, int, int]:
    """Dovecot refuses to run mail processes as root: under root the maildir belongs to `mail`."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    entry = pwd.getpwnam("mail")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


class DovecotServer:
    def __init__(self, root: Path, binary: str = "dovecot", port: int | None = None):
        self.root = Path(root)
        self.binary = binary
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.user = USER
        self.password = secrets.token_urlsafe(12)
        self.config = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"
        self._write_config()

    def _write_config(self) -> None:
        owner, uid, gid = _mail_owner()
        for folder in ("run", "state", "mail"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        os.chmod(self.root / "users", 0o644)
        os.chown(self.root / "mail", uid, gid)
        self.config.write_text(f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = leadline-test-{self.port}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {self.log}
info_log_path = {self.log}
mail_location = maildir:{self.root}/mail/%n
first_valid_uid = {min(uid, 500)}
first_valid_gid = {min(gid, 500)}
default_vsz_limit = 1G
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/users
}}
userdb {{
  driver = static
  args = uid={owner} gid={gid} home={self.root}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        # Dovecot forks into the background: its output goes to a file, not to a pipe we would wait on.
        errors = self.root / "start.err"
        with open(errors, "wb") as sink:
            done = subprocess.run([self.binary, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                  stdout=sink, stderr=sink, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {errors.read_text(errors='replace').strip()}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot is not answering on port {self.port}: {self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        subprocess.run([self.binary, "-c", str(self.config), "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                if not (self.root / "run" / "master.pid").exists():
                    return
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- content ------------------------------------------------------------------------------------

    def client(self) -> IMAPClient:
        client = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        client.login(self.user, self.password)
        return client

    def append(self, messages: Iterable[bytes | EmailMessage], folder: str = "INBOX", msg_time=None) -> None:
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for message in messages:
                raw = message if isinstance(message, bytes) else message.as_bytes()
                client.append(folder, raw, msg_time=msg_time)

    def recreate_folder(self, folder: str) -> None:
        """Delete and create the folder again: Dovecot gives it a new UIDVALIDITY."""
        if folder.upper() == "INBOX":
            raise ValueError("Dovecot neither deletes nor renames INBOX: use another folder")
        with self.client() as client:
            client.delete_folder(folder)
            client.create_folder(folder)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as client:
            return int(client.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def count(self, folder: str = "INBOX") -> int:
        with self.client() as client:
            if not client.folder_exists(folder):
                return 0
            return int(client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])


# ---- Mango-style mails ----------------------------------------------------------------------------------

def mp3_bytes(size: int, seed: int) -> bytes:
    """An MP3-looking body (ID3 header) of `size` bytes, different for every seed."""
    header = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    return header + _noise(size - len(header), seed)


def wav_bytes(size: int, seed: int) -> bytes:
    header = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt " + b"\x10\x00\x00\x00\x01\x00\x01\x00"
    return header + _noise(size - len(header), seed)


def _noise(size: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(max(size, 0))


def recording_name(when, from_phone: str, to_phone: str, ext: str = "mp3") -> str:
    """`YYYY.MM.DD__HH-MM-SS__<from>__<to>.<ext>` from a wall-clock time in the business time zone."""
    return f"{when:%Y.%m.%d__%H-%M-%S}__{from_phone}__{to_phone}.{ext}"


def mango_mail(attachments: list[tuple[str, bytes]], *, subject: str = "Запись разговора",
               name_encoding: str | None = None, message_id: str | None = None,
               body: str | None = None) -> EmailMessage:
    """A mail as Mango's recording rules send it: a short text and the recordings attached.

    name_encoding: None (plain `filename="..."`), "rfc2231" (`filename*=utf-8''...`) or "rfc2047"
    (`filename="=?utf-8?b?...?="`).
    """
    message = EmailMessage()
    message["From"] = "Mango Office <auto-mailer@mangotele.com>"
    message["To"] = USER
    message["Subject"] = subject
    message["Date"] = format_datetime(__import__("datetime").datetime.now().astimezone())
    message["Message-ID"] = message_id or make_msgid(domain="mangotele.com")
    message.set_content(body or "Во вложении запись разговора.")
    for filename, data in attachments:
        maintype, subtype = ("audio", "wav") if filename.lower().endswith(".wav") else ("audio", "mpeg")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        part = message.get_payload()[-1]
        if name_encoding == "rfc2231":
            del part["Content-Disposition"]
            part["Content-Disposition"] = _rfc2231_disposition(filename)
            part.set_param("name", filename, header="Content-Type")
        elif name_encoding == "rfc2047":
            import base64

            encoded = "=?utf-8?b?" + base64.b64encode(filename.encode()).decode() + "?="
            del part["Content-Disposition"]
            part["Content-Disposition"] = f'attachment; filename="{encoded}"'
    return message


def _rfc2231_disposition(filename: str) -> str:
    from urllib.parse import quote

    encoded = quote(filename, safe="")
    half = len(encoded) // 2
    # Split in two continuations, as long names are in real mail.
    return f"attachment; filename*0*=utf-8''{encoded[:half]}; filename*1*={encoded[half:]}"


def plain_mail(subject: str, body: str = "Здравствуйте!", attachment: tuple[str, bytes] | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "someone@example.test"
    message["To"] = USER
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.test")
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return message


# ---- the pytest fixture -----------------------------------------------------------------------------------

def start_dovecot(binary: str) -> DovecotServer:
    """A started server under a fresh folder of /tmp that Dovecot's mail user may enter."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="leadline-dovecot-"))
    os.chmod(root, 0o755)
    server = DovecotServer(root, binary)
    server.start()
    return server


def imap_server_fixture():
    import pytest

    @pytest.fixture(scope="session")
    def imap_server():
        from tests.debian import ensure_tool

        server = start_dovecot(ensure_tool("dovecot", "dovecot-imapd"))
        try:
            yield server
        finally:
            server.remove()

    return imap_server


def mailbox_settings(server: DovecotServer, folder: str, **extra):
    """Settings pointing the import at `folder` of the server (plain IMAP), for the length of a block."""
    from tests.telephony_support import overridden

    values = dict(IMAP_HOST=server.host, IMAP_PORT=server.port, IMAP_USER=server.user,
                  IMAP_PASSWORD=server.password, IMAP_SECURITY="plain", IMAP_FOLDER=folder,
                  IMAP_TIMEOUT_SECONDS=10, IMAP_PROCESSED_FOLDER=None, IMAP_MARK_SEEN=False)
    values.update(extra)
    return overridden(**values)
