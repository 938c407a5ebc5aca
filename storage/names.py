"""The name a client gave a file: checked for tricks, normalised for display, its extension taken.

Names are never used to build a path on disk (files are stored under random names); they are
checked because a misleading name is how a user is tricked into opening a dangerous file
(`invoice<U+202E>gpj.exe` shows as `invoiceexe.jpg`), and because they are echoed back in downloads.
"""
from __future__ import annotations

import re
import unicodedata

from storage.rejections import Rejected

MAX_NAME_LENGTH = 255
WINDOWS_RESERVED = frozenset('<>:"|?*')
# Extensions that must not hide in the middle of a name (`shell.php.jpg`).
DANGEROUS_EXTENSIONS = frozenset({
    "exe", "bat", "cmd", "com", "pif", "scr", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "jar", "app",
    "deb", "pkg", "rpm", "dmg", "iso", "msi", "msp", "run", "bin", "sh", "bash", "ps1", "psm1", "php", "php3",
    "php4", "php5", "phtml", "phar", "py", "pyc", "rb", "pl", "cgi", "asp", "aspx", "jsp", "jspx", "htaccess",
    "html", "htm", "xhtml", "shtml", "svg", "svgz", "xml", "dll", "so", "lnk", "reg", "scf", "inf", "cpl",
    "docm", "dotm", "xlsm", "pptm", "apk", "elf",
})
EXTENSION_RE = re.compile(r"[a-z0-9]{1,8}")


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0


def _is_hidden_unicode(ch: str) -> bool:
    # Cf: format characters (bidi overrides and isolates, zero-width joiners, BOM, soft hyphen);
    # Co/Cs/Cn: private use, lone surrogates, unassigned code points.
    return unicodedata.category(ch) in ("Cf", "Co", "Cs", "Cn") or ch in "\u115f\u1160\u3164\uffa0"


def check_name(raw: str | None) -> tuple[str, str]:
    """(the name as it will be shown, its lower-case extension); Rejected with the reason otherwise."""
    if raw is None or not raw.strip():
        raise Rejected("name_missing")
    if len(raw) > MAX_NAME_LENGTH:
        raise Rejected("name_too_long")
    if any(_is_control(ch) for ch in raw):
        raise Rejected("name_control")
    if any(_is_hidden_unicode(ch) for ch in raw):
        raise Rejected("name_unicode")
    if "/" in raw or "\\" in raw or raw.lstrip().startswith("."):
        raise Rejected("name_path")
    if any(ch in WINDOWS_RESERVED for ch in raw):
        raise Rejected("name_chars")
    name = unicodedata.normalize("NFC", raw)
    if name != name.rstrip(". ") or name != name.lstrip(" "):
        raise Rejected("name_trailing")
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem.strip():
        raise Rejected("name_no_extension")
    # Full-width or look-alike letters that fold to ASCII (`photo.ｐｈｐ`) mask the real extension.
    if unicodedata.normalize("NFKC", extension) != extension:
        raise Rejected("name_unicode")
    extension = extension.lower()
    if not EXTENSION_RE.fullmatch(extension):
        raise Rejected("extension", f"«.{extension}»")
    inner = unicodedata.normalize("NFKC", stem).lower().split(".")[1:]
    hidden = [part for part in inner if part.strip() in DANGEROUS_EXTENSIONS]
    if hidden:
        raise Rejected("name_double_extension", f"«.{hidden[0].strip()}»")
    return name, extension


def ascii_fallback(name: str) -> str:
    """A plain ASCII version of a name for old clients (`filename=` of Content-Disposition)."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    extension = extension.lower() if EXTENSION_RE.fullmatch(extension.lower()) else ""

    def clean(text: str) -> str:
        folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
        return re.sub(r"[^A-Za-z0-9._ ()-]+", "_", folded).strip(" ._")

    stem = clean(stem)[:120] or "file"
    return f"{stem}.{extension}" if extension else stem
