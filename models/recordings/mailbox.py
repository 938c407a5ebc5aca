"""The recordings mailbox: its IMAP client, and the state and status of its import.

Mango mails each call recording to a mailbox. Reading it (tasks/recordings.py runs the import):

- `connect()` logs in with imapclient (ssl / starttls / plain by IMAP_SECURITY, connect and read
  timeouts); every failure is an `ImportFailure` whose message is for people (Russian, no secrets).
- `walk()` names the parts of a message from its BODYSTRUCTURE; `part_chunks()` fetches one part in
  ranges and `Decoder` undoes its transfer encoding chunk by chunk, so an attachment is never held
  in memory whole.
- `mailbox_states` keeps UIDVALIDITY and the last UID examined per mailbox and folder (`state()`,
  `record_run()`); one import runs at a time under a Redis lock (`import_lock()`, `import_running()`);
  every run is a job row of kind IMPORT_JOB_KIND. That is what GET /api/recordings/status shows.
"""
from __future__ import annotations

import base64
import binascii
import socket
import ssl
from dataclasses import dataclass
from typing import Iterator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.util import to_unicode
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from models.core.db import Session
from models.core.redis import SingleFlight, get_redis, key
from models.recordings import rules
from models.recordings.tables import MailboxState
from settings import settings

IMPORT_JOB_KIND = "recordings.import"
IMPORT_LOCK = key("lock", "recordings-import")
IMPORT_SOFT_LIMIT = max(settings.TASK_SOFT_TIME_LIMIT, 300)  # the import task's time limits
IMPORT_HARD_LIMIT = max(settings.TASK_TIME_LIMIT, IMPORT_SOFT_LIMIT + 60)
LOCK_TTL = IMPORT_HARD_LIMIT + 60
PART_CHUNK = 1024 * 1024  # encoded bytes of an attachment read per FETCH


class ImportFailure(Exception):
    """The run cannot go on; the message is for people (Russian, no secrets)."""


def configured() -> bool:
    return bool(settings.IMAP_HOST and settings.IMAP_USER and settings.IMAP_PASSWORD)


def mailbox_name() -> str:
    return f"{settings.IMAP_USER}@{settings.IMAP_HOST}"


def import_lock(token: str | None = None) -> SingleFlight:
    """One import at a time; a manual run's job id as the token lets its redelivery go on."""
    return SingleFlight(IMPORT_LOCK, LOCK_TTL, token)


def import_running() -> bool | None:
    """Whether an import holds the lock; None when Redis cannot say (the status page still answers)."""
    try:
        return bool(get_redis().exists(IMPORT_LOCK))
    except RedisError:
        return None


# ---- the state of the mailbox --------------------------------------------------------------------------

def state() -> MailboxState:
    """The configured mailbox and folder's row (created at the first run), in the caller's transaction."""
    mailbox, folder = mailbox_name(), settings.IMAP_FOLDER
    Session.execute(pg_insert(MailboxState).values(mailbox=mailbox, folder=folder, last_uid=0)
                    .on_conflict_do_nothing())
    return Session.scalars(select(MailboxState).where(MailboxState.mailbox == mailbox,
                                                      MailboxState.folder == folder)).one()


def current_state() -> MailboxState | None:
    """The configured mailbox and folder's row as the last run left it (None before the first run)."""
    return Session.scalar(select(MailboxState).where(MailboxState.mailbox == mailbox_name(),
                                                     MailboxState.folder == settings.IMAP_FOLDER))


def record_run(error: str | None) -> None:
    """When the import last ran and how it ended, in the caller's transaction."""
    mailbox, folder = mailbox_name(), settings.IMAP_FOLDER
    Session.execute(
        pg_insert(MailboxState).values(mailbox=mailbox, folder=folder, last_uid=0, last_run_at=func.now(),
                                       last_error=error)
        .on_conflict_do_update(index_elements=[MailboxState.mailbox, MailboxState.folder],
                               set_={"last_run_at": func.now(), "last_error": error})
    )


# ---- IMAP ------------------------------------------------------------------------------------------------

def connect() -> IMAPClient:
    """A logged-in client, by IMAP_SECURITY; every failure is an ImportFailure with a readable reason."""
    host, port, security = settings.IMAP_HOST, settings.IMAP_PORT, settings.IMAP_SECURITY
    timeout = settings.IMAP_TIMEOUT_SECONDS
    from imapclient import SocketTimeout

    where = f"{host}:{port}"
    try:
        context = ssl.create_default_context()
        client = IMAPClient(host, port, ssl=security == "ssl", ssl_context=context if security == "ssl" else None,
                            timeout=SocketTimeout(connect=min(timeout, 15), read=timeout))
    except ssl.SSLError:
        raise ImportFailure(f"Не удалось установить защищённое соединение (SSL) с почтовым сервером {where}") from None
    except (socket.timeout, TimeoutError):
        raise ImportFailure(f"Почтовый сервер {where} не ответил вовремя") from None
    except socket.gaierror:
        raise ImportFailure(f"Почтовый сервер {host} не найден (ошибка DNS)") from None
    except ConnectionRefusedError:
        raise ImportFailure(f"Почтовый сервер {where} недоступен: соединение отклонено") from None
    except (OSError, IMAPClientError) as exc:
        raise ImportFailure(f"Почтовый сервер {where} недоступен: {type(exc).__name__}") from None
    try:
        if security == "starttls":
            try:
                client.starttls(ssl.create_default_context())
            except (ssl.SSLError, IMAPClientError, OSError):
                raise ImportFailure(f"Почтовый сервер {where} не поддерживает STARTTLS или отверг защищённое "
                                    "соединение") from None
        try:
            client.login(settings.IMAP_USER, settings.IMAP_PASSWORD)
        except LoginError:
            raise ImportFailure("Почтовый сервер отклонил вход: проверьте IMAP_USER и IMAP_PASSWORD") from None
        except IMAPClientError:
            raise ImportFailure("Почтовый сервер отклонил вход: проверьте IMAP_USER, IMAP_PASSWORD и "
                                "IMAP_SECURITY") from None
    except BaseException:
        close(client)
        raise
    return client


def close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            pass


@dataclass(frozen=True)
class Part:
    number: str  # the IMAP section, e.g. "2" or "1.3"
    filename: str | None
    encoding: str
    size: int  # encoded octets


def as_text(value) -> str:
    return to_unicode(value) if isinstance(value, bytes) else ("" if value is None else str(value))


def _leading_parts(structure) -> int:
    count = 0
    for item in structure:
        if not isinstance(item, (list, tuple)):
            break
        count += 1
    return count


def walk(structure, prefix: str = "") -> Iterator[Part]:
    """Every leaf part of a BODYSTRUCTURE with its section number and decoded file name."""
    if isinstance(structure[0], (list, tuple)):
        # Multipart: imapclient gives ([parts], subtype, ...) at the top; a forwarded mail's body
        # stays raw: (part, part, ..., subtype, ...).
        children = structure[0] if isinstance(structure[0], list) else structure[:_leading_parts(structure)]
        for index, child in enumerate(children, start=1):
            yield from walk(child, f"{prefix}.{index}" if prefix else f"{index}")
        return
    number = prefix or "1"
    main, sub = as_text(structure[0]).lower(), as_text(structure[1]).lower()
    params = structure[2]
    encoding = as_text(structure[5]).lower() if len(structure) > 5 else "7bit"
    size = int(structure[6] or 0) if len(structure) > 6 else 0
    if main == "message" and sub == "rfc822" and len(structure) > 8 and isinstance(structure[8], (list, tuple)):
        inner = structure[8]  # a forwarded mail: its parts are numbered under this one
        yield from walk(inner, number if isinstance(inner[0], (list, tuple)) else f"{number}.1")
        return
    extension_at = 8 if main == "text" else 7  # text parts carry a line count first
    disposition_data = structure[extension_at + 1] if len(structure) > extension_at + 1 else None
    disposition, disposition_params = "attachment", None
    if isinstance(disposition_data, tuple) and disposition_data:
        disposition = as_text(disposition_data[0]).lower() or "attachment"
        disposition_params = disposition_data[1] if len(disposition_data) > 1 else None
    filename = rules.attachment_filename(disposition_params, params, disposition)
    yield Part(number, filename, encoding, size)


class Decoder:
    """Content-Transfer-Encoding undone chunk by chunk (base64 keeps its partial quartet)."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self.rest = b""

    def feed(self, data: bytes) -> bytes:
        if self.encoding == "base64":
            data = self.rest + b"".join(data.split())
            usable = len(data) - len(data) % 4
            self.rest = data[usable:]
            return base64.b64decode(data[:usable]) if usable else b""
        if self.encoding == "quoted-printable":
            data = self.rest + data
            cut = data.rfind(b"\n") + 1  # decode whole lines: a soft break or escape never straddles
            self.rest = data[cut:]
            return binascii.a2b_qp(data[:cut])
        return data

    def finish(self) -> bytes:
        rest, self.rest = self.rest, b""
        if not rest:
            return b""
        if self.encoding == "base64":
            return base64.b64decode(rest + b"=" * (-len(rest) % 4))
        if self.encoding == "quoted-printable":
            return binascii.a2b_qp(rest)
        return rest


def part_chunks(client: IMAPClient, uid: int, part: Part) -> Iterator[bytes]:
    """The encoded bytes of one part, PART_CHUNK at a time (BODY.PEEK: the message stays unseen)."""
    offset = 0
    while True:
        section = f"BODY.PEEK[{part.number}]<{offset}.{PART_CHUNK}>"
        answer = client.fetch([uid], [section]).get(uid, {})
        data = answer.get(f"BODY[{part.number}]<{offset}>".encode())
        if data is None:  # some servers omit the origin in the answer
            data = answer.get(f"BODY[{part.number}]".encode())
        if not data:
            return
        yield data
        offset += len(data)
        if len(data) < PART_CHUNK:
            return
