"""Receive a multipart upload by streaming it into the quarantine, with a hard cap.

The WSGI input is read in chunks and fed to Werkzeug's sans-IO multipart decoder; the bytes of the
`file` part go straight to a quarantine file and everything else (a few short text fields) is kept
in memory under small limits. Memory stays bounded whatever the body size, whether or not a
Content-Length was sent and whether or not it is true: the cap is counted on the bytes that
actually arrive, and the upload stops (413) the moment the file passes it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import IO, Callable

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import NEED_DATA, Data, Epilogue, Field
from werkzeug.sansio.multipart import File as FilePart
from werkzeug.sansio.multipart import MultipartDecoder, Preamble

from storage.backend import QuarantineWriter, Storage, UploadTooLarge

CHUNK_SIZE = 64 * 1024
FILE_FIELD = "file"
MAX_FIELDS = 16
MAX_FIELD_BYTES = 1024
MAX_HEADER_BYTES = 16 * 1024  # preamble and part headers: what may sit in the decoder's buffer
MAX_BYTES_AFTER_FILE = 64 * 1024
BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class BadUpload(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ReceivedUpload:
    token: str
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


def boundary_of(content_type: str | None) -> bytes:
    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data":
        raise BadUpload(415, "unsupported_media_type",
                        "Ожидается multipart/form-data с файлом в поле «file»")
    boundary = options.get("boundary", "")
    if not BOUNDARY_RE.fullmatch(boundary):
        raise BadUpload(400, "bad_multipart", "Некорректная граница multipart-тела")
    return boundary.encode("ascii")


def receive(stream: IO[bytes], content_type: str | None, storage: Storage,
            max_bytes: Callable[[dict[str, str]], int] | int) -> ReceivedUpload:
    """Stream the `file` part of a multipart body into the quarantine and return what arrived.

    `max_bytes` is the cap, or a function of the text fields that came before the file (it may
    raise to refuse the upload before any byte of the file is stored). Raises BadUpload
    (400/413/415) and leaves nothing behind in the quarantine when the upload fails."""
    decoder = MultipartDecoder(boundary_of(content_type), max_parts=MAX_FIELDS + 1)
    fields: dict[str, str] = {}
    writer: QuarantineWriter | None = None
    filename: str | None = None
    current: str | None = None  # "file", "field", "skip"
    field_name = ""
    field_value = bytearray()
    file_done = False
    after_file = skipped = 0
    finished = False
    try:
        while not finished:
            chunk = stream.read(CHUNK_SIZE)
            if file_done:
                after_file += len(chunk)
                if after_file > MAX_BYTES_AFTER_FILE:
                    raise BadUpload(400, "bad_multipart", "После файла в теле запроса слишком много данных")
            decoder.receive_data(chunk or None)
            while True:
                try:
                    event = decoder.next_event()
                except ValueError:
                    raise BadUpload(400, "bad_multipart", "Некорректное multipart-тело запроса") from None
                if event is NEED_DATA:
                    break
                if isinstance(event, Preamble):
                    continue
                if isinstance(event, FilePart):
                    if event.name != FILE_FIELD or writer is not None:
                        current = "skip"
                        continue
                    cap = max_bytes(fields) if callable(max_bytes) else max_bytes
                    writer = storage.quarantine_writer(cap)
                    filename = event.filename
                    current = "file"
                elif isinstance(event, Field):
                    if len(fields) >= MAX_FIELDS:
                        raise BadUpload(400, "bad_multipart", "Слишком много полей в запросе")
                    current, field_name, field_value = "field", event.name or "", bytearray()
                elif isinstance(event, Data):
                    if current == "file":
                        writer.write(event.data)  # type: ignore[union-attr]
                        if not event.more_data:
                            current, file_done = None, True
                    elif current == "skip":
                        skipped += len(event.data)
                        if skipped > MAX_BYTES_AFTER_FILE:
                            raise BadUpload(400, "bad_multipart", "Лишние файлы в запросе: ожидается одно поле «file»")
                    elif current == "field":
                        field_value += event.data
                        if len(field_value) > MAX_FIELD_BYTES:
                            raise BadUpload(400, "bad_multipart", f"Поле «{field_name[:40]}» слишком длинное")
                        if not event.more_data:
                            fields[field_name] = field_value.decode("utf-8", "replace")
                            current = None
                elif isinstance(event, Epilogue):
                    finished = True
                    break
            if current != "file" and len(decoder.buffer) > MAX_HEADER_BYTES:
                raise BadUpload(400, "bad_multipart", "Слишком длинные заголовки multipart-тела")
            if not chunk and not finished:
                raise BadUpload(400, "bad_multipart", "Тело запроса оборвалось до конца multipart-данных")
        if writer is None or not file_done:
            raise BadUpload(400, "file_missing", "Файл не передан: ожидается поле «file»")
        writer.commit()
        return ReceivedUpload(writer.token, filename or "", writer.size, fields)
    except UploadTooLarge:
        _abort(writer)
        raise BadUpload(413, "file_too_large", "") from None
    except RequestEntityTooLarge:
        _abort(writer)
        raise BadUpload(413, "payload_too_large", "") from None
    except ClientDisconnected:
        _abort(writer)
        raise BadUpload(400, "client_disconnected", "Загрузка прервана: тело запроса получено не полностью") from None
    except BaseException:
        _abort(writer)
        raise


def _abort(writer: QuarantineWriter | None) -> None:
    if writer is not None:
        writer.abort()
