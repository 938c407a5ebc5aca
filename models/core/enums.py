"""Fixed vocabularies: the exact strings the SPA and the old data use."""
from __future__ import annotations

ROLES = ("admin", "director", "manager", "callcentr", "avitolog", "master")
ADMIN, DIRECTOR, MANAGER, CALLCENTR, AVITOLOG, MASTER = ROLES

USER_STATUSES = ("active", "inactive", "suspended", "busy", "pending")
# `busy` is a master at work: may sign in. `pending` is a new employee: may not yet.
STATUSES_ALLOWED_TO_SIGN_IN = frozenset({"active", "busy"})

REQUEST_STATUSES = (
    "Новая",
    "Ожидает",
    "Ожидает принятия",
    "Принял",
    "В пути",
    "В работе",
    "Готово",
    "Отказ",
    "Модерн",
    "НеЗаказ",
    "Перезвонить",
    "ТНО",
)
STATUS_NEW = "Новая"
STATUS_DONE = "Готово"
FINAL_STATUSES = frozenset({"Готово", "Отказ", "НеЗаказ"})
STATUS_GROUPS = {
    "completed": ("Готово",),
    "in_progress": ("В работе", "Принял", "В пути"),
    "waiting": ("Новая", "Ожидает", "Ожидает принятия"),
    "cancelled": ("Отказ", "НеЗаказ"),
}

REQUEST_TYPE_FIRST = "Впервые"
REQUEST_TYPE_REPEAT = "Повтор"
TRANSACTION_TYPE_INCOME = "Приход"
TRANSACTION_TYPE_EXPENSE = "Расход"

FILE_KINDS = ("bso", "expense", "recording", "transaction")
FILE_STATUSES = ("pending", "ready", "rejected")
MATCH_STATUSES = ("matched", "unmatched", "ambiguous")
JOB_STATUSES = ("queued", "running", "succeeded", "failed")
INBOX_STATUSES = ("pending", "processed", "failed")
ALERT_STATUSES = ("firing", "resolved")
CALL_DIRECTIONS = ("in", "out", "internal", "unknown")


def sql_in(values) -> str:
    """A SQL literal list for CHECK constraints over fixed vocabularies."""
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)
