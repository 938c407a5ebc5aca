"""Send a validated media file to a browser: the type we sniffed, never a guess; inline only for the
types the SPA shows (img, iframe for PDF, audio); a safe Content-Disposition; no sniffing, no framing
by other sites, no scripts. nginx sends the bytes itself when X-Accel-Redirect is configured (the
ownership check has run here first). From an S3 bucket the bytes are streamed through the API with the
same headers (ranges asked of S3 itself), or, with S3_PRESIGN_SECONDS, the answer is a redirect to a
presigned URL that carries the type, disposition and caching (S3 cannot add the other headers)."""
from __future__ import annotations

import os
from urllib.parse import quote

from flask import Response, redirect, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import is_resource_modified
from werkzeug.wsgi import wrap_file

from storage.backend import LocalStorage, Storage
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


def file_response(storage: Storage, relative_path: str, *, content_type: str, filename: str,
                  sha256: str | None, download: bool) -> Response:
    """The response for one media file. Raises storage.paths.BadPath / PathNotFound."""
    content_type = content_type or "application/octet-stream"
    inline = not download and content_type in INLINE_TYPES
    headers = security_headers(content_type, inline=inline)
    headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", filename)
    if not isinstance(storage, LocalStorage):
        return _streamed_response(storage, relative_path, content_type, headers, sha256)

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


def _streamed_response(storage: Storage, relative_path: str, content_type: str, headers: dict[str, str],
                       sha256: str | None) -> Response:
    """A file of a remote store: a presigned redirect, or its bytes relayed chunk by chunk (a range is
    asked of the store, never cut from the whole)."""
    size, modified = storage.media_info(relative_path)
    presign = getattr(storage, "presign_seconds", 0)
    if presign:
        url = storage.presigned_url(relative_path, content_type=content_type,  # type: ignore[attr-defined]
                                    disposition=headers["Content-Disposition"],
                                    cache_control=f"private, max-age={min(presign, MAX_AGE_SECONDS)}")
        response = redirect(url, code=302)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    response = Response(status=200, content_type=content_type, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    response.last_modified = modified  # type: ignore[assignment]
    if sha256:
        response.set_etag(sha256)
    etag = sha256 if sha256 else None
    # As werkzeug's make_conditional: a range when If-Range (if any) still matches, else 304 or the whole.
    wanted = request.range
    if wanted is not None and ("HTTP_IF_RANGE" not in request.environ or not is_resource_modified(
            request.environ, etag=etag, last_modified=response.last_modified, ignore_if_range=False)):
        span = wanted.range_for_length(size)
        if span is None:
            raise RequestedRangeNotSatisfiable(length=size)
        start, end = span
        response.status_code = 206
        response.response = storage.read_media(relative_path, start, end)
        response.content_length = end - start
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        return response
    if not is_resource_modified(request.environ, etag=etag, last_modified=response.last_modified):
        response.status_code = 412 if request.if_match else 304
        return response
    response.response = storage.read_media(relative_path)
    response.content_length = size
    return response
