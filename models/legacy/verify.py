"""Old against new, after an import: counts per table, money per city and month (requests: result,
expenses, handover; the cash book: balance, incomes, expenses), every old user found by login,
every old file path resolved. Any difference is a line of the answer (empty: all agrees).

The comparison reads what came over through `legacy_map`, so rows leadline created itself are not
counted; rows the import refused are counted as refused (listed in its report), and the money they
held shows as a difference, as it should."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import psycopg

from models.legacy import rules
from models.legacy.importer import Importer, target_url
from models.legacy.source import open_source
from settings import settings
from storage.backend import get_storage

TARGET_OF = {
    "cities": "cities", "request_types": "request_types", "directions": "directions",
    "transaction_types": "transaction_types", "advertising_campaigns": "advertising_campaigns",
    "masters": "users", "employees": "users", "administrators": "users", "requests": "requests",
    "transactions": "transactions",
}
ZERO = Decimal("0.00")


@dataclass
class Verification:
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def verify(source_url: str) -> Verification:
    out = Verification()
    with open_source(source_url) as src, psycopg.connect(target_url(), autocommit=False) as dst:
        dst.read_only = True
        _counts(src, dst, out)
        _request_money(src, dst, out)
        _cash(src, dst, out)
        _users(src, dst, out)
        _files(src, dst, out)
        dst.rollback()
    return out


def _counts(src, dst, out: Verification) -> None:
    for old_table, new_table in TARGET_OF.items():
        old = src.execute(f"SELECT count(*) FROM {old_table}").fetchone()[0]  # nosec B608 - fixed names
        present, refused = dst.execute(
            f"SELECT count(t.id), count(*) FILTER (WHERE m.refused IS NOT NULL AND t.id IS NULL) "  # nosec B608
            f"FROM legacy_map m LEFT JOIN {new_table} t ON t.id = m.new_id WHERE m.old_table = %s",
            (old_table,)).fetchone()
        if present + refused != old:
            out.differences.append(f"{old_table}: в старой базе {old}, перенесено {present}, отказано {refused}")
        elif refused:
            out.notes.append(f"{old_table}: отказано {refused} (см. отчёт импорта)")


def _compare(out: Verification, what: str, old: dict, new: dict, labels: tuple[str, ...]) -> None:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            a = a or (0,) * len(labels)
            b = b or (0,) * len(labels)
            parts = [f"{label} {x} → {y}" for label, x, y in zip(labels, a, b) if x != y]
            out.differences.append(f"{what} {key[0]}, {key[1]}: " + "; ".join(parts))


def _request_money(src, dst, out: Verification) -> None:
    old_sql = ("SELECT c.name, to_char(timezone(%(zone)s, r.created_at), 'YYYY-MM'), count(*), "
               "sum(coalesce(r.result, 0)), sum(coalesce(r.expenses, 0)), sum(coalesce(r.master_handover, 0)) "
               "FROM requests r JOIN cities c ON c.id = r.city_id GROUP BY 1, 2")
    new_sql = ("SELECT c.name, to_char(timezone(%(zone)s, r.created_at), 'YYYY-MM'), count(*), "
               "sum(coalesce(r.result, 0)), sum(coalesce(r.expenses, 0)), sum(coalesce(r.master_handover, 0)) "
               "FROM legacy_map m JOIN requests r ON r.id = m.new_id JOIN cities c ON c.id = r.city_id "
               "WHERE m.old_table = 'requests' GROUP BY 1, 2")
    zone = {"zone": settings.BUSINESS_TZ}
    old = {(row[0], row[1]): tuple(row[2:]) for row in src.execute(old_sql, zone)}
    new = {(row[0], row[1]): tuple(row[2:]) for row in dst.execute(new_sql, zone)}
    _compare(out, "заявки", old, new, ("количество", "итог", "расходы", "сдача"))


def _cash(src, dst, out: Verification) -> None:
    select = ("SELECT c.name, to_char(t.specified_date, 'YYYY-MM'), count(*), sum(t.amount), "
              "coalesce(sum(t.amount) FILTER (WHERE t.amount > 0), 0), "
              "coalesce(sum(t.amount) FILTER (WHERE t.amount < 0), 0) ")
    old = {(row[0], row[1]): tuple(row[2:]) for row in src.execute(
        select + "FROM transactions t JOIN cities c ON c.id = t.city_id GROUP BY 1, 2")}  # nosec B608
    new = {(row[0], row[1]): tuple(row[2:]) for row in dst.execute(
        select + "FROM legacy_map m JOIN transactions t ON t.id = m.new_id JOIN cities c ON c.id = t.city_id "
                 "WHERE m.old_table = 'transactions' GROUP BY 1, 2")}  # nosec B608
    _compare(out, "касса", old, new, ("операций", "баланс", "приход", "расход"))


def _users(src, dst, out: Verification) -> None:
    new_logins = {(table, old_id): (login, refused) for table, old_id, login, refused in dst.execute(
        "SELECT m.old_table, m.old_id, u.login, m.refused FROM legacy_map m LEFT JOIN users u ON u.id = m.new_id "
        "WHERE m.old_table IN ('masters', 'employees', 'administrators')")}
    for table in rules.USER_TABLES:
        for old_id, login in src.execute(f"SELECT id, login FROM {table} ORDER BY id"):  # nosec B608
            new_login, refused = new_logins.get((table, old_id), (None, None))
            wanted = login.strip().lower()
            if new_login is None:
                if not refused:
                    out.differences.append(f"{table} #{old_id}: пользователь «{login}» не найден")
            elif new_login.lower() != wanted and not new_login.lower().startswith(wanted + "-"):
                out.differences.append(f"{table} #{old_id}: логин «{login}» стал «{new_login}»")


def _files(src, dst, out: Verification) -> None:
    files = {key: (status, path) for key, status, path in dst.execute(
        "SELECT m.old_id, f.status, f.storage_path FROM legacy_map m JOIN files f ON f.id = m.new_id "
        "WHERE m.old_table = 'media'")}
    storage = get_storage()
    missing = 0
    seen = set()
    for (raw,) in src.execute(f"SELECT f.path FROM ({Importer.FILE_SQL}) AS f(o, i, k, path, c)"):  # nosec B608
        relative = rules.old_relative_path(raw)
        if relative is None or relative in seen:
            continue
        seen.add(relative)
        found = files.get(rules.path_key(relative))
        if found is None:
            out.differences.append(f"файл {relative}: нет строки файла в leadline")
        elif found[0] == "ready":
            if not storage.media_exists(found[1]):
                out.differences.append(f"файл {relative}: нет байтов по пути {found[1]}")
        else:
            missing += 1
    if missing:
        out.notes.append(f"файлы: {missing} не перенесены (нет в старой папке или отклонены; "
                         "строки сохранены, см. отчёт)")
