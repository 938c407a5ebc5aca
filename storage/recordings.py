"""Call recordings into the media layout (zayvka/zapis), whichever way they arrive (the mailbox, the
Mango API): streamed through the quarantine, checked to be audio, and stored under their sha256.

The name is the content's hash, so storing the same bytes again writes the same file: a run that
stored a file and died before its database row was committed repeats harmlessly, leaving nothing
behind that no row points at.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable

from storage.backend import get_storage
from storage.kinds import AMR, KINDS, M4A, MP3, OGG, WAV
from storage.sniff import sniff

RECORDINGS_DIR = KINDS["recording"].directory  # zayvka/zapis
AUDIO_EXTENSIONS = {MP3: "mp3", WAV: "wav", OGG: "ogg", M4A: "m4a", AMR: "amr"}


class NotAudio(Exception):
    """The bytes are empty or not a recording; `empty` tells which."""

    def __init__(self, empty: bool):
        super().__init__("empty" if empty else "not audio")
        self.empty = empty


@dataclass
class StoredRecording:
    relative_path: str
    sha256: str
    size: int
    mime_type: str
    new: bool  # False: these bytes were stored already (at relative_path), nothing was written


def store_recording(chunks: Iterable[bytes], max_bytes: int, *,
                    stored_at: Callable[[str], str | None] = lambda sha256: None) -> StoredRecording:
    """Stream `chunks` into the media layout. `stored_at(sha256)` names where the same bytes already
    are, if anywhere: then nothing is written. Raises UploadTooLarge past `max_bytes`, NotAudio."""
    storage = get_storage()
    writer = storage.quarantine_writer(max_bytes)
    digest, head = hashlib.sha256(), b""
    try:
        for chunk in chunks:
            if len(head) < 64:
                head += chunk[:64 - len(head)]
            digest.update(chunk)
            writer.write(chunk)
        if writer.size == 0:
            raise NotAudio(empty=True)
        mime = sniff(head)
        if mime not in AUDIO_EXTENSIONS:
            raise NotAudio(empty=False)
        sha256 = digest.hexdigest()
        existing = stored_at(sha256)
        if existing is not None:
            writer.abort()
            return StoredRecording(existing, sha256, writer.size, mime, new=False)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    relative = f"{RECORDINGS_DIR}/{sha256}.{AUDIO_EXTENSIONS[mime]}"
    try:
        storage.promote(writer.token, relative)
    finally:
        storage.delete_quarantined(writer.token)
    return StoredRecording(relative, sha256, writer.size, mime, new=True)


def delete_unless_referenced(relative_path: str, referenced: Callable[[str], bool]) -> None:
    """Remove a stored recording that lost a race, unless a row points at it (same bytes, same name)."""
    if not referenced(relative_path):
        get_storage().delete_media(relative_path)
