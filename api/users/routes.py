"""People: masters, office employees and administrators, all rows of the one users table.

Each endpoint touches only its own kind of user (by role): an id of another kind is 404, so a
delete can never hit the wrong person. Password hashes never leave this module.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any, Iterable

from flask.views import MethodView
from sqlalchemy import ColumnElement, Select, func, or_, select, true
from sqlalchemy.exc import IntegrityError

from api.auth.schemas import MessageSchema
from api.errors import ApiError
from api.extensions import Blueprint
from api.listing import json_response, list_response
from api.resources import commit_or_409, deleted, get_or_404
from api.security import city_scope, current_user, login_required, renew_current_session, require_city, roles_required
from api.users.schemas import (
    EMPLOYEE_ROLES,
    AdministratorCreateSchema,
    AdministratorSchema,
    AdministratorWriteSchema,
    EmployeeCreateSchema,
    EmployeeListArgs,
    EmployeeSchema,
    EmployeeWriteSchema,
    MasterCreateSchema,
    MasterSchema,
    MasterWriteSchema,
    UserListArgs,
)
from models.core.db import Session
from models.core.enums import (
    ADMIN,
    AVITOLOG,
    CALLCENTR,
    DIRECTOR,
    FINAL_STATUSES,
    MANAGER,
    MASTER,
    STATUSES_ALLOWED_TO_SIGN_IN,
)
from models.core.phones import normalize_phone
from models.directories.tables import City, Role
from models.people.tables import User
from models.requests.tables import Request

blp = Blueprint(
    "users", __name__, url_prefix="/api", description="People: masters, employees and administrators"
)

LOGIN_TAKEN = "Логин уже занят"
MASTER_NOT_FOUND = "Мастер не найден"
EMPLOYEE_NOT_FOUND = "Сотрудник не найден"
ADMIN_NOT_FOUND = "Администратор не найден"
LOGIN_INDEX = "uq_users_login_lower"
EXTENSION_INDEX = "uq_users_mango_extension"
EXTENSION_TAKEN = "Этот добавочный номер Mango уже у другого сотрудника"
# Roles that work with masters by name only: they see the list, not personal documents.
NO_PERSONAL_DATA_ROLES = (CALLCENTR, AVITOLOG)


# ---- reading ------------------------------------------------------------------------------------

def people_select(role_names: Iterable[str]) -> Select:
    """Users of these roles with their city and role names, newest first: one query, no ORM."""
    return (
        select(
            User.id,
            User.full_name,
            User.phone_number,
            User.login,
            User.status,
            User.city_id,
            City.name.label("city_name"),
            User.role_id,
            Role.name.label("role_name"),
            User.birth_date,
            User.passport,
            User.chat_id,
            User.notes,
            User.mango_extension,
            User.created_at,
            User.updated_at,
        )
        .join(Role, Role.id == User.role_id)
        .outerjoin(City, City.id == User.city_id)
        .where(Role.name.in_(tuple(role_names)))
        .order_by(User.created_at.desc(), User.id.desc())
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filtered(stmt: Select, args: dict) -> Select:
    if args.get("city_id") is not None:
        stmt = stmt.where(User.city_id == args["city_id"])
    if args.get("status"):
        stmt = stmt.where(User.status == args["status"])
    if args.get("role_id") is not None:
        stmt = stmt.where(User.role_id == args["role_id"])
    search = args.get("search")
    if search:
        pattern = f"%{_escape_like(search)}%"
        conditions = [
            User.full_name.ilike(pattern, escape="\\"),
            User.login.ilike(pattern, escape="\\"),
            User.phone_number.ilike(pattern, escape="\\"),
        ]
        digits = re.sub(r"\D", "", search)
        if digits:
            conditions.append(User.phone.contains(digits))
            if digits.startswith("8") and len(digits) > 1:  # "8 912 ..." finds the stored "7912..."
                conditions.append(User.phone.startswith("7" + digits[1:]))
        stmt = stmt.where(or_(*conditions))
    return stmt


def _city_ref(row) -> dict | None:
    return {"id": row.city_id, "name": row.city_name} if row.city_id is not None else None


def master_dict(row, *, personal: bool = True) -> dict[str, Any]:
    """A master as the SPA reads it (docs/spa-contract.md): names, phone and login never null."""
    return {
        "id": row.id,
        "full_name": row.full_name or "",
        "name": row.full_name or "",
        "phone_number": row.phone_number or "",
        "login": row.login or "",
        "status": row.status,
        "city_id": row.city_id,
        "city": _city_ref(row),
        "birth_date": row.birth_date.isoformat() if row.birth_date else None,
        "passport": row.passport if personal else None,
        "chat_id": row.chat_id,
        "notes": row.notes,
        "role": MASTER,
        "role_id": row.role_id,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def staff_dict(row) -> dict[str, Any]:
    """An employee or administrator."""
    return {
        "id": row.id,
        "name": row.full_name or "",
        "full_name": row.full_name or "",
        "role_id": row.role_id,
        "role": {"id": row.role_id, "name": row.role_name},
        "status": row.status,
        "city_id": row.city_id,
        "city": _city_ref(row),
        "login": row.login or "",
        "phone_number": row.phone_number or "",
        "notes": row.notes,
        "mango_extension": row.mango_extension,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def one_row(role_names: Iterable[str], user_id: int):
    return Session.execute(people_select(role_names).where(User.id == user_id)).one()


def masters_visible_to(user: User) -> ColumnElement[bool]:
    """Directors see the masters of their city (all when they have none); a master sees only
    themselves; the other office roles see every master."""
    if user.role_name == MASTER:
        return User.id == user.id
    scope = city_scope(user)
    return true() if scope is None else User.city_id == scope


def may_read_master(user: User, master: User) -> bool:
    role = user.role_name
    if role in (ADMIN, MANAGER):
        return True
    if role == DIRECTOR:
        return user.city_id is None or user.city_id == master.city_id
    if role == MASTER:
        return user.id == master.id
    return False


def masters_list(args: dict):
    user = current_user()
    stmt = filtered(people_select([MASTER]).where(masters_visible_to(user)), args)
    personal = user.role_name not in NO_PERSONAL_DATA_ROLES
    return list_response(stmt, partial(master_dict, personal=personal), args)


# ---- loading and checks -------------------------------------------------------------------------

def role_named(name: str) -> Role:
    role = Session.scalar(select(Role).where(Role.name == name))
    if role is None:  # roles are seeded by the initial migration
        raise RuntimeError(f"role {name!r} is missing from the roles table")
    return role


def load_kind(user_id: int, role_names: Iterable[str], not_found: str, *, lock: bool = False) -> User:
    """The user with this id if their role is one of `role_names`; 404 otherwise."""
    user = get_or_404(User, user_id, not_found)
    if lock:
        # A plain row lock (the eager joins of Session.get cannot take FOR UPDATE on a nullable
        # side); it also makes concurrent writers that point at this user wait for us.
        if Session.scalar(select(User.id).where(User.id == user.id).with_for_update()) is None:
            raise ApiError(404, not_found, code="not_found")
        Session.refresh(user)
    if user.role_name not in tuple(role_names):
        raise ApiError(404, not_found, code="not_found")
    return user


def ensure_city_exists(city_id: int) -> None:
    if Session.get(City, city_id) is None:
        raise ApiError(422, "Город не найден", code="unknown_city", errors={"city_id": ["Город не найден"]})


def ensure_login_free(login: str, exclude_id: int | None = None) -> None:
    stmt = select(User.id).where(func.lower(User.login) == func.lower(login))
    if exclude_id is not None:
        stmt = stmt.where(User.id != exclude_id)
    if Session.scalar(stmt.limit(1)) is not None:
        raise ApiError(409, LOGIN_TAKEN, code="login_taken", errors={"login": [LOGIN_TAKEN]})


def role_for_staff(role_id: int, allowed: Iterable[str]) -> Role:
    """The role a staff member is given; admins and masters each have their own endpoint."""
    allowed = tuple(allowed)
    role = Session.get(Role, role_id)
    if role is None:
        raise ApiError(422, "Роль не найдена", code="invalid_role", errors={"role_id": ["Роль не найдена"]})
    if role.name not in allowed:
        if role.name == MASTER:
            reason = f"Роль «{role.name}» здесь недоступна: мастеров создают в разделе мастеров"
        elif role.name == ADMIN:
            reason = f"Роль «{role.name}» здесь недоступна: администраторов создают в разделе администраторов"
        else:
            reason = f"Роль «{role.name}» здесь недоступна"
        raise ApiError(422, reason, code="invalid_role", errors={"role_id": [reason]})
    return role


def refuse_self(user_id: int) -> None:
    if user_id == current_user().id:
        raise ApiError(409, "Нельзя удалить самого себя", code="cannot_delete_self")


def ensure_another_active_admin(target: User, detail: str) -> None:
    """Refuse when `target` is the last administrator who may sign in.

    Every administrator row is locked first (in id order), so two admins removing each other at
    the same moment cannot both succeed."""
    admin_role_id = role_named(ADMIN).id
    admin_ids = Session.scalars(
        select(User.id).where(User.role_id == admin_role_id).order_by(User.id).with_for_update()
    ).all()
    if target.id not in admin_ids:  # deleted or given another role while we waited
        raise ApiError(404, ADMIN_NOT_FOUND, code="not_found")
    Session.refresh(target)
    if not target.may_sign_in:
        return
    others = Session.scalar(
        select(func.count())
        .select_from(User)
        .where(
            User.role_id == admin_role_id,
            User.id != target.id,
            User.status.in_(tuple(STATUSES_ALLOWED_TO_SIGN_IN)),
        )
    )
    if not others:
        raise ApiError(409, detail, code="last_admin")


# ---- writing ------------------------------------------------------------------------------------

_PLAIN_FIELDS = ("full_name", "login", "status", "city_id", "birth_date", "passport", "chat_id", "notes",
                 "mango_extension")


def apply_fields(user: User, body: dict) -> None:
    """Copy the keys that were sent (partial updates leave the others alone)."""
    for name in _PLAIN_FIELDS:
        if name in body:
            setattr(user, name, body[name])
    if "name" in body:
        user.full_name = body["name"]
    if "phone_number" in body:
        user.phone_number = body["phone_number"]
        user.phone = normalize_phone(body["phone_number"])
    if "password" in body:
        user.set_password(body["password"])
        if user.id is not None and user.id == current_user().id:
            renew_current_session()  # their other sessions end, the one in use goes on


def save() -> None:
    """Flush (a login taken by a concurrent writer shows up here as the unique index), commit."""
    try:
        Session.flush()
    except IntegrityError as exc:
        Session.rollback()
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if constraint == LOGIN_INDEX:
            raise ApiError(409, LOGIN_TAKEN, code="login_taken", errors={"login": [LOGIN_TAKEN]}) from None
        if constraint == EXTENSION_INDEX:
            raise ApiError(409, EXTENSION_TAKEN, code="mango_extension_taken",
                           errors={"mango_extension": [EXTENSION_TAKEN]}) from None
        raise ApiError(409, "Конфликт данных", code="conflict") from None
    commit_or_409()


def new_user(role: Role, body: dict) -> User:
    user = User(role=role)
    apply_fields(user, body)
    Session.add(user)
    save()
    return user


def _requests_word(count: int) -> str:
    if count % 10 == 1 and count % 100 != 11:
        return "заявка"
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return "заявки"
    return "заявок"


# ---- masters ------------------------------------------------------------------------------------

@blp.route("/users/masters")
class Masters(MethodView):
    @login_required
    @blp.arguments(UserListArgs, location="query")
    @blp.response(200, MasterSchema(many=True))
    def get(self, args):
        """Masters the caller may see (a director: their city; a master: themselves).

        The complete list without page/page_size; one page and an X-Pagination header with them."""
        return masters_list(args)

    @roles_required(MANAGER, DIRECTOR)
    @blp.arguments(MasterCreateSchema)
    @blp.response(201, MasterSchema)
    def post(self, body):
        """Create a master (a director only in their own city)."""
        require_city(current_user(), body["city_id"])
        ensure_city_exists(body["city_id"])
        ensure_login_free(body["login"])
        master = new_user(role_named(MASTER), body)
        return json_response(master_dict(one_row([MASTER], master.id)), status=201)


@blp.route("/users/masters/<int:user_id>")
class MasterItem(MethodView):
    @roles_required(MANAGER, DIRECTOR, MASTER)
    @blp.response(200, MasterSchema)
    def get(self, user_id: int):
        """One master: admins and managers, the director of the master's city, the master themselves."""
        master = load_kind(user_id, [MASTER], MASTER_NOT_FOUND)
        if not may_read_master(current_user(), master):
            raise ApiError(404, MASTER_NOT_FOUND, code="not_found")
        return json_response(master_dict(one_row([MASTER], master.id)))

    @roles_required(MANAGER, DIRECTOR)
    @blp.arguments(MasterWriteSchema)
    @blp.response(200, MasterSchema)
    def put(self, body, user_id: int):
        """Change a master: only the keys sent. A director cannot move a master to another city."""
        user = current_user()
        master = load_kind(user_id, [MASTER], MASTER_NOT_FOUND)
        if not may_read_master(user, master):
            raise ApiError(404, MASTER_NOT_FOUND, code="not_found")
        if "city_id" in body and body["city_id"] != master.city_id:
            require_city(user, body["city_id"])
            ensure_city_exists(body["city_id"])
        if "login" in body:
            ensure_login_free(body["login"], exclude_id=master.id)
        apply_fields(master, body)
        save()
        return json_response(master_dict(one_row([MASTER], master.id)))

    @roles_required()
    @blp.response(200, MessageSchema)
    def delete(self, user_id: int):
        """Delete a master (admin) who holds no request in a non-final status; their finished
        requests keep their history with no master."""
        refuse_self(user_id)
        master = load_kind(user_id, [MASTER], MASTER_NOT_FOUND, lock=True)
        open_requests = Session.scalar(
            select(func.count())
            .select_from(Request)
            .where(Request.master_id == master.id, Request.status.not_in(tuple(FINAL_STATUSES)))
        )
        if open_requests:
            raise ApiError(
                409,
                f"Нельзя удалить мастера: за ним {open_requests} {_requests_word(open_requests)} "
                "не в конечном статусе (Готово, Отказ, НеЗаказ). Переназначьте или закройте их.",
                code="master_has_open_requests",
            )
        Session.delete(master)
        commit_or_409(in_use="Мастер используется и не может быть удалён")
        return deleted("Мастер удалён")


@blp.route("/requests/masters")
class RequestMasters(MethodView):
    @login_required
    @blp.arguments(UserListArgs, location="query")
    @blp.response(200, MasterSchema(many=True))
    def get(self, args):
        """Masters for request forms: the same list as /users/masters (sign-in required)."""
        return masters_list(args)


# ---- employees ----------------------------------------------------------------------------------

@blp.route("/users/employees")
class Employees(MethodView):
    @roles_required(MANAGER)
    @blp.arguments(EmployeeListArgs, location="query")
    @blp.response(200, EmployeeSchema(many=True))
    def get(self, args):
        """Office employees: directors, managers, call-centre operators, avitologs."""
        return list_response(filtered(people_select(EMPLOYEE_ROLES), args), staff_dict, args)

    @roles_required(MANAGER)
    @blp.arguments(EmployeeCreateSchema)
    @blp.response(201, EmployeeSchema)
    def post(self, body):
        """Create an employee. For a director, no city means every city."""
        role = role_for_staff(body["role_id"], EMPLOYEE_ROLES)
        if body.get("city_id") is not None:
            ensure_city_exists(body["city_id"])
        ensure_login_free(body["login"])
        employee = new_user(role, body)
        return json_response(staff_dict(one_row(EMPLOYEE_ROLES, employee.id)), status=201)


@blp.route("/users/employees/<int:user_id>")
class EmployeeItem(MethodView):
    @roles_required(MANAGER)
    @blp.response(200, EmployeeSchema)
    def get(self, user_id: int):
        """One employee."""
        employee = load_kind(user_id, EMPLOYEE_ROLES, EMPLOYEE_NOT_FOUND)
        return json_response(staff_dict(one_row(EMPLOYEE_ROLES, employee.id)))

    @roles_required(MANAGER)
    @blp.arguments(EmployeeWriteSchema)
    @blp.response(200, EmployeeSchema)
    def put(self, body, user_id: int):
        """Change an employee: only the keys sent; the role may change among employee roles."""
        employee = load_kind(user_id, EMPLOYEE_ROLES, EMPLOYEE_NOT_FOUND)
        if "role_id" in body:
            employee.role = role_for_staff(body["role_id"], EMPLOYEE_ROLES)
        if body.get("city_id") is not None:
            ensure_city_exists(body["city_id"])
        if "login" in body:
            ensure_login_free(body["login"], exclude_id=employee.id)
        apply_fields(employee, body)
        save()
        return json_response(staff_dict(one_row(EMPLOYEE_ROLES, employee.id)))

    @roles_required()
    @blp.response(200, MessageSchema)
    def delete(self, user_id: int):
        """Delete an employee (admin)."""
        refuse_self(user_id)
        employee = load_kind(user_id, EMPLOYEE_ROLES, EMPLOYEE_NOT_FOUND, lock=True)
        Session.delete(employee)
        commit_or_409(in_use="Сотрудник используется и не может быть удалён")
        return deleted("Сотрудник удалён")


# ---- administrators -----------------------------------------------------------------------------

@blp.route("/users/administrators")
class Administrators(MethodView):
    @roles_required()
    @blp.arguments(UserListArgs, location="query")
    @blp.response(200, AdministratorSchema(many=True))
    def get(self, args):
        """Administrators (admin only)."""
        return list_response(filtered(people_select([ADMIN]), args), staff_dict, args)

    @roles_required()
    @blp.arguments(AdministratorCreateSchema)
    @blp.response(201, AdministratorSchema)
    def post(self, body):
        """Create an administrator (admin only). A role_id, if sent, must be the admin role."""
        role = role_for_staff(body["role_id"], [ADMIN]) if body.get("role_id") else role_named(ADMIN)
        ensure_login_free(body["login"])
        admin = new_user(role, body)
        return json_response(staff_dict(one_row([ADMIN], admin.id)), status=201)


@blp.route("/users/administrators/<int:user_id>")
class AdministratorItem(MethodView):
    @roles_required()
    @blp.response(200, AdministratorSchema)
    def get(self, user_id: int):
        """One administrator."""
        admin = load_kind(user_id, [ADMIN], ADMIN_NOT_FOUND)
        return json_response(staff_dict(one_row([ADMIN], admin.id)))

    @roles_required()
    @blp.arguments(AdministratorWriteSchema)
    @blp.response(200, AdministratorSchema)
    def put(self, body, user_id: int):
        """Change an administrator: only the keys sent. The last active administrator cannot be
        deactivated or moved to another role."""
        admin = load_kind(user_id, [ADMIN], ADMIN_NOT_FOUND)
        role = role_for_staff(body["role_id"], (ADMIN, *EMPLOYEE_ROLES)) if body.get("role_id") else None
        demoted = role is not None and role.name != ADMIN
        deactivated = "status" in body and body["status"] not in STATUSES_ALLOWED_TO_SIGN_IN
        if demoted or deactivated:
            ensure_another_active_admin(
                admin, "Нельзя отключить или сменить роль последнего активного администратора"
            )
        if "login" in body:
            ensure_login_free(body["login"], exclude_id=admin.id)
        if role is not None:
            admin.role = role
        apply_fields(admin, body)
        save()
        return json_response(staff_dict(one_row([ADMIN, *EMPLOYEE_ROLES], admin.id)))

    @roles_required()
    @blp.response(200, MessageSchema)
    def delete(self, user_id: int):
        """Delete an administrator: never yourself, never the last active one."""
        refuse_self(user_id)
        admin = load_kind(user_id, [ADMIN], ADMIN_NOT_FOUND)
        ensure_another_active_admin(admin, "Нельзя удалить последнего администратора")
        Session.delete(admin)
        commit_or_409(in_use="Администратор используется и не может быть удалён")
        return deleted("Администратор удалён")
