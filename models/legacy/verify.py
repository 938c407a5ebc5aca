"""Old against new, after an import: counts per table, money per city and month (requests: result,
expenses, handover; the cash book: balance, incomes, expenses), every old user found by login,
every old file path resolved. Any difference is a line of the answer (empty: all agrees).

The comparison reads what came over through `legacy_map`, so rows leadline created itself are not
counted; rows the import refused are counted as refused (listed in its report), and the money they
held shows as a difference, as it should."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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


@dataclass
class Verification:
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def verify(source_url: str) -> Verification:
    """Both sides are read at the same time (the old database in a thread, leadline and its media
    folder in this one): each side's figures are a few aggregate queries, compared afterwards."""
    out = Verification()
    with ThreadPoolExecutor(max_workers=1) as pool:
        old_side = pool.submit(_old_figures, source_url)
        new = _new_figures()
        old = old_side.result()
    _counts(old, new, out)
    _compare(out, "заявки", old["requests"], new["requests"], ("количество", "итог", "расходы", "сдача"))
    _compare(out, "касса", old["cash"], new["cash"], ("операций", "баланс", "приход", "расход"))
    _users(old, new, out)
    _files(old, new, out)
    return out


REQUEST_MONEY = ("SELECT c.name, to_char(timezone(%(zone)s, r.created_at), 'YYYY-MM'), count(*), "
                 "sum(coalesce(r.result, 0)), sum(coalesce(r.expenses, 0)), sum(coalesce(r.master_handover, 0)) ")
CASH = ("SELECT c.name, to_char(t.specified_date, 'YYYY-MM'), count(*), sum(t.amount), "
        "coalesce(sum(t.amount) FILTER (WHERE t.amount > 0), 0), "
        "coalesce(sum(t.amount) FILTER (WHERE t.amount < 0), 0) ")


def _by_key(rows) -> dict:
    return {(row[0], row[1]): tuple(row[2:]) for row in rows}


def _old_figures(source_url: str) -> dict:
    """The old database's side, in one snapshot."""
    zone = {"zone": settings.BUSINESS_TZ}
    with open_source(source_url) as src:
        counts_sql = " UNION ALL ".join(
            f"SELECT '{table}', count(*) FROM {table}" for table in TARGET_OF)  # nosec B608 - fixed names
        return {
            "counts": dict(src.execute(counts_sql).fetchall()),
            "requests": _by_key(src.execute(
                REQUEST_MONEY + "FROM requests r JOIN cities c ON c.id = r.city_id GROUP BY 1, 2", zone)),
            "cash": _by_key(src.execute(
                CASH + "FROM transactions t JOIN cities c ON c.id = t.city_id GROUP BY 1, 2")),  # nosec B608
            "users": {table: src.execute(f"SELECT id, login FROM {table} ORDER BY id").fetchall()  # nosec B608
                      for table in rules.USER_TABLES},
            "file_paths": [raw for (raw,) in src.execute(
                f"SELECT f.path FROM ({Importer.FILE_SQL}) AS f(o, i, k, path, c)")],  # nosec B608
        }


def _new_figures() -> dict:
    """leadline's side: what came over through legacy_map, and which of its files are on disk."""
    zone = {"zone": settings.BUSINESS_TZ}
    with psycopg.connect(target_url(), autocommit=False) as dst:
        dst.read_only = True
        counts_sql = " UNION ALL ".join(
            f"SELECT '{old_table}', count(t.id), count(*) FILTER (WHERE m.refused IS NOT NULL AND t.id IS NULL) "
            f"FROM legacy_map m LEFT JOIN {new_table} t ON t.id = m.new_id "  # nosec B608 - fixed names
            f"WHERE m.old_table = '{old_table}'" for old_table, new_table in TARGET_OF.items())
        figures = {
            "counts": {table: (present, refused) for table, present, refused in dst.execute(counts_sql)},
            "requests": _by_key(dst.execute(
                REQUEST_MONEY + "FROM legacy_map m JOIN requests r ON r.id = m.new_id "
                "JOIN cities c ON c.id = r.city_id WHERE m.old_table = 'requests' GROUP BY 1, 2", zone)),
            "cash": _by_key(dst.execute(
                CASH + "FROM legacy_map m JOIN transactions t ON t.id = m.new_id JOIN cities c ON c.id = t.city_id "
                "WHERE m.old_table = 'transactions' GROUP BY 1, 2")),  # nosec B608
            "logins": {(table, old_id): (login, refused) for table, old_id, login, refused in dst.execute(
                "SELECT m.old_table, m.old_id, u.login, m.refused FROM legacy_map m "
                "LEFT JOIN users u ON u.id = m.new_id "
                "WHERE m.old_table IN ('masters', 'employees', 'administrators')")},
            "files": {key: (status, path) for key, status, path in dst.execute(
                "SELECT m.old_id, f.status, f.storage_path FROM legacy_map m JOIN files f ON f.id = m.new_id "
                "WHERE m.old_table = 'media'")},
        }
        dst.rollback()
    ready = [path for status, path in figures["files"].values() if status == "ready"]
    figures["on_disk"] = get_storage().media_existing(ready)
    return figures


def _counts(old: dict, new: dict, out: Verification) -> None:
    for old_table in TARGET_OF:
        present, refused = new["counts"][old_table]
        if present + refused != old["counts"][old_table]:
            out.differences.append(
                f"{old_table}: в старой базе {old['counts'][old_table]}, перенесено {present}, отказано {refused}")
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


def _users(old: dict, new: dict, out: Verification) -> None:
    for table in rules.USER_TABLES:
        for old_id, login in old["users"][table]:
            new_login, refused = new["logins"].get((table, old_id), (None, None))
            wanted = login.strip().lower()
            if new_login is None:
                if not refused:
                    out.differences.append(f"{table} #{old_id}: пользователь «{login}» не найден")
            elif new_login.lower() != wanted and not new_login.lower().startswith(wanted + "-"):
                out.differences.append(f"{table} #{old_id}: логин «{login}» стал «{new_login}»")


def _files(old: dict, new: dict, out: Verification) -> None:
    files, on_disk = new["files"], new["on_disk"]
    missing = 0
    seen = set()
    for raw in old["file_paths"]:
        relative = rules.old_relative_path(raw)
        if relative is None or relative in seen:
            continue
        seen.add(relative)
        found = files.get(rules.path_key(relative))
        if found is None:
            out.differences.append(f"файл {relative}: нет строки файла в leadline")
        elif found[0] == "ready":
            if found[1] not in on_disk:
                out.differences.append(f"файл {relative}: нет байтов по пути {found[1]}")
        else:
            missing += 1
    if missing:
        out.notes.append(f"файлы: {missing} не перенесены (нет в старой папке или отклонены; "
                         "строки сохранены, см. отчёт)")
