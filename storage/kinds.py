"""What may be uploaded where: per kind, its owner, its folder in the media layout, its extensions
and its size cap. The folders are the old system's layout (the SPA and old data know them)."""
from __future__ import annotations

from dataclasses import dataclass

from settings import settings

REQUEST, TRANSACTION = "request", "transaction"
OWNER_TYPES = (REQUEST, TRANSACTION)

JPEG, PNG, PDF = "image/jpeg", "image/png", "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
DOC = "application/msword"
MP3, WAV, OGG, M4A, AMR = "audio/mpeg", "audio/wav", "audio/ogg", "audio/mp4", "audio/amr"

# The one content type each allowed extension must turn out to be.
EXTENSION_TYPES = {
    "jpg": JPEG, "jpeg": JPEG, "png": PNG, "pdf": PDF, "docx": DOCX, "doc": DOC,
    "mp3": MP3, "wav": WAV, "ogg": OGG, "m4a": M4A, "amr": AMR,
}
DOCUMENTS = ("jpg", "jpeg", "png", "pdf", "doc", "docx")
AUDIO = ("mp3", "wav", "ogg", "m4a", "amr")


@dataclass(frozen=True)
class Kind:
    name: str
    owner: str
    directory: str
    extensions: tuple[str, ...]
    label: str  # as a user reads it, in Russian
    recording: bool = False

    @property
    def max_bytes(self) -> int:
        mb = settings.MAX_RECORDING_UPLOAD_MB if self.recording else settings.MAX_UPLOAD_MB
        return mb * 1024 * 1024

    @property
    def max_mb(self) -> int:
        return self.max_bytes // (1024 * 1024)


KINDS: dict[str, Kind] = {
    kind.name: kind for kind in (
        Kind("bso", REQUEST, "zayvka/bso", DOCUMENTS, "БСО"),
        Kind("expense", REQUEST, "zayvka/rashod", DOCUMENTS, "чек расхода"),
        Kind("recording", REQUEST, "zayvka/zapis", AUDIO, "запись разговора", recording=True),
        Kind("transaction", TRANSACTION, "gorod/rashod", DOCUMENTS, "документ кассы"),
    )
}
MEDIA_DIRECTORIES = tuple(kind.directory for kind in KINDS.values())


def kinds_of(owner: str) -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if kind.owner == owner)
