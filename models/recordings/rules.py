"""Call recordings: what an attachment name says, and which call and request a recording belongs to.

Mango mails a recording as an attachment named `YYYY.MM.DD__HH-MM-SS__<from>__<to>.<ext>`; the time
is wall-clock time in the business time zone. A recording is matched first to the call of those
numbers nearest in time, then to the request of the client phone nearest to the call time, both
within ±RECORDING_MATCH_WINDOW_MIN. Two candidates equally near (to the second) make it `ambiguous`;
none leaves it `unmatched` for a later retry. A matched recording is linked to its request as a
ready `recording` file, so the request shows it as `recording_file_path` and serves it like an
upload; the request's earlier recordings stay listed with it.
"""
from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from models.core.business_time import business_tz
from models.core.db import Session
from models.core.phones import normalize_phone
from models.files.tables import File
from models.recordings.tables import Recording
from models.requests.tables import RequestEvent
from settings import settings
from storage.kinds import AUDIO

# The shape Mango uses; the numbers may carry a leading + and extra `__` parts are tolerated.
RECORDING_NAME = re.compile(
    r"^(?P<date>\d{4}\.\d{2}\.\d{2})__(?P<time>\d{2}-\d{2}-\d{2})__(?P<from>\+?\d{3,20})__(?P<to>\+?\d{3,20})"
    r"(?:__[^/\\]*?)?\.(?P<ext>[A-Za-z0-9]{2,5})$"
)
# Anything starting like a recording name is one: if the rest is wrong it is skipped with a reason.
LOOKS_LIKE_RECORDING = re.compile(r"^\d{4}\.\d{1,2}\.\d{1,2}__")

UNMATCHED, MATCHED, AMBIGUOUS = "unmatched", "matched", "ambiguous"


class BadName(ValueError):
    """An attachment that looks like a recording but whose name cannot be read (reason in Russian)."""


@dataclass(frozen=True)
class ParsedName:
    call_time: datetime  # aware, UTC
    from_phone: str
    to_phone: str
    extension: str


def is_recording_name(filename: str | None) -> bool:
    return bool(filename) and bool(LOOKS_LIKE_RECORDING.match(filename.strip()))


def parse_name(filename: str) -> ParsedName:
    """The call time (business time zone, returned in UTC) and numbers of a recording's file name.

    Raises BadName for a name that does not follow the pattern or holds an impossible date.
    """
    found = RECORDING_NAME.match(filename.strip())
    if found is None:
        raise BadName("имя файла не по шаблону ГГГГ.ММ.ДД__ЧЧ-ММ-СС__откуда__куда.расширение")
    extension = found["ext"].lower()
    if extension not in AUDIO:
        raise BadName(f"расширение .{extension} не является аудио")
    try:
        local = datetime.strptime(f"{found['date']} {found['time']}", "%Y.%m.%d %H-%M-%S")
    except ValueError:
        raise BadName("в имени файла несуществующие дата или время") from None
    call_time = local.replace(tzinfo=business_tz()).astimezone(timezone.utc)
    return ParsedName(call_time, normalize_phone(found["from"]), normalize_phone(found["to"]), extension)


# ---- attachment names as IMAP's BODYSTRUCTURE gives them ----------------------------------------------

def _as_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _param_pairs(params) -> list[tuple[str, str]]:
    """BODYSTRUCTURE parameters come as a flat (name, value, name, value, ...) sequence."""
    if not params:
        return []
    flat = list(params)
    return [(_as_text(flat[i]), _as_text(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


def _header_value(disposition: str, pairs: list[tuple[str, str]]) -> str:
    parts = [disposition or "attachment"]
    for name, value in pairs:
        if not re.fullmatch(r"[A-Za-z0-9_.*-]+", name):
            continue
        if name.endswith("*") and re.fullmatch(r"[!#$%&'+\-.^_`|~0-9A-Za-z]*", value):
            parts.append(f"{name}={value}")  # RFC 2231 extended value: a token, never quoted
        else:
            parts.append(f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "; ".join(parts)


def attachment_filename(disposition_params, content_type_params, disposition: str = "attachment") -> str | None:
    """The decoded file name of a part: RFC 2231 (`filename*`, continuations, charsets) and RFC 2047
    encoded words both handled by the standard library's parser, `name` of Content-Type as fallback."""
    for header, pairs in (("Content-Disposition", _param_pairs(disposition_params)),
                          ("Content-Type", _param_pairs(content_type_params))):
        if not pairs:
            continue
        first = "application/octet-stream" if header == "Content-Type" else disposition
        message = email.message_from_string(f"{header}: {_header_value(first, pairs)}\n\n",
                                            policy=email.policy.default)
        name = message.get_filename() if header == "Content-Disposition" else message.get_param("name")
        if isinstance(name, tuple):  # an RFC 2231 triple from get_param
            name = email.utils.collapse_rfc2231_value(name)
        if name:
            name = str(name).replace("\r", "").replace("\n", "").strip()
            # A client path ("C:\\calls\\x.mp3"): only the last component is the name.
            return re.split(r"[\\/]", name)[-1] or None
    return None


# ---- matching --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    status: str
    request_id: int | None = None
    call_id: int | None = None


NEAREST_CALLS = text("""
    SELECT id, request_id, floor(abs(extract(epoch FROM started_at - :at))) AS distance
    FROM calls
    WHERE client_phone = ANY(:phones) AND started_at BETWEEN :since AND :until
    ORDER BY distance, id
    LIMIT 10
""")
NEAREST_REQUESTS = text("""
    SELECT id, floor(abs(extract(epoch FROM created_at - :at))) AS distance
    FROM requests
    WHERE client_phone = ANY(:phones) AND created_at BETWEEN :since AND :until
    ORDER BY distance, id
    LIMIT 2
""")


def _window() -> timedelta:
    return timedelta(minutes=settings.RECORDING_MATCH_WINDOW_MIN)


def find_match(call_time: datetime | None, from_phone: str | None, to_phone: str | None) -> Match:
    """The call and request a recording belongs to (see the module's docstring)."""
    phones = sorted({p for p in (from_phone, to_phone) if p})
    if call_time is None or not phones:
        return Match(UNMATCHED)
    params = {"at": call_time, "phones": phones, "since": call_time - _window(), "until": call_time + _window()}
    call_id = None
    calls = Session.execute(NEAREST_CALLS, params).all()
    if calls:
        nearest = [c for c in calls if c.distance == calls[0].distance]
        requests = {c.request_id for c in nearest if c.request_id is not None}
        if len(requests) > 1:
            return Match(AMBIGUOUS)
        if len(nearest) == 1 or requests:
            chosen = next((c for c in nearest if c.request_id is not None), nearest[0])
            call_id = chosen.id
            if chosen.request_id is not None:
                return Match(MATCHED, chosen.request_id, call_id)
    requests = Session.execute(NEAREST_REQUESTS, params).all()
    if not requests:
        return Match(UNMATCHED, None, call_id)
    if len(requests) > 1 and requests[1].distance == requests[0].distance:
        return Match(AMBIGUOUS, None, call_id)
    return Match(MATCHED, requests[0].id, call_id)


def apply_match(recording: Recording, match: Match) -> str:
    """Store the outcome of an automatic match on the recording (and link its request)."""
    recording.match_attempts = (recording.match_attempts or 0) + 1
    if match.call_id is not None and recording.call_id is None:
        recording.call_id = match.call_id
    if match.status == MATCHED:
        link(recording, match.request_id, user_id=None)
    else:
        recording.match_status = match.status
    return recording.match_status


def match_recording(recording: Recording) -> str:
    return apply_match(recording, find_match(recording.call_time, recording.from_phone, recording.to_phone))


def current_recording_path(request_id: int) -> str | None:
    return Session.scalar(
        select(File.storage_path)
        .where(File.request_id == request_id, File.kind == "recording", File.status == "ready",
               File.replaced_by_id.is_(None))
        .order_by(File.id.desc()).limit(1)
    )


def link(recording: Recording, request_id: int, *, user_id: int | None) -> None:
    """Link a recording to a request: matched, and a ready `recording` file of the request, so the
    request's `recording_file_path` points to it and the secure file routes serve it to whoever may
    read the request. A recording linked elsewhere before moves with its file."""
    previous_path = current_recording_path(request_id)
    recording.request_id = request_id
    recording.match_status = MATCHED
    recording.matched_at = func.now()
    now = datetime.now(timezone.utc)
    Session.execute(
        pg_insert(File).values(
            kind="recording", request_id=request_id, original_name=(recording.original_name or "recording")[:255],
            size_bytes=recording.size_bytes, sha256=recording.sha256, sniffed_type=recording.mime_type,
            status="ready", storage_path=recording.storage_path, uploaded_by_id=user_id, validated_at=now,
        ).on_conflict_do_update(
            index_elements=[File.storage_path],
            set_={"request_id": request_id, "transaction_id": None, "replaced_by_id": None, "owner_deleted_at": None},
        )
    )
    if previous_path != recording.storage_path:
        Session.add(RequestEvent(
            request_id=request_id, user_id=user_id, action="updated", field="recording_file_path",
            old_value=previous_path, new_value=recording.storage_path, source="api" if user_id else "system",
        ))
    Session.flush()


def link_files_of_matched() -> int:
    """Recordings linked to a request by another path (a call linked to its request later) get the
    request's file row too. Returns how many were linked."""
    rows = Session.scalars(
        select(Recording).where(
            Recording.request_id.is_not(None), Recording.match_status == MATCHED,
            ~select(File.id).where(File.storage_path == Recording.storage_path,
                                   File.request_id == Recording.request_id).exists(),
        ).limit(500)
    ).all()
    for recording in rows:
        link(recording, recording.request_id, user_id=None)
    return len(rows)


def release_orphans() -> int:
    """Recordings whose request was deleted go back to the inbox, and their file rows are dropped
    (the bytes belong to the recording: the retention of deleted owners' files must not remove
    them). Returns how many recordings were released."""
    released = Session.execute(
        update(Recording).where(Recording.match_status == MATCHED, Recording.request_id.is_(None))
        .values(match_status=UNMATCHED, matched_at=None)
    ).rowcount
    Session.execute(
        delete(File).where(File.kind == "recording", File.request_id.is_(None), File.transaction_id.is_(None),
                           File.storage_path.in_(select(Recording.storage_path)))
    )
    return released


def pending_ids(limit: int, horizon_days: int) -> list[int]:
    """Unmatched recordings worth another try: with a call time, recent enough."""
    since = datetime.now(timezone.utc) - timedelta(days=horizon_days)
    return list(Session.scalars(
        select(Recording.id)
        .where(Recording.match_status == UNMATCHED, Recording.call_time.is_not(None), Recording.call_time >= since)
        .order_by(Recording.call_time.desc()).limit(limit)
    ).all())


def totals() -> dict[str, int]:
    counts = dict(Session.execute(select(Recording.match_status, func.count()).group_by(Recording.match_status)).all())
    out = {status: int(counts.get(status, 0)) for status in (MATCHED, UNMATCHED, AMBIGUOUS)}
    out["total"] = sum(out.values())
    return out


def stored_path(sha256: str) -> str | None:
    """Where a recording with these bytes is stored already, if it is."""
    return Session.scalar(select(Recording.storage_path).where(Recording.sha256 == sha256))


def path_referenced(relative_path: str) -> bool:
    return Session.scalar(select(Recording.id).where(Recording.storage_path == relative_path).limit(1)) is not None
