"""What a file is, from its first bytes (our own table: no libmagic needed, nothing guessed from names)."""
from __future__ import annotations

from storage.kinds import AMR, DOC, DOCX, JPEG, M4A, MP3, OGG, PDF, PNG, WAV

ZIP = "application/zip"
OLE = "application/x-ole-storage"
RTF = "application/rtf"

# Containers the office formats come in: a .docx is a ZIP, a .doc an OLE compound file.
CONTAINER_OF = {DOCX: ZIP, DOC: OLE}

DESCRIPTIONS = {
    JPEG: "изображение JPEG", PNG: "изображение PNG", PDF: "документ PDF", ZIP: "ZIP-архив",
    OLE: "файл Microsoft Office старого формата", RTF: "документ RTF", MP3: "аудио MP3", WAV: "аудио WAV",
    OGG: "аудио OGG", M4A: "аудио/видео MP4", AMR: "аудио AMR", "image/gif": "изображение GIF",
    "image/webp": "изображение WebP", "image/bmp": "изображение BMP", "image/tiff": "изображение TIFF",
    "image/heic": "изображение HEIC", "application/gzip": "архив GZIP", "application/x-rar": "архив RAR",
    "application/x-7z-compressed": "архив 7z", "audio/flac": "аудио FLAC",
}

MP4_BRANDS = {
    b"M4A ", b"M4B ", b"M4P ", b"mp41", b"mp42", b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"3gp4",
    b"3gp5", b"3gp6", b"3gp7", b"3g2a", b"dash", b"MSNV", b"avc1", b"f4a ",
}
HEIC_BRANDS = {b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"avif"}

# Leading markers of executables.
EXECUTABLE_MAGIC = (
    (b"MZ", "программа Windows"),
    (b"\x7fELF", "программа Linux"),
    (b"\xfe\xed\xfa\xce", "программа macOS"), (b"\xfe\xed\xfa\xcf", "программа macOS"),
    (b"\xce\xfa\xed\xfe", "программа macOS"), (b"\xcf\xfa\xed\xfe", "программа macOS"),
    (b"\xca\xfe\xba\xbe", "программа macOS или класс Java"),
    (b"dex\n", "программа Android"),
    (b"\x00asm", "модуль WebAssembly"),
)
# What a text file that is really a script or a web page starts with (after a BOM and blanks).
SCRIPT_PREFIXES = (
    b"<?php", b"<?=", b"<%", b"<script", b"<html", b"<!doctype", b"<svg", b"<?xml", b"<head", b"<body",
    b"<iframe", b"<object", b"<embed", b"<!--", b"<meta", b"<style", b"<xsl", b"<x:", b"<a ", b"<img", b"<div",
    b"<form", b"<link", b"<base", b"<math", b"<title",
)
# Markers of active content that must not hide inside an image or an audio file.
EMBEDDED_SCRIPT_MARKERS = (b"<?php", b"<script", b"<html", b"<iframe", b"javascript:", b"<!doctype html")
# What another format starts with, when found where this one should have ended.
FOREIGN_SIGNATURES = (
    b"PK\x03\x04", b"PK\x05\x06", b"PK\x01\x02", b"Rar!\x1a\x07", b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b\x08",
    b"MZ", b"\x7fELF", b"%PDF", b"<?php", b"<script", b"<html", b"<svg", b"#!",
)
ZIP_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"


def _text_start(head: bytes) -> bytes:
    """The lower-cased start of the file as text, past a byte-order mark and blanks."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head.decode("utf-16", "ignore").encode("utf-8", "replace")
    while head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip(b" \t\r\n\x0c\x00")
    return head.lstrip(b" \t\r\n\x0c\x00")[:64].lower()


def dangerous(head: bytes) -> tuple[str, str] | None:
    """(reason code, what it is) when the file is an executable, a script or a web page."""
    for magic, what in EXECUTABLE_MAGIC:
        if head.startswith(magic):
            return "executable", what
    if head.startswith(b"#!") and not head.startswith(b"#!AMR"):
        return "script", "сценарий командной оболочки"
    text = _text_start(head)
    for prefix in SCRIPT_PREFIXES:
        if text.startswith(prefix):
            return "script", "разметка HTML/SVG/XML или серверный скрипт"
    return None


def _mpeg_audio_frame(head: bytes, offset: int = 0) -> bool:
    if len(head) < offset + 4:
        return False
    b1, b2, b3 = head[offset + 1], head[offset + 2], head[offset + 3]
    if head[offset] != 0xFF or (b1 & 0xE0) != 0xE0:
        return False
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate, rate, emphasis = b2 >> 4, (b2 >> 2) & 3, b3 & 3
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3 and emphasis != 2


# Formats told by their first bytes alone (none of them starts like another or like an MPEG frame).
PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"%PDF-", PDF),
    (b"PK\x03\x04", ZIP),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", OLE),
    (b"{\\rtf", RTF),
    (b"OggS", OGG),
    (b"#!AMR\n", AMR),
    (b"#!AMR-WB\n", AMR),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"fLaC", "audio/flac"),
    (b"\x1f\x8b", "application/gzip"),
    (b"Rar!\x1a\x07", "application/x-rar"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
)
RIFF_FORMATS = {b"WAVE": WAV, b"WEBP": "image/webp"}


def sniff(head: bytes) -> str | None:
    """The content type the first bytes announce, or None when they announce nothing we know."""
    for prefix, content_type in PREFIXES:
        if head.startswith(prefix):
            return content_type
    if head.startswith(b"ID3") and len(head) >= 10 and head[3] in (2, 3, 4):
        return MP3
    if _mpeg_audio_frame(head):
        return MP3
    if head.startswith(b"RIFF") and head[8:12] in RIFF_FORMATS:
        return RIFF_FORMATS[head[8:12]]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in HEIC_BRANDS:
            return "image/heic"
        if brand in MP4_BRANDS:
            return M4A
    if head.startswith(b"BM") and len(head) >= 14:
        return "image/bmp"
    return None


def describe(content_type: str | None) -> str:
    if content_type is None:
        return "неизвестный формат"
    return DESCRIPTIONS.get(content_type, content_type)


def foreign_signature(data: bytes) -> bytes | None:
    for signature in FOREIGN_SIGNATURES:
        if signature in data:
            return signature
    return None
