"""What an import did, per old table, and every finding worth a person's look: a summary for the
console (and the job row), the full list as Markdown or CSV.

Findings carry the old table and id, never a phone or a name: the report is a file an operator
passes around."""
from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

# What a finding means, in Russian for the operator who reads the report.
FINDINGS = {
    "refused": "не перенесена",
    "login_renamed": "логин занят: пользователь получил другой логин",
    "role_unknown": "роль не существует в leadline",
    "role_alias": "роль с другим написанием приведена к роли leadline",
    "user_status_unknown": "неизвестный статус пользователя: перенесён как inactive",
    "status_normalised": "статус приведён к русскому написанию",
    "status_unknown": "неизвестный статус: заявка перенесена как «Новая», исходный статус в истории",
    "phone_not_normalised": "телефон без цифр или необычной длины: сохранён как есть",
    "money_differs": "деньги заявки не по правилу (net = итог − расходы, сдача = net × доля мастера)",
    "amount_too_large": "сумма больше MAX_REQUEST_AMOUNT",
    "reference_missing": "ссылка на отсутствующую строку: поле оставлено пустым",
    "campaign_duplicate_phone": "номер РК уже у другой активной РК: перенесена неактивной",
    "income_missing": "заявка в статусе «Готово» без прихода в кассе",
    "income_duplicate": "второй приход по той же заявке: оставлен без связи с заявкой",
    "income_unlinked": "приход по заявке не связан: заявка не найдена или не в статусе «Готово»",
    "income_amount_differs": "сумма прихода отличается от сдачи мастера по заявке",
    "file_missing": "файла нет в папке старой системы: строка файла сохранена как отсутствующая",
    "file_unreadable": "файл не читается: строка файла сохранена как отсутствующая",
    "file_empty": "файл пустой",
    "file_dangerous": "исполняемый файл или скрипт: не перенесён",
    "file_type_unexpected": "содержимое файла не из разрешённых для этого вида типов",
    "file_shared": "один файл у нескольких владельцев: привязан к первому",
    "file_renamed": "путь не подходит к раскладке leadline: файлу дано новое имя",
    "old_row_gone": "строка удалена в старой системе после прошлого импорта: заявка или операция кассы "
                    "удалена и здесь, пользователь отключён, РК оставлена",
    "renumbered": "номер занят в leadline: строке дан новый номер",
}
KEEP_PER_KIND = 5000  # findings kept per kind (the counts stay exact)
# Phone-shaped runs of digits (recording file names carry the caller's number): masked in findings.
PHONE_DIGITS = re.compile(r"(?<!\d)(\d{3})\d{5,9}(\d{2})(?!\d)")


def masked(detail: str) -> str:
    return PHONE_DIGITS.sub(r"\1***\2", detail)


@dataclass
class TableCounts:
    read: int = 0
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)


class Report:
    def __init__(self) -> None:
        self.tables: dict[str, TableCounts] = {}
        self.findings: dict[str, list[tuple[str, object, str]]] = defaultdict(list)
        self.finding_counts: Counter = Counter()
        self.verification: list[str] | None = None
        self.dry_run = False
        self.seconds = 0.0
        self.verify_seconds = 0.0

    def table(self, name: str) -> TableCounts:
        return self.tables.setdefault(name, TableCounts())

    def note(self, kind: str, table: str, old_id: object, detail: str = "") -> None:
        self.finding_counts[kind] += 1
        if len(self.findings[kind]) < KEEP_PER_KIND:
            self.findings[kind].append((table, old_id, masked(detail)))

    def refuse(self, table: str, old_id: object, reason: str) -> None:
        counts = self.table(table)
        counts.refused += 1
        counts.reasons[reason] += 1
        self.note("refused", table, old_id, reason)

    # ---- output ----------------------------------------------------------------------------------

    def summary(self) -> dict:
        """For the console and the job row."""
        return {
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 1),
            "verify_seconds": round(self.verify_seconds, 1),
            "tables": {name: {"read": c.read, "imported": c.imported, "updated": c.updated, "skipped": c.skipped,
                              "refused": c.refused, "seconds": round(c.seconds, 2), "reasons": dict(c.reasons)}
                       for name, c in self.tables.items()},
            "findings": dict(self.finding_counts),
            "verification": self.verification,
        }

    def summary_lines(self) -> list[str]:
        lines = [f"{'table':<22}{'read':>9}{'imported':>10}{'updated':>9}{'skipped':>9}{'refused':>9}{'seconds':>9}"]
        for name, c in self.tables.items():
            lines.append(f"{name:<22}{c.read:>9}{c.imported:>10}{c.updated:>9}{c.skipped:>9}{c.refused:>9}"
                         f"{c.seconds:>9.1f}")
        for kind, count in sorted(self.finding_counts.items()):
            lines.append(f"  {kind}: {count} — {FINDINGS.get(kind, kind)}")
        if self.verification is not None:
            found = len(self.verification)
            lines.append("verification: " + (f"{found} differences" if found else "ok")
                         + f" ({self.verify_seconds:.1f} s)")
        return lines

    def markdown(self) -> str:
        out = io.StringIO()
        out.write(f"# Импорт из старой системы{' (пробный запуск, ничего не записано)' if self.dry_run else ''}\n\n")
        out.write("| таблица | прочитано | добавлено | обновлено | без изменений | отказано |\n")
        out.write("|---|---|---|---|---|---|\n")
        for name, c in self.tables.items():
            out.write(f"| {name} | {c.read} | {c.imported} | {c.updated} | {c.skipped} | {c.refused} |\n")
        for name, c in self.tables.items():
            for reason, count in c.reasons.items():
                out.write(f"\n- {name}: отказано {count}: {reason}")
        out.write("\n\n## Находки\n")
        for kind, count in sorted(self.finding_counts.items()):
            out.write(f"\n### {kind}: {count} — {FINDINGS.get(kind, kind)}\n\n")
            for table, old_id, detail in self.findings[kind]:
                out.write(f"- {table} #{old_id}{': ' + detail if detail else ''}\n")
            if count > len(self.findings[kind]):
                out.write(f"- … и ещё {count - len(self.findings[kind])}\n")
        if self.verification is not None:
            out.write("\n## Сверка\n\n")
            out.write("Расхождений нет.\n" if not self.verification else
                      "".join(f"- {line}\n" for line in self.verification))
        return out.getvalue()

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["kind", "table", "old_id", "detail"])
        for name, c in self.tables.items():
            writer.writerow(["counts", name, "", f"read={c.read} imported={c.imported} updated={c.updated} "
                                                 f"skipped={c.skipped} refused={c.refused}"])
        for kind in sorted(self.findings):
            for table, old_id, detail in self.findings[kind]:
                writer.writerow([kind, table, old_id, detail])
        for line in self.verification or []:
            writer.writerow(["verification", "", "", line])
        return out.getvalue()

    def write(self, path: str) -> None:
        text = self.csv() if path.lower().endswith(".csv") else self.markdown()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
