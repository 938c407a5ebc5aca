"""Development-only secrets, generated once and kept under ./var so sessions survive restarts.

Never used in production: settings refuse to start there without real secrets.
"""
from __future__ import annotations

import json
import os
import secrets

from settings import VAR_DIR

SECRETS_FILE = VAR_DIR / "dev-secrets.json"


def development_secret(name: str, length: int = 48) -> str:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    try:
        known = json.loads(SECRETS_FILE.read_text())
    except (OSError, ValueError):
        known = {}
    if name not in known:
        known[name] = secrets.token_urlsafe(length)
        tmp = SECRETS_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(SECRETS_FILE)
    return known[name]
