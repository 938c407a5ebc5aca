"""How an old row becomes a new one: pure functions, no database (the importer applies them).

- Statuses: the product's Russian set whatever the case and spacing, the English keys of the old code and
  of its migration 002; anything else becomes Новая (the call-centre queue: no money, no income) and
  the original is kept in the request's history.
- Users: three old tables become one; a login used more than once (case-insensitively, as leadline
  compares logins) keeps its name for the first in the old backend's sign-in order (masters, then
  employees, then administrators; within a table the lowest id) and the others get a suffix.
- Files: the old relative paths (`media/zayvka/bso/<uuid>.jpg`, Windows backslashes, absolute paths
  of the receipt upload) are normalised; the new file keeps the same path under MEDIA_ROOT when it
  fits leadline's layout, else gets a layout name derived from it (deterministic).
"""
from __future__ import annotations

import hashlib
import posixpath
import re
from decimal import Decimal

from models.core.enums import MASTER, REQUEST_STATUSES, ROLES, STATUS_NEW, USER_STATUSES
from models.requests.money import request_money
from storage.kinds import KINDS
from storage.paths import NAME_RE, BadPath, PathNotFound, check_relative_path

# ---- request statuses ------------------------------------------------------------------------------


def _status_key(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", text).lower().replace("ё", "е")


STATUS_BY_KEY = {_status_key(status): status for status in REQUEST_STATUSES}
ENGLISH_STATUSES = {
    "new": "Новая", "pending": "Ожидает", "waiting": "Ожидает", "waitingacceptance": "Ожидает принятия",
    "accepted": "Принял", "onway": "В пути", "ontheway": "В пути", "inprogress": "В работе",
    "done": "Готово", "completed": "Готово", "complete": "Готово", "finished": "Готово",
    "cancelled": "Отказ", "canceled": "Отказ", "refused": "Отказ", "modern": "Модерн",
    "notorder": "НеЗаказ", "callback": "Перезвонить", "recall": "Перезвонить", "tno": "ТНО",
}
STATUS_BY_KEY.update(ENGLISH_STATUSES)


def request_status(raw: str | None) -> tuple[str, str | None]:
    """(the status to store, a note for the report or None): NULL is the old default Новая; an unknown
    status becomes Новая, noted as unknown."""
    if raw is None or not raw.strip():
        return STATUS_NEW, None
    if raw in REQUEST_STATUSES:
        return raw, None
    status = STATUS_BY_KEY.get(_status_key(raw))
    if status is not None:
        return status, "normalised"
    return STATUS_NEW, "unknown"


# ---- users -------------------------------------------------------------------------------------------

# The old tables in the order the old backend tried them when signing in.
USER_TABLES = ("masters", "employees", "administrators")
LOGIN_SUFFIX = {"masters": "master", "employees": "employee", "administrators": "admin"}
ROLE_ALIASES = {"callcenter": "callcentr", "call_center": "callcentr", "administrator": "admin"}


def user_status(raw: str | None) -> tuple[str, bool]:
    """(status, known): NULL is the old default `active`; an unknown one cannot sign in (`inactive`)."""
    if raw is None or not raw.strip():
        return "active", True
    status = raw.strip().lower()
    if status in USER_STATUSES:
        return status, True
    return "inactive", False


def user_role(table: str, role_name: str | None) -> str | None:
    """The new role of an old user: masters are masters, administrators admins; an employee's role by
    its name (the old spellings accepted); None when it is no role of leadline."""
    if table == "masters":
        return MASTER
    if table == "administrators":
        return "admin"
    name = (role_name or "").strip().lower()
    name = ROLE_ALIASES.get(name, name)
    return name if name in ROLES and name != MASTER else None


def assign_logins(users: list[tuple[str, int, str]], taken: set[str]) -> dict[tuple[str, int], str]:
    """The login of every old user (table, id, old login) not yet imported, given the logins (lower
    case) `taken` already in leadline. Sign-in order decides who keeps a shared login; the others get
    `<login>-<master|employee|admin>`, or with their old id too if that is taken as well."""
    order = {table: index for index, table in enumerate(USER_TABLES)}
    taken = set(taken)
    assigned: dict[tuple[str, int], str] = {}
    for table, old_id, login in sorted(users, key=lambda u: (order[u[0]], u[1])):
        login = login.strip()
        candidates = (login, f"{login}-{LOGIN_SUFFIX[table]}", f"{login}-{LOGIN_SUFFIX[table]}{old_id}")
        chosen = next((c[:100] for c in candidates if c[:100].lower() not in taken), None)
        n = 2
        while chosen is None:  # three candidates taken already: number them
            candidate = f"{login[:80]}-{LOGIN_SUFFIX[table]}{old_id}-{n}"
            chosen = None if candidate.lower() in taken else candidate
            n += 1
        taken.add(chosen.lower())
        assigned[(table, old_id)] = chosen
    return assigned


# ---- money -------------------------------------------------------------------------------------------

def money_notes(result: Decimal | None, expenses: Decimal | None, net: Decimal | None,
                handover: Decimal | None) -> tuple[Decimal, list[str]]:
    """(the net amount to store, what differs from the product's money rule): net = result − expenses is always
    derived; the handover is kept as stored (the old cash book booked it), a difference from
    net × MASTER_SHARE is only reported."""
    computed_net, computed_handover = request_money(result, expenses)
    notes = []
    if net is None or net != computed_net:
        notes.append(f"net_amount {net} → {computed_net}")
    if (handover or Decimal(0)) != computed_handover:
        notes.append(f"master_handover {handover} kept (by the rule: {computed_handover})")
    return computed_net, notes


INCOME_NOTE = re.compile(r"^\s*Приход по заявке\s+(\d{1,10})\s*$")


def income_request(notes: str | None) -> int | None:
    """The old request id an automatic income names in its notes (`Приход по заявке N`)."""
    match = INCOME_NOTE.match(notes or "")
    return int(match.group(1)) if match else None


# ---- files -------------------------------------------------------------------------------------------

def old_relative_path(raw: str | None) -> str | None:
    """An old stored path relative to the old media folder: `media/zayvka/bso/x.jpg` -> `zayvka/bso/x.jpg`;
    backslashes and absolute prefixes (`/app/media/...`) are undone. None when it names nothing."""
    if raw is None:
        return None
    path = raw.strip().replace("\\", "/")
    if not path:
        return None
    marker = path.rfind("/media/")
    if marker >= 0:
        path = path[marker + len("/media/"):]
    elif path.startswith("media/"):
        path = path[len("media/"):]
    path = posixpath.normpath(path.lstrip("/"))
    if path in (".", "") or path.startswith("../") or path == "..":
        return None
    return path


def path_key(relative_path: str) -> int:
    """The legacy_map key of a file path: 63 bits of its SHA-256."""
    return int.from_bytes(hashlib.sha256(relative_path.encode("utf-8")).digest()[:8], "big") >> 1


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def storage_path_for(kind: str, relative_path: str) -> str:
    """Where the file goes under MEDIA_ROOT: the same relative path when it is a path of leadline's
    layout for its kind, else `<kind's folder>/<its name made safe>-<8 hex of the old path>.<ext>`."""
    directory = KINDS[kind].directory
    try:
        check_relative_path(relative_path)
        if relative_path.rpartition("/")[0] == directory:
            return relative_path
    except (BadPath, PathNotFound):
        pass
    name = relative_path.rpartition("/")[2]
    stem, dot, extension = name.rpartition(".")
    if not dot or not re.fullmatch(r"[A-Za-z0-9]{1,8}", extension):
        stem, extension = name, "bin"
    safe = _UNSAFE.sub("-", stem).strip("-_")[:100] or "file"
    if not safe[0].isalnum():  # pragma: no cover - strip leaves an alphanumeric first
        safe = "f" + safe
    digest = hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:8]
    candidate = f"{safe}-{digest}.{extension.lower()}"
    return f"{directory}/{candidate}" if NAME_RE.fullmatch(candidate) else f"{directory}/file-{digest}.bin"


REQUEST_FILE_KINDS = {"bso": "bso", "expense": "expense", "expense_receipt": "expense", "recording": "recording",
                      "transaction": "expense"}


def file_kind(owner_table: str, file_type: str | None) -> str:
    """The leadline kind of an old file: a transaction's is `transaction`; a request's by its type."""
    if owner_table == "transactions":
        return "transaction"
    return REQUEST_FILE_KINDS.get((file_type or "").strip().lower(), "expense")
