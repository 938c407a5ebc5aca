"""Bringing existing files into the media layout (the import of the old backend's media folder).

The one function the import writes media through: routed to the configured storage backend, so a
backend that keeps media elsewhere (S3) gets the same copies by implementing `Storage.adopt`."""
from __future__ import annotations

from pathlib import Path

from storage.backend import get_storage


def adopt_file(source: Path, relative_path: str) -> bool:
    """Copy (or hard-link) `source` to `relative_path` under the media root, never moving it; a file
    of the same size already there is kept. True when it wrote."""
    return get_storage().adopt(source, relative_path)
