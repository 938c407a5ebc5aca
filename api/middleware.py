"""WSGI path normalisation: the same API under /api and /api/v1, trailing slash or not."""
from __future__ import annotations

V1_PREFIX = "/api/v1"


class PathNormalizer:
    """Rewrites `/api/v1/x/` to `/api/x` before routing.

    Every route is declared once, without a trailing slash; the SPA's slash-terminated paths and
    the versioned mount reach it directly, with no redirect (a redirected POST would lose its body).
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == V1_PREFIX or path.startswith(V1_PREFIX + "/"):
            path = "/api" + path[len(V1_PREFIX):]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        environ["PATH_INFO"] = path
        return self.wsgi_app(environ, start_response)
