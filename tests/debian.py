"""System tools some tests need (Dovecot, docker-compose, promtool), installed from Debian's packages.

The test setup installs them itself so a fresh machine needs nothing by hand: `apt-get update` once per
run, then `apt-get install` of whatever is missing. A machine where that is impossible (no root, no
apt) skips the tests that need the tool, naming why.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest

_lock = threading.Lock()
_updated = False


def _apt(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, timeout=900)


def ensure_tool(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` when it is missing."""
    global _updated
    found = shutil.which(command) or _sbin(command)
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"{command} is missing and cannot be installed here (needs root and apt-get)")
    with _lock:
        if not _updated:
            _apt("update", "-q")
            _updated = True
        done = _apt("install", "-y", "-q", "--no-install-recommends", package)
    found = shutil.which(command) or _sbin(command)
    if not found:
        pytest.fail(f"apt-get install {package} did not provide {command}: {done.stderr[-2000:]}")
    return found


def _sbin(command: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/lib/dovecot"):
        path = os.path.join(folder, command)
        if os.access(path, os.X_OK):
            return path
    return None
