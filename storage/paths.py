"""Relative media paths as stored and as the SPA sends them back: only the layout, nothing else.

A stored path is `<folder>/<random name>.<ext>` with a folder of the layout (`zayvka/bso`, ...).
Anything that tries to leave that shape (`..`, an absolute path, backslashes, percent signs left
after the server decoded the URL once, NUL, empty segments) is refused before the disk or the
database is asked, so the answer tells nothing about what exists.
"""
from __future__ import annotations

import posixpath
import re

from storage.kinds import MEDIA_DIRECTORIES

MAX_PATH_LENGTH = 300
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}\.[a-z0-9]{1,8}")
LEGACY_PREFIX = "media/"


class BadPath(Exception):
    """A traversal attempt or a path that can never be a media file: 403."""


class PathNotFound(Exception):
    """A well-formed path that names no file: 404."""


def check_relative_path(path: str) -> str:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise PathNotFound(path)
    if (
        "\x00" in path or "\\" in path or "%" in path or ":" in path or path.startswith("/")
        or "//" in path or any(part in (".", "..") for part in path.split("/"))
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path)
    ):
        raise BadPath(path)
    if posixpath.normpath(path) != path:
        raise BadPath(path)
    directory, _, name = path.rpartition("/")
    if directory not in MEDIA_DIRECTORIES or not NAME_RE.fullmatch(name):
        raise PathNotFound(path)
    return path


def strip_legacy_prefix(path: str) -> str:
    """Old rows and old links carry `media/` in front; the SPA strips it, other clients may not."""
    return path[len(LEGACY_PREFIX):] if path.startswith(LEGACY_PREFIX) else path
