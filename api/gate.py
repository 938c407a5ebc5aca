"""The gate every API call passes before its view: the token read once, the rate limits and the
session's state in one Redis round trip.

- The token (bearer header first, then the SPA's cookie) is decoded once with PyJWT: signature,
  expiry, `sub` and the access type. Its claims serve both the per-user rate limit and the view's
  authentication (api/security.authenticate), which then costs no further decoding or round trip.
- One Lua script counts the call against the client's and the user's fixed windows, says whether
  the session was revoked and returns the user's cache generation (see models/people/tables.py).
- `RATELIMIT_ENABLED = False` in the app's config turns counting off (the session is still read).
- An answer that is our fault (5xx: a 503 while PostgreSQL restarts, a 500) is taken off the counters
  again, so a client that retries through an outage is not refused with 429 once it is over.
- Redis down: the limits are skipped (a call is not refused because the counters cannot be
  reached), but the session cannot be confirmed, so an authenticated view answers 503.

Exempt: health probes, the metrics scrape, Mango's webhooks (Mango sets the pace; the allow-list
and the signature guard them) and CORS preflights. Limits of single routes (sign-in attempts per
client) use `hit()`, the same script and one round trip.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import jwt as pyjwt
from flask import Flask, current_app, g, request
from jwt.exceptions import ExpiredSignatureError, PyJWTError
from limits import parse as parse_limit

from api.errors import ApiError
from models.core.redis import get_redis, key
from models.people.tables import user_generation_key
from settings import settings

log = logging.getLogger(__name__)

EXEMPT_BLUEPRINTS = {"health", "mango_webhook"}
EXEMPT_ENDPOINTS = {"metrics"}

# KEYS ('' where not asked): client counter, user counter, session-revoked flag, user generation.
# ARGV: client limit and window, user limit and window.
# Returns: seconds until the client window ends when over its limit (else 0), the same for the user,
# whether the session is revoked, the user's generation.
GATE_SCRIPT = """
local over_client, over_user, revoked, generation = 0, 0, 0, false
local n
if KEYS[1] ~= '' then
  n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  if n > tonumber(ARGV[1]) then over_client = math.max(redis.call('TTL', KEYS[1]), 1) end
end
if KEYS[2] ~= '' then
  n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
  if n > tonumber(ARGV[3]) then over_user = math.max(redis.call('TTL', KEYS[2]), 1) end
end
if KEYS[3] ~= '' then revoked = redis.call('EXISTS', KEYS[3]) end
if KEYS[4] ~= '' then generation = redis.call('GET', KEYS[4]) end
return {over_client, over_user, revoked, generation}
"""

# KEYS: the counters a call was counted on. Each is decremented while its window lives (a window that
# ended meanwhile is not brought back as a key without expiry).
UNCOUNT_SCRIPT = """
for _, name in ipairs(KEYS) do
  if redis.call('EXISTS', name) == 1 then redis.call('DECR', name) end
end
return 0
"""


# Tokens this process has verified, with their claims: a client sends the same token with every
# call, and checking its signature again would only repeat the answer. Only the expiry is checked
# again (by the clock); a revoked session is the gate's script's business, not the token's.
VERIFIED_TOKENS_KEPT = 4096
_verified: dict[tuple[str, str, str], tuple[dict, dict]] = {}


@dataclass
class TokenState:
    """What the gate learnt about the caller's token; authenticate() turns it into a user or a 401."""

    location: str | None = None  # "headers" | "cookies" | None (no token)
    claims: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)
    error: str | None = None  # "expired" | "invalid"
    revoked: bool | None = None  # None: the session store could not be asked
    generation: str | None = None
    counted: list[str] = field(default_factory=list)  # the rate counters this call was counted on


def read_token() -> TokenState:
    """The caller's token, decoded and verified (signature, expiry, `sub`, access type)."""
    state = TokenState()
    config = current_app.config
    parts = request.headers.get("Authorization", "").split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        token, state.location = parts[1], "headers"
    else:  # no bearer header (or not a bearer one): the SPA's cookie
        token = request.cookies.get(config["JWT_ACCESS_COOKIE_NAME"])
        state.location = "cookies" if token else None
    if not token:
        return state
    secret = config.get("JWT_SECRET_KEY") or config["SECRET_KEY"]
    algorithm = config.get("JWT_ALGORITHM", "HS256")
    leeway = config.get("JWT_DECODE_LEEWAY", 0)
    verified = _verified.get((token, secret, algorithm))
    if verified is not None:  # the same bytes, already verified: only the clock can have changed
        if verified[0]["exp"] <= time.time() - leeway:
            state.error = "expired"
        else:
            state.claims, state.header = verified
        return state
    try:
        state.claims = pyjwt.decode(token, secret, algorithms=[algorithm],
                                    options={"require": ["exp", "sub"]}, leeway=leeway)
        state.header = pyjwt.get_unverified_header(token)
    except ExpiredSignatureError:
        state.error = "expired"
    except (PyJWTError, ValueError):
        state.error = "invalid"
    else:
        if state.claims.get("type") != "access" or not isinstance(state.claims.get("sub"), str):
            state.error, state.claims = "invalid", {}
        else:
            if len(_verified) >= VERIFIED_TOKENS_KEPT:
                _verified.clear()
            _verified[(token, secret, algorithm)] = (state.claims, state.header)
    return state


def _user_id(state: TokenState) -> str | None:
    sub = state.claims.get("sub") if state.error is None else None
    return sub if sub and sub.isdigit() else None


class Limits:
    """The per-client and per-user limits from settings, parsed once."""

    def __init__(self) -> None:
        self.source = None
        self.client = self.user = None

    def current(self):
        source = (settings.RATE_LIMIT_PER_CLIENT, settings.RATE_LIMIT_PER_USER)
        if source != self.source:  # settings can change at run time (tests, a reload)
            self.client, self.user = parse_limit(source[0]), parse_limit(source[1])
            self.source = source
        return self.client, self.user


_limits = Limits()


def _window_key(kind: str, who: str, item) -> str:
    return key("gate", kind, who, f"{item.amount}-{item.get_expiry()}")


def _script(name: str = "_leadline_gate", source: str = GATE_SCRIPT):
    client = get_redis()
    script = getattr(client, name, None)
    if script is None:
        script = client.register_script(source)
        setattr(client, name, script)  # one registration per client
    return script


def check(state: TokenState, *, count: bool) -> None:
    """Count the call (when `count`) and read the session state into `state`; raise 429 when over a limit."""
    from api.security import client_ip, session_key

    client_limit, user_limit = _limits.current()
    user_id = _user_id(state)
    sid = state.claims.get("sid") if user_id else None
    keys = [
        _window_key("client", client_ip(), client_limit) if count else "",
        _window_key("user", user_id, user_limit) if count and user_id else "",
        session_key(str(sid)) if sid else "",
        user_generation_key(user_id) if user_id else "",
    ]
    try:
        args = [client_limit.amount, client_limit.get_expiry(), user_limit.amount, user_limit.get_expiry()]
        over_client, over_user, revoked, generation = _script()(keys=keys, args=args)
    except Exception as exc:  # noqa: BLE001 - the store is down: limits skipped, the session unconfirmed
        log.warning("gate: session store unavailable: %s", type(exc).__name__)
        return
    state.revoked = bool(revoked) if sid else True  # a token without a session id is not a session
    state.generation = generation or "0"
    if count:
        state.counted = [name for name in keys[:2] if name]
        _refuse_if_over(max(int(over_client or 0), int(over_user or 0)))


def _refuse_if_over(wait_seconds: int) -> None:
    if wait_seconds:
        raise ApiError(429, "Слишком много запросов, повторите позже", code="rate_limited",
                       headers={"Retry-After": str(wait_seconds)})


def hit(name: str, who: str, limit: str) -> None:
    """Count one event against a limit of its own (e.g. sign-in attempts per client); 429 when over it."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    item = parse_limit(limit)
    try:
        over = _script()(keys=[_window_key(name, who, item), "", "", ""],
                         args=[item.amount, item.get_expiry(), 0, 0])[0]
    except Exception as exc:  # noqa: BLE001 - the counters cannot be reached: not a reason to refuse
        log.warning("gate: limit store unavailable: %s", type(exc).__name__)
        return
    _refuse_if_over(int(over or 0))


def limited(name: str, limit: Callable[[], str]) -> Callable:
    """A view decorator: every call counts against `limit()` per client address (read at call time)."""
    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            from api.security import client_ip

            hit(name, client_ip(), limit())
            return view(*args, **kwargs)
        return wrapper
    return decorator


def token_state() -> TokenState:
    """The gate's view of this call's token; computed here for calls the gate did not see."""
    state = g.get("gate")
    if state is None:
        state = g.gate = read_token()
        if state.claims:
            check(state, count=False)
    return state


def init_gate(app: Flask) -> None:
    @app.before_request
    def gate() -> None:
        if request.method == "OPTIONS" or request.endpoint in EXEMPT_ENDPOINTS:
            return
        if request.blueprint in EXEMPT_BLUEPRINTS:
            return
        state = g.gate = read_token()
        check(state, count=app.config.get("RATELIMIT_ENABLED", True))

    @app.after_request
    def uncount_our_errors(response):
        """A 5xx is ours, not the client's: it does not use up the client's or the user's limit."""
        state = g.get("gate")
        if response.status_code >= 500 and state is not None and state.counted:
            try:
                _script("_leadline_uncount", UNCOUNT_SCRIPT)(keys=state.counted)
            except Exception as exc:  # noqa: BLE001 - the store is down: nothing was counted either way
                log.warning("gate: limit store unavailable: %s", type(exc).__name__)
        return response
