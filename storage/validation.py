"""Is an uploaded file what it claims to be, and nothing more? Run by the workers, never by the API.

The checks, in order (the first failure is the reason kept):
1. the name: no tricks (storage/names.py), an extension allowed for the kind;
2. the size: not empty, not above the kind's cap;
3. the first bytes: not an executable, a script or a web page; the format they announce is the
   one the extension promises (our own magic-byte table, storage/sniff.py);
4. polyglots: no ZIP directory at the end of a non-ZIP file, no script markers inside an image or
   a recording, nothing after the end of an image or a PDF but padding;
5. the format itself, parsed with limits: images decoded by Pillow (dimensions and pixel count
   checked from the header before any decoding: decompression bombs), PDFs walked object by object
   by pypdf (no JavaScript, launch, form submission or embedded files), Word files opened as ZIP or
   OLE (no macros, ActiveX, embedded objects, external templates or DDE; every entry decompressed
   under a budget: zip bombs), recordings parsed by mutagen or our AMR reader (duration known).
"""
from __future__ import annotations

import hashlib
import logging
import mmap
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from storage.kinds import AMR, DOC, DOCX, EXTENSION_TYPES, JPEG, M4A, MP3, OGG, PDF, PNG, WAV, Kind
from storage.names import check_name
from storage.rejections import Rejected
from storage.sniff import (
    CONTAINER_OF,
    EMBEDDED_SCRIPT_MARKERS,
    RTF,
    ZIP_END_OF_CENTRAL_DIRECTORY,
    dangerous,
    describe,
    foreign_signature,
    sniff,
)

logging.getLogger("pypdf").setLevel(logging.ERROR)

HEAD_BYTES = 4096
# Images: both sides and the pixel count are read from the header before anything is decoded.
MAX_IMAGE_SIDE = 12_000
MAX_JPEG_PIXELS = 64_000_000  # decoded at 1/8 scale: memory stays small
MAX_PNG_PIXELS = 25_000_000  # decoded in full: at most ~100 MB of pixels
MAX_EXTRA_JPEG_IMAGES = 8  # phones append depth maps and previews (MPO) after the main image
# PDF
MAX_PDF_OBJECTS = 200_000
MAX_PDF_PAGES = 5_000
PDF_FORBIDDEN_KEYS = frozenset({"/JavaScript", "/JS", "/Launch", "/EmbeddedFiles", "/EmbeddedFile", "/EF",
                                "/RichMedia", "/XFA"})
PDF_FORBIDDEN_VALUES = frozenset({"/JavaScript", "/Launch", "/ImportData", "/SubmitForm", "/GoToE",
                                  "/RichMedia", "/RichMediaExecute", "/EmbeddedFile"})
PDF_RAW_NAMES = re.compile(
    rb"/(?:JavaScript|JS|Launch|EmbeddedFiles?|RichMedia|XFA|ImportData|SubmitForm|GoToE)(?![A-Za-z0-9])"
)
PDF_ESCAPED_NAME = re.compile(rb"/[A-Za-z0-9]*#[0-9A-Fa-f]{2}[A-Za-z0-9#]*")
# Office (ZIP)
MAX_ZIP_ENTRIES = 2_000
MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
RATIO_FREE_BYTES = 1024 * 1024  # entries smaller than this may compress as well as they like
OFFICE_ACTIVE_PARTS = re.compile(r"(^|/)(vbaproject\.bin|vbadata\.xml|activex/|embeddings/|macrosheets/|"
                                 r"dialogsheets/|customui/|attachedtoolbars\.bin)", re.IGNORECASE)
OFFICE_ACTIVE_CONTENT_TYPES = (b"macroenabled", b"vbaproject", b"activex", b"oleobject")
OFFICE_EXTERNAL_RELATIONS = re.compile(
    rb"Type=\"[^\"]*/(attachedTemplate|oleObject|frame|subDocument|package)\"[^>]*TargetMode=\"External\"|"
    rb"TargetMode=\"External\"[^>]*Type=\"[^\"]*/(attachedTemplate|oleObject|frame|subDocument|package)\"",
    re.IGNORECASE,
)
OFFICE_DDE = re.compile(rb"\bDDE(AUTO)?\b", re.IGNORECASE)
OLE_ACTIVE_STREAMS = ("macros", "_vba_project", "vba", "objectpool", "\x01ole10native", "\x01ole", "mbd")
# Audio
MAX_AUDIO_SECONDS = 24 * 3600
AMR_NB_FRAME_BYTES = {0: 13, 1: 14, 2: 16, 3: 18, 4: 20, 5: 21, 6: 27, 7: 32, 8: 6, 15: 1}
AMR_WB_FRAME_BYTES = {0: 18, 1: 24, 2: 33, 3: 37, 4: 41, 5: 47, 6: 51, 7: 59, 8: 61, 9: 6, 14: 1, 15: 1}
PADDING = b"\x00\r\n\t \x0c"


@dataclass
class Verdict:
    content_type: str
    size: int
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Facts:
    """What was learnt before a rejection, kept on the file row for the record."""

    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None


def validate(path: str | os.PathLike, kind: Kind, original_name: str, facts: Facts | None = None) -> Verdict:
    """The verdict for the file at `path` uploaded as `original_name` for `kind`; Rejected otherwise."""
    facts = facts if facts is not None else Facts()
    _, extension = check_name(original_name)
    if extension not in kind.extensions:
        allowed = ", ".join("." + ext for ext in kind.extensions)
        raise Rejected("extension", f"«.{extension}», для раздела «{kind.label}» разрешены {allowed}")
    expected = EXTENSION_TYPES[extension]
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        facts.size = size
        if size == 0:
            raise Rejected("empty")
        if size > kind.max_bytes:
            raise Rejected("too_large", f"не более {kind.max_mb} МБ")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            facts.sha256 = hashlib.sha256(data).hexdigest()
            head = data[:HEAD_BYTES]
            danger = dangerous(head)
            if danger:
                raise Rejected(*danger)
            sniffed = sniff(head)
            facts.content_type = sniffed
            if sniffed != CONTAINER_OF.get(expected, expected):
                if sniffed == RTF and extension == "doc":
                    raise Rejected("rtf")
                raise Rejected("mismatch", f"расширение .{extension}, а по содержимому это {describe(sniffed)}")
            facts.content_type = expected
            _refuse_polyglots(data, expected)
            details = FORMAT_CHECKS[expected](Path(path), data)
    return Verdict(expected, size, facts.sha256, details)


# ---- polyglots ---------------------------------------------------------------------------------------

def _refuse_polyglots(data: mmap.mmap, content_type: str) -> None:
    if content_type != DOCX:
        # A ZIP reader starts from the end-of-central-directory record in the last 64 KiB.
        tail_start = max(0, len(data) - (65_535 + 22))
        if data.find(ZIP_END_OF_CENTRAL_DIRECTORY, tail_start) >= 0:
            raise Rejected("polyglot", "в конце файла ZIP-архив")
    if content_type in (JPEG, PNG, MP3, WAV, OGG, M4A, AMR):
        marker = _find_marker(data, EMBEDDED_SCRIPT_MARKERS)
        if marker is not None:
            raise Rejected("script", f"внутри найдено «{marker.decode()}»")


def _find_marker(data: mmap.mmap, markers: tuple[bytes, ...], block: int = 1 << 20) -> bytes | None:
    """The first of `markers` (lower case) found in `data`, case-insensitively. Tags are found by
    visiting each '<' once rather than by one full search per tag."""
    tags = tuple(marker for marker in markers if marker.startswith(b"<"))
    others = [marker for marker in markers if not marker.startswith(b"<")]
    overlap = max(len(marker) for marker in markers) - 1
    for start in range(0, len(data), block):
        window = data[start:start + block + overlap].lower()
        for marker in others:
            if marker in window:
                return marker
        position = window.find(b"<")
        while position >= 0:
            if window.startswith(tags, position):
                return next(tag for tag in tags if window.startswith(tag, position))
            position = window.find(b"<", position + 1)
    return None


def _refuse_trailing(data: mmap.mmap, end: int) -> None:
    """Nothing but padding may follow the end of the format."""
    if end >= len(data):
        return
    rest = data[end:].lstrip(PADDING)
    if rest:
        signature = foreign_signature(rest)
        if signature is not None:
            raise Rejected("polyglot", f"после конца содержимого найдено «{signature.decode('latin-1')}»")
        raise Rejected("trailing_data")


# ---- images ----------------------------------------------------------------------------------------

def jpeg_end(data: mmap.mmap | bytes, start: int = 0) -> int:
    """The offset just past the EOI marker of the JPEG starting at `start` (segments walked by length,
    entropy-coded data scanned for the next real marker)."""
    n = len(data)
    if data[start:start + 2] != b"\xff\xd8":
        raise Rejected("image_corrupt")
    i = start + 2
    while i < n:
        if data[i] != 0xFF:
            raise Rejected("image_corrupt", "нарушена структура JPEG")
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == 0xD9:
            return i
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if i + 2 > n:
            break
        length = (data[i] << 8) | data[i + 1]
        if length < 2:
            raise Rejected("image_corrupt", "нарушена структура JPEG")
        i += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    raise Rejected("image_corrupt", "JPEG обрезан")
                following = data[i + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i += 2
                elif following == 0xFF:
                    i += 1
                else:
                    break
    raise Rejected("image_corrupt", "JPEG обрезан")


def png_end(data: mmap.mmap | bytes) -> int:
    n, i = len(data), 8
    while i + 12 <= n:
        length = int.from_bytes(data[i:i + 4], "big")
        chunk_type = data[i + 4:i + 8]
        if length > 0x7FFFFFFF or not chunk_type.isalpha():
            raise Rejected("image_corrupt", "нарушена структура PNG")
        i += 12 + length
        if chunk_type == b"IEND":
            if i > n:
                break
            return i
    raise Rejected("image_corrupt", "PNG обрезан")


def _decode_image(path: Path, expected_format: str, max_pixels: int) -> dict[str, Any]:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=[expected_format]) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise Rejected("image_corrupt")
                if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > max_pixels:
                    raise Rejected("image_too_large", f"{width}×{height}")
                if expected_format == "JPEG":
                    # Every block is still entropy-decoded; only the inverse DCT runs at 1/8 scale.
                    image.draft(image.mode if image.mode in ("L", "RGB", "CMYK", "YCbCr") else "RGB",
                                (max(1, width // 8), max(1, height // 8)))
                image.load()
                return {"width": width, "height": height}
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Rejected("image_too_large") from None
    except Exception:  # Pillow signals a broken image with many exception types
        raise Rejected("image_corrupt") from None


def check_jpeg(path: Path, data: mmap.mmap) -> dict[str, Any]:
    end = jpeg_end(data)
    for _ in range(MAX_EXTRA_JPEG_IMAGES):
        rest = end
        while rest < len(data) and data[rest] in PADDING:
            rest += 1
        if data[rest:rest + 3] != b"\xff\xd8\xff":
            break
        end = jpeg_end(data, rest)
    _refuse_trailing(data, end)
    return _decode_image(path, "JPEG", MAX_JPEG_PIXELS)


def check_png(path: Path, data: mmap.mmap) -> dict[str, Any]:
    _refuse_trailing(data, png_end(data))
    return _decode_image(path, "PNG", MAX_PNG_PIXELS)


# ---- PDF -------------------------------------------------------------------------------------------

def _inside_stream(data: mmap.mmap, position: int) -> bool:
    """Whether `position` lies inside a stream body (compressed bytes may hold anything)."""
    start = data.rfind(b"stream", 0, position)
    if start < 0 or (start >= 3 and data[start - 3:start] == b"end"):
        return False
    return True


def _pdf_raw_names(data: mmap.mmap) -> None:
    """Dangerous names in the file as written, including ones a repairing reader would find."""
    for match in PDF_RAW_NAMES.finditer(data):
        if not _inside_stream(data, match.start()):
            raise Rejected("pdf_active", match.group(0).decode("latin-1"))
    for match in PDF_ESCAPED_NAME.finditer(data):
        if _inside_stream(data, match.start()):
            continue
        name = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), match.group(0))
        if PDF_RAW_NAMES.fullmatch(name):
            raise Rejected("pdf_active", name.decode("latin-1"))


def _pdf_inspect(obj: Any, depth: int = 0) -> None:
    from pypdf.generic import ArrayObject, DictionaryObject

    if depth > 64:
        return
    if isinstance(obj, DictionaryObject):
        for key, value in obj.items():
            if key in PDF_FORBIDDEN_KEYS:
                raise Rejected("pdf_active", str(key))
            if key in ("/S", "/Type", "/Subtype") and isinstance(value, str) and value in PDF_FORBIDDEN_VALUES:
                raise Rejected("pdf_active", str(value))
            _pdf_inspect(value, depth + 1)
    elif isinstance(obj, ArrayObject):
        for value in obj:
            _pdf_inspect(value, depth + 1)


def check_pdf(path: Path, data: mmap.mmap) -> dict[str, Any]:
    eof = data.rfind(b"%%EOF")
    if eof < 0:
        raise Rejected("pdf_corrupt", "нет маркера конца файла")
    _refuse_trailing(data, eof + 5)
    _pdf_raw_names(data)

    from pypdf import PdfReader
    from pypdf.generic import IndirectObject

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception:
                unlocked = 0
            if not unlocked:
                raise Rejected("pdf_encrypted")
        references = [(number, generation) for generation, entries in reader.xref.items() for number in entries]
        references += [(number, 0) for number in reader.xref_objStm]
        if len(references) > MAX_PDF_OBJECTS:
            raise Rejected("pdf_corrupt", "слишком много объектов")
        _pdf_inspect(reader.trailer)
        for number, generation in references:
            try:
                obj = reader.get_object(IndirectObject(number, generation, reader))
            except Exception:
                continue  # an unreadable object is invisible to readers too; the raw scan saw its bytes
            _pdf_inspect(obj)
        pages = len(reader.pages)
    except Rejected:
        raise
    except Exception:
        raise Rejected("pdf_corrupt") from None
    if pages < 1:
        raise Rejected("pdf_corrupt", "нет ни одной страницы")
    if pages > MAX_PDF_PAGES:
        raise Rejected("pdf_corrupt", "слишком много страниц")
    return {"pages": pages}


# ---- Word ------------------------------------------------------------------------------------------

def _read_bounded(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> tuple[int, bytes | None]:
    """Decompress one entry, counting; keep the text of the small XML parts we inspect."""
    keep = info.filename.endswith((".xml", ".rels")) and info.file_size <= 16 * 1024 * 1024
    produced, kept = 0, []
    limit = min(budget, max(RATIO_FREE_BYTES, info.compress_size * MAX_COMPRESSION_RATIO))
    with archive.open(info) as member:
        while True:
            chunk = member.read(256 * 1024)
            if not chunk:
                break
            produced += len(chunk)
            if produced > limit:
                raise Rejected("zip_bomb")
            if keep:
                kept.append(chunk)
    return produced, b"".join(kept) if keep else None


def check_docx(path: Path, data: mmap.mmap) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                raise Rejected("zip_bomb", "слишком много частей")
            names = {info.filename for info in infos}
            if "[Content_Types].xml" not in names or "word/document.xml" not in names:
                raise Rejected("office_corrupt", "это не документ Word")
            declared = 0
            for info in infos:
                name = info.filename
                if name.startswith("/") or "\\" in name or ".." in name.split("/"):
                    raise Rejected("office_corrupt", "недопустимые имена частей")
                if info.flag_bits & 0x1:
                    raise Rejected("office_corrupt", "части зашифрованы")
                if OFFICE_ACTIVE_PARTS.search(name):
                    raise Rejected("office_macros", name)
                declared += info.file_size
            if declared > MAX_UNCOMPRESSED_BYTES:
                raise Rejected("zip_bomb")
            budget = min(MAX_UNCOMPRESSED_BYTES, max(RATIO_FREE_BYTES * 8, len(data) * MAX_COMPRESSION_RATIO))
            for info in infos:
                produced, text = _read_bounded(archive, info, budget)
                budget -= produced
                if budget < 0:
                    raise Rejected("zip_bomb")
                if text is None:
                    continue
                lowered = text.lower()
                if info.filename == "[Content_Types].xml" and any(m in lowered for m in OFFICE_ACTIVE_CONTENT_TYPES):
                    raise Rejected("office_macros", "макросы или ActiveX")
                if info.filename.endswith(".rels") and OFFICE_EXTERNAL_RELATIONS.search(text):
                    raise Rejected("office_macros", "внешний шаблон или объект")
                if info.filename.startswith("word/") and b"instrtext" in lowered and OFFICE_DDE.search(text):
                    raise Rejected("office_macros", "поле DDE")
    except Rejected:
        raise
    except Exception:
        raise Rejected("office_corrupt") from None
    return {"parts": len(infos)}


def check_doc(path: Path, data: mmap.mmap) -> dict[str, Any]:
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            entries = ["/".join(parts) for parts in ole.listdir(streams=True, storages=True)]
            has_document = ole.exists("WordDocument") and ole.openstream("WordDocument").read(2) == b"\xec\xa5"
    except Exception:
        raise Rejected("office_corrupt") from None
    for entry in entries:
        lowered = entry.lower()
        for part in lowered.split("/"):
            if part in OLE_ACTIVE_STREAMS or part.startswith(("_vba_project", "\x01ole10")):
                raise Rejected("office_macros", entry.replace("\x01", ""))
    if not has_document:
        raise Rejected("office_corrupt", "это не документ Word")
    return {"streams": len(entries)}


# ---- audio -----------------------------------------------------------------------------------------

def _duration(seconds: float | None) -> dict[str, Any]:
    if not seconds or seconds <= 0 or seconds > MAX_AUDIO_SECONDS:
        raise Rejected("audio_duration")
    return {"duration_seconds": round(float(seconds), 3)}


def _mutagen(path: Path, loader: Callable[[str], Any]) -> Any:
    try:
        audio = loader(str(path))
    except Exception:
        raise Rejected("audio_corrupt") from None
    if audio is None or getattr(audio, "info", None) is None:
        raise Rejected("audio_corrupt")
    return audio


def check_mp3(path: Path, data: mmap.mmap) -> dict[str, Any]:
    from mutagen.mp3 import MP3 as MutagenMP3

    audio = _mutagen(path, MutagenMP3)
    if getattr(audio.info, "sketchy", False):
        raise Rejected("audio_corrupt", "нет последовательности кадров MPEG")
    return _duration(audio.info.length)


def check_wav(path: Path, data: mmap.mmap) -> dict[str, Any]:
    from mutagen.wave import WAVE

    audio = _mutagen(path, WAVE)
    return _duration(audio.info.length)


def check_ogg(path: Path, data: mmap.mmap) -> dict[str, Any]:
    import mutagen
    from mutagen.oggflac import OggFLAC
    from mutagen.oggopus import OggOpus
    from mutagen.oggspeex import OggSpeex
    from mutagen.oggvorbis import OggVorbis

    audio = _mutagen(path, lambda name: mutagen.File(name, options=[OggVorbis, OggOpus, OggSpeex, OggFLAC]))
    return _duration(audio.info.length)


def check_m4a(path: Path, data: mmap.mmap) -> dict[str, Any]:
    from mutagen.mp4 import MP4

    audio = _mutagen(path, MP4)
    codec = getattr(audio.info, "codec", "") or ""
    if not codec.startswith(("mp4a", "alac", "samr", "sawb", "ac-3", "ec-3", "opus", "fLaC")):
        raise Rejected("audio_corrupt", "в контейнере нет звуковой дорожки")
    return _duration(audio.info.length)


def check_amr(path: Path, data: mmap.mmap) -> dict[str, Any]:
    wideband = data[:9] == b"#!AMR-WB\n"
    sizes = AMR_WB_FRAME_BYTES if wideband else AMR_NB_FRAME_BYTES
    i, n, frames = (9 if wideband else 6), len(data), 0
    while i < n:
        header = data[i]
        if header & 0x83:
            raise Rejected("audio_corrupt", "нарушена структура AMR")
        size = sizes.get((header >> 3) & 0x0F)
        if size is None or i + size > n:
            raise Rejected("audio_corrupt", "нарушена структура AMR")
        i += size
        frames += 1
    return _duration(frames * 0.02)


FORMAT_CHECKS: dict[str, Callable[[Path, mmap.mmap], dict[str, Any]]] = {
    JPEG: check_jpeg, PNG: check_png, PDF: check_pdf, DOCX: check_docx, DOC: check_doc,
    MP3: check_mp3, WAV: check_wav, OGG: check_ogg, M4A: check_m4a, AMR: check_amr,
}
