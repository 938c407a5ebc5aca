"""Media storage: quarantine, validation rules, promotion into the media layout, safe paths, serving.

- kinds.py: what may be uploaded for what (owner, folder, extensions, cap);
- upload.py: a multipart body streamed into the quarantine under a hard cap, memory bounded;
- names.py, sniff.py, validation.py: the checks a worker runs before a file is trusted;
- backend.py: the storage interface and its local-disk implementation (quarantine, promotion);
- s3.py: the same interface on an S3-compatible bucket (STORAGE_BACKEND=s3);
- migrate.py: copying the media layout from one backend to another, verified by sha256;
- paths.py: the only relative paths a media URL may name;
- serving.py: the response that sends a file to a browser.
"""
from storage.backend import LocalStorage, Storage, configure, get_storage
from storage.kinds import KINDS, Kind
from storage.paths import BadPath, PathNotFound
from storage.rejections import REASONS, Rejected

__all__ = [
    "KINDS", "REASONS", "BadPath", "Kind", "LocalStorage", "PathNotFound", "Rejected", "Storage", "configure",
    "get_storage",
]
