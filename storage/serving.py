"""Send a validated media file to a browser: the type we sniffed, never a guess; inline only for the
types the SPA shows (img, iframe for PDF, audio); a safe Content-Disposition; no sniffing, no framing
by other sites, no scripts. nginx sends the bytes itself when X-Accel-Redirect is configured (the
ownership check has run here first)."""
from __future__ import annotations

import os
from urllib.parse import quote

from flask import Response, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from storage.backend import LocalStorage
from storage.kinds import AMR, JPEG, M4A, MP3, OGG, PDF, PNG, WAV
from storage.names import ascii_fallback

INLINE_TYPES = frozenset({JPEG, PNG, PDF, MP3, WAV, OGG, M4A, AMR})
MAX_AGE_SECONDS = 3600


def content_disposition(disposition: str, filename: str) -> str:
    """`inline|attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>` (RFC 6266/5987)."""
    fallback = ascii_fallback(filename).replace('"', "")
    encoded = quote(filename, safe="!#$&+-.^_`|~")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def security_headers(content_type: str, *, inline: bool) -> dict[str, str]:
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": f"private, max-age={MAX_AGE_SECONDS}",
    }
    if inline:
        # The SPA shows a PDF in an <iframe>: framing by our own origin only.
        headers["X-Frame-Options"] = "SAMEORIGIN"
        headers["Content-Security-Policy"] = (
            "frame-ancestors 'self'" if content_type == PDF else "default-src 'none'; frame-ancestors 'self'; sandbox"
        )
    else:
        headers["X-Frame-Options"] = "DENY"
        headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'; sandbox"
    return headers


def file_response(storage: LocalStorage, relative_path: str, *, content_type: str, filename: str,
                  sha256: str | None, download: bool) -> Response:
    """The response for one media file. Raises storage.paths.BadPath / PathNotFound."""
    content_type = content_type or "application/octet-stream"
    inline = not download and content_type in INLINE_TYPES
    headers = security_headers(content_type, inline=inline)
    headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", filename)

    if storage.accel_prefix:
        storage.open_media(relative_path, stat_only=True)  # the same symlink and existence checks
        response = Response(status=200, content_type=content_type, headers=headers)
        response.headers["X-Accel-Redirect"] = storage.accel_prefix.rstrip("/") + "/" + quote(relative_path)
        return response

    handle = storage.open_media(relative_path)
    stat = os.fstat(handle.fileno())
    response = Response(wrap_file(request.environ, handle), content_type=content_type, headers=headers,
                        direct_passthrough=True)
    response.content_length = stat.st_size
    response.last_modified = stat.st_mtime  # type: ignore[assignment]
    if sha256:
        response.set_etag(sha256)
    try:
        return response.make_conditional(request.environ, accept_ranges=True, complete_length=stat.st_size)
    except RequestedRangeNotSatisfiable:
        handle.close()
        raise
