"""Who is calling and what they may do: sessions, roles, city scope.

Sessions are JWTs carried in an httpOnly cookie (the SPA) or an `Authorization: Bearer` header.
Each token carries a session id (`sid`); logout revokes the session in Redis, so every token of
that session (including silently extended ones) stops working at once. Each token also carries the
user's session epoch (`ep`, models/people/tables.py): a new password, role or city, or losing the right
to sign in moves the epoch and so ends every session of the user; the epoch is read from the user row
the gate's round trip already keeps fresh (its generation), so the check costs no further round trip.
A token is re-issued while it is used, up to SESSION_MAX_HOURS after sign-in, so nobody is logged out
in the middle of a shift.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import secrets
import time
from datetime import timedelta
from typing import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from flask_jwt_extended import create_access_token, get_jwt, get_jwt_request_location, set_access_cookies
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import make_transient_to_detached

from api.errors import ApiError
from api.gate import token_state
from models.core.db import Session
from models.core.enums import ADMIN, DIRECTOR, MASTER
from models.core.redis import get_redis, key
from models.directories.tables import City, Role
from models.people.tables import User
from settings import settings

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# ---- client identity ----------------------------------------------------------------------------

def client_ip() -> str:
    """The caller's address. ProxyFix (TRUSTED_PROXIES hops) has already replaced remote_addr with
    the address the trusted proxies saw; a client-sent X-Forwarded-For is never read directly."""
    addr = request.remote_addr or "unknown"
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return "unknown"


# ---- tokens -------------------------------------------------------------------------------------

def session_key(sid: str) -> str:
    return key("session", "revoked", sid)


def issue_token(user: User, *, sid: str | None = None, started_at: int | None = None) -> str:
    """A token for `user`; expires after the idle period, never past the session's hard end."""
    started_at = started_at or int(time.time())
    hard_end = started_at + settings.SESSION_MAX_HOURS * 3600
    lifetime = min(settings.SESSION_IDLE_MINUTES * 60, hard_end - int(time.time()))
    return create_access_token(
        identity=str(user.id),
        additional_claims={
            "sid": sid or secrets.token_urlsafe(16),
            "sst": started_at,
            "role": user.role_name,
            "ep": user.session_epoch or 0,
        },
        expires_delta=timedelta(seconds=max(lifetime, 1)),
    )


def revoke_session(claims: dict) -> None:
    """Revoke the session the token belongs to, for as long as any of its tokens could live."""
    sid = claims.get("sid")
    if not sid:
        return
    remaining = int(claims.get("sst", time.time())) + settings.SESSION_MAX_HOURS * 3600 - int(time.time())
    get_redis().set(session_key(sid), "1", ex=max(remaining, 1) + 60)


# ---- the signed-in user, cached per process --------------------------------------------------------

USER_CACHE_SECONDS = 60.0
_user_cache: dict[tuple[int, str], tuple[bytes, float, User]] = {}


def _detached_copy(user: User) -> User:
    """A copy of the user (its columns, role and city) that belongs to no session: what the cache
    keeps, never handed out itself (each call gets it merged into its own session)."""
    columns = {attr.key: getattr(user, attr.key) for attr in sa_inspect(User).column_attrs}
    copy = User(**columns)
    copy.role = Role(id=user.role.id, name=user.role.name)
    copy.city = None if user.city is None else City(id=user.city.id, name=user.city.name)
    for obj in (copy, copy.role, copy.city):
        if obj is not None:
            make_transient_to_detached(obj)
    return copy


def _attached(cached: User) -> User:
    """The cached user in this call's session, without a query (merge with load=False copies it)."""
    return Session.merge(cached, load=False)


def signed_in_user(user_id: int, sid: str, generation: bytes | None) -> User | None:
    """The user row, from this process's cache while its generation in Redis has not moved.

    Entries are per session as well as per user, so nothing cached can outlive the session it was
    loaded for (a database rebuilt with the same ids, as tests do, never meets an old entry)."""
    if generation is not None:
        cached = _user_cache.get((user_id, sid))
        if cached is not None and cached[0] == generation and time.monotonic() - cached[1] < USER_CACHE_SECONDS:
            return _attached(cached[2])
    user = Session.get(User, user_id)
    if user is not None and generation is not None:
        if len(_user_cache) > 10_000:
            _user_cache.clear()
        _user_cache[(user_id, sid)] = (generation, time.monotonic(), _detached_copy(user))
    return user


def _token_user(claims: dict, generation: str | None) -> User | None:
    try:
        user_id = int(claims["sub"])
    except (KeyError, TypeError, ValueError):
        return None
    user = signed_in_user(user_id, str(claims.get("sid")), generation)
    if user is None or not user.may_sign_in:
        return None
    return user


def renew_current_session() -> None:
    """Re-issue this call's token under the user's current epoch when the call succeeds: the user
    changed their own password, which ends their other sessions but not the one they are using."""
    g.renew_session = True


def init_session_extension(app: Flask) -> None:
    @app.after_request
    def extend_session(response: Response) -> Response:
        """Re-issue a token that has used half its idle lifetime, while the user keeps working (or
        at once, under the new epoch, when renew_current_session() asked for it)."""
        user = g.get("current_user")
        if user is None or response.status_code >= 400 or g.get("session_ended"):
            return response
        try:
            claims = get_jwt()
        except RuntimeError:
            return response
        remaining = claims["exp"] - time.time()
        if g.get("renew_session"):
            Session.refresh(user)  # the epoch the call committed
        elif remaining > settings.SESSION_IDLE_MINUTES * 60 / 2:
            return response
        hard_end = claims.get("sst", 0) + settings.SESSION_MAX_HOURS * 3600
        if hard_end - time.time() <= remaining and not g.get("renew_session"):
            return response  # the session cannot be extended past its hard end
        token = issue_token(user, sid=claims["sid"], started_at=claims["sst"])
        if get_jwt_request_location() == "cookies":
            set_access_cookies(response, token, max_age=settings.SESSION_IDLE_MINUTES * 60)
        else:
            response.headers["X-Access-Token"] = token
        return response


# ---- origin check -------------------------------------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_key(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin or URL, the port spelt out (80, 443 by default);
    None for anything else (`null`, another scheme, a malformed port)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _origin_allowed(origin: str) -> bool:
    """The origin is one of CORS_ORIGINS or the API's own (as the client reached it: behind
    TRUSTED_PROXIES, ProxyFix has set the scheme and host): scheme, host and port all match, so
    `http://api.host` is not `https://api.host`."""
    caller = origin_key(origin)
    if caller is None:
        return False
    own = origin_key(f"{request.scheme}://{request.host}")
    return caller == own or any(caller == origin_key(allowed) for allowed in settings.cors_origins)


def check_origin() -> None:
    """Cookies are sent by the browser on its own; an unsafe call carried by a cookie must come
    from one of our SPA origins (or the API's own origin), never from a third-party page."""
    if request.method not in UNSAFE_METHODS or get_jwt_request_location() != "cookies":
        return
    origin = request.headers.get("Origin")
    if not origin:
        referer = request.headers.get("Referer")
        if referer:
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
    if not origin or not _origin_allowed(origin):
        raise ApiError(403, "Запрос с недопустимого источника", code="origin_forbidden")


# ---- authentication and roles -------------------------------------------------------------------

def current_user() -> User:
    user = g.get("current_user")
    if user is None:
        raise ApiError(401, "Требуется вход в систему", code="not_authenticated")
    return user


def authenticate() -> User:
    """Verify the token (cookie or bearer), the session and the user; set g.current_user.

    The gate (api/gate.py) has already decoded the token and asked Redis about the session."""
    if "current_user" in g:
        return g.current_user
    state = token_state()
    if state.location is None:
        raise ApiError(401, "Требуется вход в систему", code="not_authenticated")
    if state.error == "expired":
        raise ApiError(401, "Сессия истекла, войдите снова", code="token_expired")
    if state.error:
        raise ApiError(401, "Недействительный токен, войдите снова", code="token_invalid")
    if state.revoked is None:  # the session store cannot be asked: refuse rather than guess
        raise ApiError(503, "Сервис сессий недоступен, повторите позже", code="session_store_unavailable")
    if state.revoked:
        raise ApiError(401, "Сессия завершена, войдите снова", code="token_revoked")
    user = _token_user(state.claims, state.generation)
    if user is None:
        raise ApiError(401, "Пользователь не найден или отключён", code="user_inactive")
    if state.claims.get("ep", 0) != (user.session_epoch or 0):
        raise ApiError(401, "Сессия завершена, войдите снова", code="token_revoked")
    # What flask-jwt-extended's helpers read (get_jwt, get_jwt_request_location).
    g._jwt_extended_jwt_user = {"loaded_user": user}
    g._jwt_extended_jwt_header = state.header
    g._jwt_extended_jwt = state.claims
    g._jwt_extended_jwt_location = state.location
    check_origin()
    g.current_user = user
    return user


def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        authenticate()
        return view(*args, **kwargs)

    wrapper._leadline_auth = True  # noqa: SLF001 - read by the authorization matrix test
    return wrapper


def roles_required(*roles: str) -> Callable[[Callable], Callable]:
    """Allow only these roles (admin is always allowed)."""
    allowed = frozenset(roles) | {ADMIN}

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = authenticate()
            if user.role_name not in allowed:
                raise ApiError(403, "Недостаточно прав", code="forbidden")
            return view(*args, **kwargs)

        wrapper._leadline_roles = allowed  # noqa: SLF001
        return wrapper

    return decorator


# ---- scope: which cities a user may touch ---------------------------------------------------------

def city_scope(user: User) -> int | None:
    """None = every city. Directors and masters are held to their city (a director without a city
    sees all); everyone else works across cities."""
    if user.role_name in (DIRECTOR, MASTER):
        return user.city_id
    return None


def may_access_city(user: User, city_id: int | None) -> bool:
    scope = city_scope(user)
    return scope is None or scope == city_id


def require_city(user: User, city_id: int | None) -> None:
    if not may_access_city(user, city_id):
        raise ApiError(403, "Нет доступа к данным другого города", code="other_city")
