"""Sign in, sign out, who am I."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import g, jsonify
from flask.views import MethodView
from flask_jwt_extended import get_jwt, set_access_cookies, unset_jwt_cookies
from sqlalchemy import func, select

from api.auth import lockout
from api.auth.schemas import LoginResultSchema, LoginSchema, MeSchema, MessageSchema, PasswordChangeSchema
from api.errors import ApiError
from api.extensions import Blueprint
from api.gate import limited
from api.security import authenticate, client_ip, issue_token, login_required, renew_current_session, revoke_session
from models.core.db import Session
from models.core.enums import ADMIN, MASTER
from models.people.passwords import hash_password, needs_rehash, verify_password
from models.people.tables import User
from settings import settings

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Sign in and sessions")


def user_type_of(user: User) -> str:
    """The class-like user type the old /auth/me returned."""
    if user.role_name == MASTER:
        return "master"
    if user.role_name == ADMIN:
        return "administrator"
    return "employee"


def _locked_error(seconds: int) -> ApiError:
    minutes = max(1, (seconds + 59) // 60)
    return ApiError(
        423,
        f"Слишком много неудачных попыток входа. Повторите через {minutes} мин.",
        code="login_locked",
        headers={"Retry-After": str(seconds)},
    )


@blp.route("/login")
class Login(MethodView):
    decorators = [limited("login", lambda: settings.RATE_LIMIT_LOGIN)]

    @blp.arguments(LoginSchema)
    @blp.response(200, LoginResultSchema)
    @blp.alt_response(401, description="Wrong login or password")
    @blp.alt_response(403, description="The account is not active")
    @blp.alt_response(423, description="Locked after too many failures")
    def post(self, body):
        """Sign in: sets the session cookie and returns the token for bearer clients."""
        login, password, ip = body["login"].strip(), body["password"], client_ip()
        seconds = lockout.locked_for(login, ip)
        if seconds:
            raise _locked_error(seconds)
        user = Session.scalar(select(User).where(func.lower(User.login) == login.lower()))
        if not verify_password(user.password_hash if user else None, password):
            seconds = lockout.record_failure(login, ip)
            if seconds:
                raise _locked_error(seconds)
            raise ApiError(401, "Неверный логин или пароль", code="invalid_credentials")
        if not user.may_sign_in:
            lockout.record_failure(login, ip)
            raise ApiError(403, "Учётная запись не активна", code="user_inactive")
        lockout.clear_failures(login, ip)
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.last_login_at = datetime.now(timezone.utc)
        Session.commit()
        token = issue_token(user)
        response = jsonify(
            LoginResultSchema().dump(
                {
                    "user_id": user.id,
                    "user_type": user.role_name,
                    "role": user.role_name,
                    "city_id": user.city_id,
                    "access_token": token,
                    "token_type": "bearer",  # nosec B105 # the token type name, not a secret
                }
            )
        )
        set_access_cookies(response, token, max_age=settings.SESSION_IDLE_MINUTES * 60)
        return response


@blp.route("/logout")
class Logout(MethodView):
    @blp.response(200, MessageSchema)
    def post(self):
        """Sign out: revokes the session (every token of it) and clears the cookie.

        Answers 200 even without a valid session, so the SPA can always clear its state."""
        try:
            authenticate()
            revoke_session(get_jwt())
            g.session_ended = True
        except Exception:  # noqa: BLE001 - signing out without a session is not an error
            pass
        response = jsonify({"message": "Вы вышли из системы"})
        unset_jwt_cookies(response)
        return response


@blp.route("/me")
class Me(MethodView):
    @login_required
    @blp.response(200, MeSchema)
    def get(self):
        """The signed-in user."""
        user = g.current_user
        return {
            "id": user.id,
            "login": user.login,
            "name": user.full_name,
            "full_name": user.full_name,
            "status": user.status,
            "user_type": user_type_of(user),
            "role": user.role_name,
            "city_id": user.city_id,
        }


@blp.route("/password")
class PasswordChange(MethodView):
    decorators = [limited("password", lambda: settings.RATE_LIMIT_LOGIN)]

    @login_required
    @blp.arguments(PasswordChangeSchema)
    @blp.response(200, MessageSchema)
    @blp.alt_response(403, description="The current password is wrong")
    def post(self, body):
        """Change your own password: every other session of yours ends, this one goes on (re-issued)."""
        user = g.current_user
        if not verify_password(user.password_hash, body["current_password"]):
            raise ApiError(403, "Неверный текущий пароль", code="invalid_credentials",
                           errors={"current_password": ["Неверный текущий пароль"]})
        if verify_password(user.password_hash, body["new_password"]):
            raise ApiError(422, "Новый пароль совпадает с текущим", code="validation_error",
                           errors={"new_password": ["Новый пароль совпадает с текущим"]})
        user.set_password(body["new_password"])
        Session.commit()
        renew_current_session()
        return {"message": "Пароль изменён"}
