"""One table for everyone who signs in: administrators, office staff and masters."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, Text, event, func, inspect
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import mapped_column, relationship

from models.core.base import Base, created_ts, intpk, updated_ts
from models.core.enums import MASTER, STATUSES_ALLOWED_TO_SIGN_IN, USER_STATUSES, sql_in
from models.directories.tables import City, Role


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_role_id_city_id", "role_id", "city_id"),
        Index("ix_users_city_id_status", "city_id", "status"),
        CheckConstraint(f"status IN ({sql_in(USER_STATUSES)})", name="status"),
    )

    id: Mapped[intpk]
    login: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(20), server_default="active", default="active")
    # A director's or a master's city; null for a director means every city.
    city_id: Mapped[int | None] = mapped_column(ForeignKey("cities.id", ondelete="RESTRICT"), index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    phone_number: Mapped[str | None] = mapped_column(String(40))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    passport: Mapped[str | None] = mapped_column(String(40))
    chat_id: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    # The employee's short number in Mango Office: calls placed from leadline ring this phone first.
    mango_extension: Mapped[str | None] = mapped_column(String(16))
    last_login_at: Mapped[datetime | None]
    # Sessions carry the epoch they were signed in under; moving it ends all of them (see below).
    session_epoch: Mapped[int] = mapped_column(server_default="0", default=0)
    created_at: Mapped[created_ts]
    updated_at: Mapped[updated_ts]

    role: Mapped[Role] = relationship(lazy="joined")
    city: Mapped[City | None] = relationship(lazy="joined")

    @property
    def role_name(self) -> str:
        return self.role.name

    @property
    def is_master(self) -> bool:
        return self.role.name == MASTER

    @property
    def may_sign_in(self) -> bool:
        return self.status in STATUSES_ALLOWED_TO_SIGN_IN

    def set_password(self, password: str) -> None:
        """A new password: hashed, and every session signed in with the old one ends."""
        from models.people.passwords import hash_password

        self.password_hash = hash_password(password)
        if self.id is not None:
            self.session_epoch = (self.session_epoch or 0) + 1

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role.name if self.role else '?'}>"


# Logins are unique across everyone, whatever the case.
Index("uq_users_login_lower", func.lower(User.login), unique=True)
# One employee per Mango extension.
Index("uq_users_mango_extension", User.mango_extension, unique=True,
      postgresql_where=User.mango_extension.isnot(None))


# ---- sessions follow the account ----------------------------------------------------------------------
# A new password (changed or reset: User.set_password; a rehash of the same password on sign-in is not
# one), a new role or city, and losing the right to sign in each end every
# session of the user: the epoch moves, and a token signed in under an older epoch is refused (see
# api/security.authenticate). Regaining the right to sign in does not move it back, so a deactivated
# user's old tokens stay dead; a deleted user has no row to match. Whoever changes their own password
# gets their current session re-issued under the new epoch (api/security.renew_current_session).

SESSION_ENDING_FIELDS = ("role", "role_id", "city", "city_id")


def ends_sessions(user: User) -> bool:
    """Whether the pending change to `user` ends its sessions."""
    state = inspect(user)
    if any(state.attrs[name].history.has_changes() for name in SESSION_ENDING_FIELDS):
        return True
    if not state.attrs.status.history.has_changes():
        return False
    return user.status not in STATUSES_ALLOWED_TO_SIGN_IN


@event.listens_for(OrmSession, "before_flush")
def _end_sessions_of_changed_users(session: OrmSession, _context, _instances) -> None:
    for obj in session.dirty:
        if isinstance(obj, User) and obj.id is not None and ends_sessions(obj):
            obj.session_epoch = (obj.session_epoch or 0) + 1


# ---- who changed: signed-in users are cached by the API per process ----------------------------------
# Every committed change to a user row bumps the user's generation in Redis; the API reads the
# generation in the same round trip as the session check and reloads the row only when it moved, so a
# deactivated user or a new role takes effect on the very next request.

def user_generation_key(user_id: int) -> str:
    from models.core.redis import key

    return key("user", "generation", str(user_id))


@event.listens_for(OrmSession, "after_flush")
def _note_changed_users(session: OrmSession, _context) -> None:
    changed = {obj.id for obj in (*session.dirty, *session.deleted) if isinstance(obj, User) and obj.id is not None}
    if changed:
        session.info.setdefault("changed_users", set()).update(changed)


@event.listens_for(OrmSession, "after_commit")
def _bump_user_generations(session: OrmSession) -> None:
    changed = session.info.pop("changed_users", None)
    if changed:
        from models.core.redis import get_redis

        pipe = get_redis().pipeline(transaction=False)
        for user_id in changed:
            pipe.incr(user_generation_key(user_id))
            pipe.expire(user_generation_key(user_id), 7 * 24 * 3600)
        pipe.execute()


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_changed_users(session: OrmSession, _previous) -> None:
    if not session.in_transaction():
        session.info.pop("changed_users", None)
