"""Who is calling and what they may do: sessions, roles, city and ownership scope.

Sessions are JWTs carried in an httpOnly cookie (the SPA) or an `Authorization: Bearer` header.
Each token carries a session id (`sid`); logout revokes the session in Redis, so every token of
that session (including silently extended ones) stops working at once. A token is re-issued while
it is used, up to SESSION_MAX_HOURS after sign-in, so nobody is logged out in the middle of a shift.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable
from urllib.parse import urlsplit

import jwt as pyjwt
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
)
from flask_jwt_extended import current_user as jwt_current_user
from flask_jwt_extended import get_jwt, get_jwt_request_location, set_access_cookies, verify_jwt_in_request
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt.exceptions import PyJWTError
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import make_transient_to_detached

from api.errors import ApiError, error_response
from models.db import Session
from models.enums import ADMIN, DIRECTOR, MANAGER, MASTER
from models.kv import get_redis, key
from models.lookups import City, Role
from models.users import User, user_generation_key
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

def _session_key(sid: str) -> str:
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
        },
        expires_delta=timedelta(seconds=max(lifetime, 1)),
    )


def revoke_session(claims: dict) -> None:
    """Revoke the session the token belongs to, for as long as any of its tokens could live."""
    sid = claims.get("sid")
    if not sid:
        return
    remaining = int(claims.get("sst", time.time())) + settings.SESSION_MAX_HOURS * 3600 - int(time.time())
    get_redis().set(_session_key(sid), "1", ex=max(remaining, 1) + 60)


# ---- the signed-in user, cached per process --------------------------------------------------------

USER_CACHE_SECONDS = 60.0
_user_cache: dict[tuple[int, str], tuple[bytes, float, dict]] = {}


def _snapshot(user: User) -> dict:
    """What rebuilds the user without the database: its columns and its role and city names."""
    columns = {attr.key: getattr(user, attr.key) for attr in sa_inspect(User).column_attrs}
    return {
        "columns": columns,
        "role": {"id": user.role.id, "name": user.role.name},
        "city": None if user.city is None else {"id": user.city.id, "name": user.city.name},
    }


def _attached(snapshot: dict) -> User:
    """A session-bound user rebuilt from a snapshot, without a query (merge with load=False)."""
    user = User(**snapshot["columns"])
    user.role = Role(**snapshot["role"])
    user.city = None if snapshot["city"] is None else City(**snapshot["city"])
    for obj in (user, user.role, user.city):
        if obj is not None:
            make_transient_to_detached(obj)
    return Session.merge(user, load=False)


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
        _user_cache[(user_id, sid)] = (generation, time.monotonic(), _snapshot(user))
    return user


def init_jwt_callbacks(jwt: JWTManager) -> None:
    @jwt.user_lookup_loader
    def load_user(_header: dict, claims: dict) -> User | None:
        try:
            user_id = int(claims["sub"])
        except (KeyError, TypeError, ValueError):
            return None
        user = signed_in_user(user_id, str(claims.get("sid")), g.pop("user_generation", None))
        if user is None or not user.may_sign_in:
            return None
        return user

    @jwt.token_in_blocklist_loader
    def is_revoked(_header: dict, claims: dict) -> bool:
        sid = claims.get("sid")
        if not sid:
            return True
        # Fail closed: if Redis cannot say the session is alive, the request is refused (503 below).
        # The user's generation comes back in the same round trip (see signed_in_user).
        pipe = get_redis().pipeline(transaction=False)
        pipe.exists(_session_key(sid))
        pipe.get(user_generation_key(claims.get("sub", "")))
        revoked, generation = pipe.execute()
        g.user_generation = generation or b"0"
        return bool(revoked)

    @jwt.user_lookup_error_loader
    def user_gone(_header: dict, _claims: dict) -> Response:
        return error_response(401, "Пользователь не найден или отключён", "user_inactive")

    @jwt.unauthorized_loader
    def missing_token(_reason: str) -> Response:
        return error_response(401, "Требуется вход в систему", "not_authenticated")

    @jwt.invalid_token_loader
    def invalid_token(_reason: str) -> Response:
        return error_response(401, "Недействительный токен, войдите снова", "token_invalid")

    @jwt.expired_token_loader
    def expired_token(_header: dict, _claims: dict) -> Response:
        return error_response(401, "Сессия истекла, войдите снова", "token_expired")

    @jwt.revoked_token_loader
    def revoked_token(_header: dict, _claims: dict) -> Response:
        return error_response(401, "Сессия завершена, войдите снова", "token_revoked")


def init_session_extension(app: Flask) -> None:
    @app.after_request
    def extend_session(response: Response) -> Response:
        """Re-issue a token that has used half its idle lifetime, while the user keeps working."""
        user = g.get("current_user")
        if user is None or response.status_code >= 400 or g.get("session_ended"):
            return response
        try:
            claims = get_jwt()
        except RuntimeError:
            return response
        remaining = claims["exp"] - time.time()
        if remaining > settings.SESSION_IDLE_MINUTES * 60 / 2:
            return response
        hard_end = claims.get("sst", 0) + settings.SESSION_MAX_HOURS * 3600
        if hard_end - time.time() <= remaining:
            return response  # the session cannot be extended past its hard end
        token = issue_token(user, sid=claims["sid"], started_at=claims["sst"])
        if get_jwt_request_location() == "cookies":
            set_access_cookies(response, token, max_age=settings.SESSION_IDLE_MINUTES * 60)
        else:
            response.headers["X-Access-Token"] = token
        return response


def optional_user_id() -> int | None:
    """The user id a valid token names, for rate-limit keys only.

    Signature and expiry are checked; the session store and the user row are not (the view's own
    authentication does that), so limiting costs no extra Redis or database round trip.
    """
    if "rate_limit_user" in g:
        return g.rate_limit_user
    user_id = None
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get("access_token")
    if token:
        try:
            # PyJWT directly: flask-jwt-extended's decode_token costs several times more for the same checks.
            config = current_app.config
            claims = pyjwt.decode(token, config.get("JWT_SECRET_KEY") or config["SECRET_KEY"],
                                  algorithms=[config.get("JWT_ALGORITHM", "HS256")],
                                  options={"require": ["exp", "sub"]}, leeway=config.get("JWT_DECODE_LEEWAY", 0))
            user_id = int(claims["sub"])
        except (PyJWTError, KeyError, TypeError, ValueError):
            user_id = None
    g.rate_limit_user = user_id
    return user_id


# ---- origin check -------------------------------------------------------------------------------

def _origin_allowed(origin: str) -> bool:
    if origin in settings.cors_origins:
        return True
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc == request.host


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
    """Verify the token (cookie or bearer), the session and the user; set g.current_user."""
    try:
        verify_jwt_in_request()
    except (JWTExtendedException, PyJWTError):
        raise
    except Exception as exc:  # the session store cannot be asked: refuse rather than guess
        log.error("session check failed: %s", type(exc).__name__)
        raise ApiError(503, "Сервис сессий недоступен, повторите позже", code="session_store_unavailable")
    user = jwt_current_user
    check_origin()
    g.current_user = user._get_current_object() if hasattr(user, "_get_current_object") else user
    return g.current_user


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


# ---- scope: which cities and requests a user may touch --------------------------------------------

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


def may_access_request(user: User, *, city_id: int | None, master_id: int | None) -> bool:
    if user.role_name == MASTER:
        return master_id == user.id
    return may_access_city(user, city_id)


def require_request_access(user: User, *, city_id: int | None, master_id: int | None) -> None:
    if not may_access_request(user, city_id=city_id, master_id=master_id):
        if user.role_name == MASTER:
            raise ApiError(403, "Мастер видит только свои заявки", code="not_own_request")
        raise ApiError(403, "Нет доступа к данным другого города", code="other_city")


def has_role(user: User, roles: Iterable[str]) -> bool:
    return user.role_name in set(roles) | {ADMIN}


MANAGEMENT_ROLES = (ADMIN, MANAGER)
OFFICE_ROLES = (ADMIN, MANAGER, DIRECTOR)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
