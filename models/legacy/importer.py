"""The import of the old backend into leadline: lookups, campaigns, users, requests, the cash book and
files, in that order (each needs the ids of the ones before).

How it stays fast and safe:
- The old database is read in one read-only snapshot through server-side cursors, in batches.
- Each batch is copied (COPY) into a temporary staging table and applied with a few set-based
  statements (INSERT ... SELECT, UPDATE ... FROM), together with its `legacy_map` rows, in one
  transaction: a run killed at any moment leaves whole batches, and the next run goes on from there.
- `legacy_map` keeps, for every old row, the new id and the fingerprint (md5 of the old row as
  text, computed by the old PostgreSQL). For requests and cash rows the (id, fingerprint) pairs are
  copied into a staging table and joined against it: an unchanged row is never read whole nor
  parsed here (lookups, campaigns and users are few and compared as they are read); a changed one
  is updated (its history gets one row per changed field); a new one is added; a row deleted in the
  old system since the last run is deleted here too (requests and cash; users are made inactive).
- Requests and cash rows keep their old ids when those are free (people know requests by number),
  and the id sequences are moved past the old ids first, so a new id never takes an old one.
- Rollups follow through their triggers (statement-level: one delta per batch); history rows are
  written with each batch; the sequences are set at the end.
- `--dry-run` does all of it in one transaction that is rolled back, and copies no file.

Only one import runs at a time (an advisory lock on leadline's database).
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat as stat_module
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable

import psycopg

from models.core.enums import STATUS_DONE
from models.core.phones import normalize_phone
from models.legacy import rules
from models.legacy.report import Report
from models.legacy.source import batches, count, open_source
from models.reports import rollups
from settings import settings
from storage.adopt import adopt_file
from storage.kinds import EXTENSION_TYPES, KINDS
from storage.sniff import CONTAINER_OF, dangerous, sniff

log = logging.getLogger(__name__)

LOCK_KEY = 0x6C6567616379  # "legacy"
Progress = Callable[[str, int, int], None]


class ImportRefused(Exception):
    """The import cannot start (another one runs, the old database is not reachable)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def target_url() -> str:
    from models.core.db import get_engine

    url = get_engine().url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Importer:
    def __init__(self, source_url: str, *, media_dir: str | None = None, dry_run: bool = False,
                 batch_size: int = 5000, progress: Progress | None = None, report: Report | None = None):
        self.source_url = source_url
        self.media_dir = Path(media_dir or settings.MEDIA_ROOT).absolute()
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.progress = progress or (lambda table, done, total: None)
        self.report = report or Report()
        self.report.dry_run = dry_run
        self.maps: dict[str, dict[int, int]] = {}
        self.max_before: dict[str, int] = {}
        self.bulk = False  # most of a table's rows written in this run (the first import)
        self.src: psycopg.Connection
        self.dst: psycopg.Connection

    # ---- the run -----------------------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        with open_source(self.source_url) as src, psycopg.connect(target_url(), autocommit=False) as dst:
            self.src, self.dst = src, dst
            if not dst.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
                raise ImportRefused("импорт из старой системы уже выполняется")
            dst.commit()
            try:
                self._create_staging()
                for step, tables in ((self._lookups, (*self.LOOKUPS, "roles")),
                                     (self._campaigns, ("advertising_campaigns",)),
                                     (self._users, rules.USER_TABLES), (self._requests, ("requests",)),
                                     (self._transactions, ("transactions",)), (self._files, ("files",)),
                                     (self._finish, ("(afterwards)",))):
                    step_started = time.monotonic()
                    step()
                    self.report.table(tables[0]).seconds += time.monotonic() - step_started
                if self.dry_run:
                    dst.rollback()
                else:
                    dst.commit()
            except BaseException:
                dst.rollback()
                raise
            finally:
                dst.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
                dst.commit()
        self.report.seconds = time.monotonic() - started
        return self.report

    def _commit(self) -> None:
        """The end of a batch: committed (in a dry run everything stays in one transaction)."""
        if not self.dry_run:
            self.dst.commit()

    def _create_staging(self) -> None:
        self.dst.execute("""
            CREATE TEMP TABLE stage_requests (
                old_id bigint, fp text, new_id bigint, is_new boolean, status_raw text,
                advertising_campaign_id int, city_id int, request_type_id int, client_phone text,
                client_phone_raw text, client_name text, address text, meeting_date timestamptz,
                direction_id int, problem text, status text, master_id int, master_notes text,
                result numeric(12,2), expenses numeric(12,2), net_amount numeric(12,2),
                master_handover numeric(12,2), ats_number text, call_center_name text,
                call_center_notes text, avito_chat_id text, completed_at timestamptz,
                created_at timestamptz, updated_at timestamptz);
            CREATE TEMP TABLE stage_transactions (
                old_id bigint, fp text, new_id bigint, is_new boolean, city_id int,
                transaction_type_id int, amount numeric(12,2), notes text, specified_date date,
                payment_reason text, income_for bigint, created_at timestamptz);
            CREATE TEMP TABLE stage_files (
                key bigint, fp text, new_id bigint, is_new boolean, kind text, owner_table text,
                owner_old_id bigint, original_name text, size_bytes bigint, sha256 text, sniffed_type text,
                status text, reject_reason text, storage_path text, created_at timestamptz);
            CREATE TEMP TABLE stage_ids (old_id bigint PRIMARY KEY);
            CREATE TEMP TABLE stage_fingerprints_requests (old_id bigint, fp text);
            CREATE TEMP TABLE stage_fingerprints_transactions (old_id bigint, fp text);
        """)

    # ---- helpers -----------------------------------------------------------------------------------

    def _mapped(self, table: str) -> dict[int, tuple[int | None, str]]:
        """old id -> (new id, fingerprint) of what earlier runs imported."""
        return {old: (new, fp) for old, new, fp in self.dst.execute(
            "SELECT old_id, new_id, fingerprint FROM legacy_map WHERE old_table = %s", (table,))}

    def _remember(self, table: str, rows: list[tuple[int, int | None, str, str | None]]) -> None:
        """(old id, new id, fingerprint, refusal) into legacy_map (a refused row keeps a new id it had)."""
        if not rows:
            return
        with self.dst.cursor() as cur:
            cur.executemany(
                "INSERT INTO legacy_map (old_table, old_id, new_id, fingerprint, refused) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (old_table, old_id) DO UPDATE SET new_id = coalesce(excluded.new_id, legacy_map.new_id), "
                "fingerprint = excluded.fingerprint, refused = excluded.refused, imported_at = now()",
                [(table, old, new, fp, refused) for old, new, fp, refused in rows])

    def _remember_stage(self, table: str, stage: str) -> None:
        self.dst.execute(
            f"INSERT INTO legacy_map (old_table, old_id, new_id, fingerprint, refused) "  # nosec B608 - fixed names
            f"SELECT %s, old_id, new_id, fp, NULL FROM {stage} "
            "ON CONFLICT (old_table, old_id) DO UPDATE SET new_id = excluded.new_id, "
            "fingerprint = excluded.fingerprint, refused = NULL, imported_at = now()", (table,))

    def _move_sequence(self, table: str, max_old_id: int) -> None:
        """The table's id sequence past its ids and the old ids: nextval() never takes an old id."""
        self.max_before[table] = self.dst.execute(
            f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]  # nosec B608 - a fixed table name
        self.dst.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # nosec B608 - a fixed table name
            f"greatest((SELECT coalesce(max(id), 0) FROM {table}), %s, 1))", (max_old_id,))

    def _allocate_ids(self, stage: str, table: str) -> None:
        """New rows keep their old id when it is free in `table`, else take the next of its sequence.

        Only ids up to the table's largest id before this run's step can be taken: what the step
        inserted since is old ids (each once) or ids of the sequence, which was moved past them."""
        self.dst.execute(
            f"UPDATE {stage} s SET new_id = CASE WHEN s.old_id > %s THEN s.old_id "  # nosec B608 - fixed names
            f"WHEN EXISTS (SELECT 1 FROM {table} t WHERE t.id = s.old_id) "
            f"THEN nextval(pg_get_serial_sequence('{table}', 'id')) ELSE s.old_id END WHERE s.is_new",
            (self.max_before[table],))
        renumbered = self.dst.execute(
            f"SELECT old_id, new_id FROM {stage} WHERE is_new AND new_id <> old_id").fetchall()  # nosec B608
        for old, new in renumbered:
            self.report.note("renumbered", table, old, f"новый номер {new}")

    def _changes(self, table: str) -> tuple[dict[int, tuple[int | None, str]], list[int]]:
        """Which old rows are new or changed since the last run, found in leadline's database: the old
        table's (id, fingerprint) pairs are copied as they come (COPY to COPY, no row parsed here) into
        `stage_fingerprints_<table>` and joined against `legacy_map`. Returns the changed rows' earlier
        legacy_map entries (old id -> (new id, fingerprint)) and the ids of every new or changed row.
        The staged ids also serve the deletions check at the end (_gone)."""
        stage = f"stage_fingerprints_{table}"
        self.dst.execute(f"TRUNCATE {stage}")  # nosec B608 - fixed names
        read = f"COPY (SELECT id, md5(t::text) FROM {table} t) TO STDOUT"  # nosec B608 - a fixed table name
        with self.src.cursor() as out, self.dst.cursor() as into:
            with out.copy(read) as source, into.copy(f"COPY {stage} (old_id, fp) FROM STDIN") as sink:  # nosec B608
                for block in source:
                    sink.write(block)
        rows = self.dst.execute(
            f"SELECT s.old_id, m.old_id IS NOT NULL, m.new_id, m.fingerprint FROM {stage} s "  # nosec B608
            "LEFT JOIN legacy_map m ON m.old_table = %s AND m.old_id = s.old_id "
            "WHERE m.fingerprint IS DISTINCT FROM s.fp ORDER BY s.old_id", (table,)).fetchall()
        known = {old_id: (new_id, fp) for old_id, mapped, new_id, fp in rows if mapped}
        return known, [row[0] for row in rows]

    def _changed_rows(self, table: str, columns: str, wanted: list[int], total: int):
        """Batches of the old rows (`columns` and their fingerprint) that are new or changed (`wanted`,
        from _changes). When few rows changed (a delta) only those rows are read, by id; else the
        table is streamed and the unchanged rows are left out here. Counts every row read and, for
        now, as skipped."""
        counts = self.report.table(table)
        counts.read += total
        counts.skipped += total
        select = f"SELECT {columns}, md5(t::text) FROM {table} t"  # nosec B608 - fixed names and columns
        done = 0
        if len(wanted) > total // 2:
            self.bulk = True
            wanted_set = set(wanted)
            for batch in batches(self.src, table, select + " ORDER BY id", self.batch_size):
                done += len(batch)
                yield [row for row in batch if row[0] in wanted_set]
                self.progress(table, done, total)
            return
        for start in range(0, len(wanted), self.batch_size):
            chunk = wanted[start:start + self.batch_size]
            rows = self.src.execute(select + " WHERE id = ANY(%s) ORDER BY id", (chunk,)).fetchall()
            done += len(rows)
            yield rows
            self.progress(table, total - len(wanted) + done, total)

    def _copy(self, stage: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        self.dst.execute(f"TRUNCATE {stage}")  # nosec B608 - a fixed table name
        with self.dst.cursor() as cur:
            with cur.copy(f"COPY {stage} ({', '.join(columns)}) FROM STDIN") as copy:  # nosec B608
                for row in rows:
                    copy.write_row(row)

    # ---- lookups -----------------------------------------------------------------------------------

    LOOKUPS = ("cities", "request_types", "directions", "transaction_types")

    def _lookups(self) -> None:
        for table in self.LOOKUPS:
            self._lookup(table)
        self._roles()

    def _lookup(self, table: str) -> None:
        """By name: an old city is the new city of the same name (created when missing)."""
        counts = self.report.table(table)
        known = self._mapped(table)
        rows = self.src.execute(f"SELECT id, name, md5(t::text) FROM {table} t ORDER BY id").fetchall()  # nosec B608
        incomes = {}
        if table == "transaction_types":
            incomes = self._type_directions()
        remembered = []
        for old_id, name, fp in rows:
            counts.read += 1
            name = name.strip()
            previous = known.get(old_id)
            if previous and previous[1] == fp and previous[0] is not None:
                counts.skipped += 1
                continue
            if table == "transaction_types":
                new_id = self.dst.execute(
                    "INSERT INTO transaction_types (name, is_income) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING "
                    "RETURNING id", (name, incomes.get(old_id, False))).fetchone()
            else:
                new_id = self.dst.execute(
                    f"INSERT INTO {table} (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id",  # nosec B608
                    (name,)).fetchone()
            if new_id is None:
                new_id = self.dst.execute(f"SELECT id FROM {table} WHERE name = %s", (name,)).fetchone()  # nosec B608
            if previous:
                counts.updated += 1
            else:
                counts.imported += 1
            remembered.append((old_id, new_id[0], fp, None))
        self._remember(table, remembered)
        self._commit()
        self.maps[table] = {old: new for old, (new, _fp) in self._mapped(table).items() if new is not None}
        self.progress(table, len(rows), len(rows))

    def _type_directions(self) -> dict[int, bool]:
        """Whether an old type is income: by its name (Приход, доход, income), else by the sign most of
        its operations have."""
        out = {}
        signs = {type_id: (plus, minus) for type_id, plus, minus in self.src.execute(
            "SELECT transaction_type_id, count(*) FILTER (WHERE amount > 0), count(*) FILTER (WHERE amount < 0) "
            "FROM transactions GROUP BY 1")}
        for type_id, name in self.src.execute("SELECT id, name FROM transaction_types"):
            lowered = name.lower()
            if any(word in lowered for word in ("приход", "доход", "income")):
                out[type_id] = True
            elif any(word in lowered for word in ("расход", "expense")):
                out[type_id] = False
            else:
                plus, minus = signs.get(type_id, (0, 0))
                out[type_id] = plus > minus
        return out

    def _roles(self) -> None:
        """Roles are leadline's fixed set: an old role is the new one of its name (old spellings too)."""
        counts = self.report.table("roles")
        new_roles = dict(self.dst.execute("SELECT name, id FROM roles").fetchall())
        mapping = {}
        for old_id, name in self.src.execute("SELECT id, name FROM roles ORDER BY id"):
            counts.read += 1
            role = rules.user_role("employees", name)
            if role is None:
                counts.refused += 1
                counts.reasons[f"роль «{name}» не существует в leadline"] += 1
                self.report.note("role_unknown", "roles", old_id, name)
                continue
            if role != name:
                self.report.note("role_alias", "roles", old_id, f"{name} → {role}")
            counts.skipped += 1  # nothing to write: the role exists
            mapping[old_id] = new_roles[role]
        self.maps["roles"] = mapping
        self.role_names = {old_id: name for old_id, name in self.src.execute("SELECT id, name FROM roles")}

    # ---- advertising campaigns ------------------------------------------------------------------------

    def _campaigns(self) -> None:
        table = "advertising_campaigns"
        counts = self.report.table(table)
        known = self._mapped(table)
        cities = self.maps["cities"]
        active_phones = {phone: cid for phone, cid in self.dst.execute(
            "SELECT phone, id FROM advertising_campaigns WHERE is_active AND phone IS NOT NULL")}
        max_old = self.src.execute("SELECT coalesce(max(id), 0) FROM advertising_campaigns").fetchone()[0]
        self._move_sequence(table, max_old)
        remembered = []
        rows = self.src.execute("SELECT id, city_id, name, phone_number, created_at, md5(t::text) "
                                "FROM advertising_campaigns t ORDER BY id").fetchall()
        for old_id, city_old, name, phone_raw, created_at, fp in rows:
            counts.read += 1
            previous = known.get(old_id)
            if previous and previous[1] == fp and previous[0] is not None:
                counts.skipped += 1
                continue
            phone = normalize_phone(phone_raw)
            new_id = previous[0] if previous else None
            holder = active_phones.get(phone)
            active = phone is None or holder is None or holder == new_id
            if not active:
                self.report.note("campaign_duplicate_phone", table, old_id, f"номер уже у РК #{holder}")
            values = (cities[city_old], name, phone_raw, phone, active, created_at or _now())
            if new_id is None:
                free = self.dst.execute("SELECT NOT EXISTS (SELECT 1 FROM advertising_campaigns WHERE id = %s)",
                                        (old_id,)).fetchone()[0]
                new_id = self.dst.execute(
                    "INSERT INTO advertising_campaigns (id, city_id, name, phone_number, phone, is_active, created_at, "
                    "updated_at) VALUES (coalesce(%s, nextval(pg_get_serial_sequence('advertising_campaigns', 'id'))), "
                    "%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (old_id if free else None, *values, values[-1])).fetchone()[0]
                counts.imported += 1
            else:
                self.dst.execute(
                    "UPDATE advertising_campaigns SET city_id = %s, name = %s, phone_number = %s, phone = %s, "
                    "is_active = %s, created_at = %s, updated_at = now() WHERE id = %s", (*values, new_id))
                counts.updated += 1
            if active and phone is not None:
                active_phones[phone] = new_id
            remembered.append((old_id, new_id, fp, None))
        self._remember(table, remembered)
        self._commit()
        self.maps[table] = {old: new for old, (new, _fp) in self._mapped(table).items() if new is not None}
        self.progress(table, len(rows), len(rows))

    # ---- users ---------------------------------------------------------------------------------------

    USER_SQL = {
        "masters": "SELECT id, login, password_hash, full_name, phone_number, birth_date, passport, status, chat_id, "
                   "city_id, notes, created_at, NULL::int AS role_id, md5(t::text) FROM masters t ORDER BY id",
        "employees": "SELECT id, login, password_hash, name, NULL, NULL, NULL, status, NULL, city_id, notes, "
                     "created_at, role_id, md5(t::text) FROM employees t ORDER BY id",
        "administrators": "SELECT id, login, password_hash, name, NULL, NULL, NULL, status, NULL, NULL::int, notes, "
                          "created_at, role_id, md5(t::text) FROM administrators t ORDER BY id",
    }

    def _users(self) -> None:
        roles = dict(self.dst.execute("SELECT name, id FROM roles").fetchall())
        cities = self.maps["cities"]
        pending = []  # (table, row, role id, previous)
        for table in rules.USER_TABLES:
            counts = self.report.table(table)
            known = self._mapped(table)
            remembered = []
            for row in self.src.execute(self.USER_SQL[table]).fetchall():
                counts.read += 1
                old_id, fp = row[0], row[-1]
                previous = known.get(old_id)
                if previous and previous[1] == fp and previous[0] is not None:
                    counts.skipped += 1
                    continue
                role_name = rules.user_role(table, self.role_names.get(row[12]) if row[12] is not None else None)
                if role_name is None:
                    reason = f"роль «{self.role_names.get(row[12])}» не существует в leadline"
                    self.report.refuse(table, old_id, reason)
                    remembered.append((old_id, None, fp, reason))
                    continue
                pending.append((table, row, roles[role_name], previous))
            self._remember(table, remembered)
        taken = {login for (login,) in self.dst.execute("SELECT lower(login) FROM users")}
        new_logins = rules.assign_logins([(t, row[0], row[1]) for t, row, _r, prev in pending if prev is None], taken)
        changed_users = []
        for table, row, role_id, previous in pending:
            (old_id, login, password_hash, full_name, phone_raw, birth_date, passport, status_raw, chat_id,
             city_old, notes, created_at, _role_old, fp) = row
            counts = self.report.table(table)
            status, known_status = rules.user_status(status_raw)
            if not known_status:
                self.report.note("user_status_unknown", table, old_id, status_raw)
            city_id = cities.get(city_old) if city_old is not None else None
            if city_old is not None and city_id is None:
                self.report.note("reference_missing", table, old_id, f"город #{city_old}")
            values = dict(role_id=role_id, status=status, city_id=city_id, full_name=(full_name or "").strip() or login,
                          phone_number=phone_raw, phone=normalize_phone(phone_raw), birth_date=birth_date,
                          passport=passport, chat_id=chat_id, notes=notes)
            if previous is None:
                new_login = new_logins[(table, old_id)]
                if new_login != login.strip():
                    self.report.note("login_renamed", table, old_id, f"{login} → {new_login}")
                new_id = self.dst.execute(
                    "INSERT INTO users (login, password_hash, role_id, status, city_id, full_name, phone_number, "
                    "phone, birth_date, passport, chat_id, notes, created_at, updated_at) VALUES (%(login)s, %(hash)s, "
                    "%(role_id)s, %(status)s, %(city_id)s, %(full_name)s, %(phone_number)s, %(phone)s, %(birth_date)s, "
                    "%(passport)s, %(chat_id)s, %(notes)s, %(created_at)s, %(created_at)s) RETURNING id",
                    {**values, "login": new_login, "hash": password_hash, "created_at": created_at or _now()},
                ).fetchone()[0]
                counts.imported += 1
            else:
                new_id = previous[0]
                current_login, current_hash = self.dst.execute(
                    "SELECT login, password_hash FROM users WHERE id = %s", (new_id,)).fetchone()
                wanted_login = current_login
                if current_login.lower() != login.strip().lower() and not current_login.lower().startswith(
                        login.strip().lower() + "-"):
                    others = {name for (name,) in self.dst.execute(
                        "SELECT lower(login) FROM users WHERE id <> %s", (new_id,))}
                    wanted_login = rules.assign_logins([(table, old_id, login)], others)[(table, old_id)]
                    if wanted_login != login.strip():
                        self.report.note("login_renamed", table, old_id, f"{login} → {wanted_login}")
                # A hash leadline made at a sign-in stays; an old bcrypt hash follows the old system.
                new_hash = password_hash if current_hash.startswith(("$2a$", "$2b$", "$2y$")) else current_hash
                self.dst.execute(
                    "UPDATE users SET login = %(login)s, password_hash = %(hash)s, role_id = %(role_id)s, "
                    "status = %(status)s, city_id = %(city_id)s, full_name = %(full_name)s, "
                    "phone_number = %(phone_number)s, phone = %(phone)s, birth_date = %(birth_date)s, "
                    "passport = %(passport)s, chat_id = %(chat_id)s, notes = %(notes)s, updated_at = now(), "
                    "session_epoch = session_epoch + CASE WHEN role_id <> %(role_id)s "
                    "OR city_id IS DISTINCT FROM %(city_id)s OR password_hash <> %(hash)s "
                    "OR %(status)s NOT IN ('active', 'busy') THEN 1 ELSE 0 END WHERE id = %(id)s",
                    {**values, "login": wanted_login, "hash": new_hash, "id": new_id})
                counts.updated += 1
                changed_users.append(new_id)
            self._remember(table, [(old_id, new_id, fp, None)])
        self._commit()
        self._bump_user_generations(changed_users)
        self.maps["masters"] = {old: new for old, (new, _fp) in self._mapped("masters").items() if new is not None}
        self.progress("users", len(pending), len(pending))

    def _bump_user_generations(self, user_ids: list[int]) -> None:
        """The API reloads a changed user on their next call (models/people/tables.py)."""
        if not user_ids or self.dry_run:
            return
        try:
            from models.core.redis import get_redis
            from models.people.tables import user_generation_key

            pipe = get_redis().pipeline(transaction=False)
            for user_id in user_ids:
                pipe.incr(user_generation_key(user_id))
                pipe.expire(user_generation_key(user_id), 7 * 24 * 3600)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - Redis down: sessions still end through session_epoch
            log.warning("legacy import: user generations not bumped (%s)", type(exc).__name__)

    # ---- requests ------------------------------------------------------------------------------------

    REQUEST_COLUMNS = (
        "old_id", "fp", "new_id", "is_new", "status_raw", "advertising_campaign_id", "city_id", "request_type_id",
        "client_phone", "client_phone_raw", "client_name", "address", "meeting_date", "direction_id", "problem",
        "status", "master_id", "master_notes", "result", "expenses", "net_amount", "master_handover", "ats_number",
        "call_center_name", "call_center_notes", "avito_chat_id", "completed_at", "created_at", "updated_at",
    )
    REQUEST_TARGET = REQUEST_COLUMNS[5:]
    HISTORY_FIELDS = ("status", "city_id", "request_type_id", "direction_id", "advertising_campaign_id", "master_id",
                      "client_phone", "client_name", "address", "problem", "master_notes", "result", "expenses",
                      "net_amount", "master_handover", "ats_number", "call_center_name", "call_center_notes",
                      "avito_chat_id")

    def _requests(self) -> None:
        table = "requests"
        counts = self.report.table(table)
        total = count(self.src, table)
        mapped = self.dst.execute("SELECT count(*) FROM legacy_map WHERE old_table = 'requests'").fetchone()[0]
        known, wanted = self._changes(table)
        max_old = self.src.execute("SELECT coalesce(max(id), 0) FROM requests").fetchone()[0]
        self._move_sequence(table, max_old)
        if mapped < total // 2:
            # Most requests are still to come: the daily rollup's trigger idles (no zone row) and the
            # rollups are rebuilt once at the end (_finish), a scan instead of a delta per batch. A
            # run killed meanwhile leaves the row missing, and the next run rebuilds them too.
            self.dst.execute("DELETE FROM report_rollups")
        campaigns, cities = self.maps["advertising_campaigns"], self.maps["cities"]
        types, directions, masters = self.maps["request_types"], self.maps["directions"], self.maps["masters"]
        limit = settings.MAX_REQUEST_AMOUNT
        columns = ("id, advertising_campaign_id, city_id, request_type_id, client_phone, client_name, address, "
                   "meeting_date, direction_id, problem, status, master_id, master_notes, result, expenses, "
                   "net_amount, master_handover, ats_number, call_center_name, call_center_notes, avito_chat_id, "
                   "created_at, updated_at")
        note, refuse = self.report.note, self.report.refuse
        for batch in self._changed_rows(table, columns, wanted, total):
            staged, refused = [], []
            for (old_id, campaign_old, city_old, type_old, phone_raw, client_name, address, meeting_date, direction_old,
                 problem, status_raw, master_old, master_notes, result, expenses, net, handover, ats, cc_name, cc_notes,
                 avito, created_at, updated_at, fp) in batch:
                previous = known.get(old_id)
                city_id, type_id = cities.get(city_old), types.get(type_old)
                if city_id is None or type_id is None:
                    reason = "город или тип заявки не перенесены"
                    refuse(table, old_id, reason)
                    refused.append((old_id, None, fp, reason))
                    continue
                if (result is not None and result < 0) or (expenses is not None and expenses < 0):
                    reason = "отрицательный итог или расходы"
                    refuse(table, old_id, reason)
                    refused.append((old_id, None, fp, reason))
                    continue
                expenses = expenses if expenses is not None else Decimal("0.00")
                handover = handover if handover is not None else Decimal("0.00")
                if max(result or 0, expenses, handover) > limit:
                    note("amount_too_large", table, old_id)
                status, status_note = rules.request_status(status_raw)
                if status_note == "unknown":
                    note("status_unknown", table, old_id, f"«{status_raw}» → «{status}»")
                elif status_note == "normalised":
                    note("status_normalised", table, old_id, f"«{status_raw}» → «{status}»")
                new_net, money_notes = rules.money_notes(result, expenses, net, handover)
                if money_notes:
                    note("money_differs", table, old_id, "; ".join(money_notes))
                phone = normalize_phone(phone_raw)
                if phone is None or len(phone) != 11:
                    note("phone_not_normalised", table, old_id)
                master_id = masters.get(master_old) if master_old is not None else None
                campaign_id = campaigns.get(campaign_old) if campaign_old is not None else None
                direction_id = directions.get(direction_old) if direction_old is not None else None
                for name, old, new in (("master_id", master_old, master_id), ("advertising_campaign_id", campaign_old,
                                       campaign_id), ("direction_id", direction_old, direction_id)):
                    if old is not None and new is None:
                        note("reference_missing", table, old_id, f"{name} #{old}")
                created = created_at or _now()
                updated = updated_at or created
                staged.append((
                    old_id, fp, previous[0] if previous else None, previous is None or previous[0] is None,
                    status_raw if status_note == "unknown" else None, campaign_id, city_id, type_id,
                    (phone or phone_raw.strip() or "-")[:20], phone_raw, client_name, address, meeting_date,
                    direction_id, problem, status, master_id, master_notes, result, expenses, new_net, handover, ats,
                    cc_name, cc_notes, avito, updated if status == STATUS_DONE else None, created, updated,
                ))
            counts.skipped -= len(staged) + len(refused)
            self._apply_requests(staged)
            self._remember(table, refused)
            self._commit()

    def _apply_requests(self, staged: list[tuple]) -> None:
        if not staged:
            return
        counts = self.report.table("requests")
        self._copy("stage_requests", self.REQUEST_COLUMNS, staged)
        self._allocate_ids("stage_requests", "requests")
        cur = self.dst
        changes = ", ".join(f"('{name}', r.{name}::text, s.{name}::text)" for name in self.HISTORY_FIELDS)
        cur.execute(
            "INSERT INTO request_events (request_id, action, field, old_value, new_value, source) "  # nosec B608
            "SELECT r.id, 'updated', v.field, v.old, v.new, 'import' FROM stage_requests s "
            f"JOIN requests r ON r.id = s.new_id CROSS JOIN LATERAL (VALUES {changes}) AS v(field, old, new) "
            "WHERE NOT s.is_new AND v.old IS DISTINCT FROM v.new")
        assignments = ", ".join(f"{name} = s.{name}" for name in self.REQUEST_TARGET
                                if name not in ("completed_at", "created_at"))
        updated = cur.execute(
            f"UPDATE requests r SET {assignments}, created_at = s.created_at, version = r.version + 1, "  # nosec B608
            "completed_at = CASE WHEN s.status <> 'Готово' THEN r.completed_at "
            "WHEN r.status = 'Готово' THEN coalesce(r.completed_at, s.completed_at) ELSE s.completed_at END "
            "FROM stage_requests s WHERE NOT s.is_new AND r.id = s.new_id").rowcount
        columns = ", ".join(self.REQUEST_TARGET)
        inserted = cur.execute(
            f"INSERT INTO requests (id, {columns}) SELECT new_id, {columns} FROM stage_requests "  # nosec B608
            "WHERE is_new ORDER BY new_id").rowcount
        cur.execute(
            "INSERT INTO request_events (request_id, action, source, created_at) "
            "SELECT new_id, 'created', 'import', created_at FROM stage_requests WHERE is_new")
        cur.execute(
            "INSERT INTO request_events (request_id, action, field, old_value, new_value, source) "
            "SELECT new_id, 'updated', 'status', status_raw, status, 'import' FROM stage_requests "
            "WHERE status_raw IS NOT NULL")
        self._remember_stage("requests", "stage_requests")
        counts.imported += inserted
        counts.updated += updated

    # ---- the cash book -------------------------------------------------------------------------------

    TRANSACTION_COLUMNS = ("old_id", "fp", "new_id", "is_new", "city_id", "transaction_type_id", "amount", "notes",
                           "specified_date", "payment_reason", "income_for", "created_at")

    def _transactions(self) -> None:
        table = "transactions"
        counts = self.report.table(table)
        total = count(self.src, table)
        known, wanted = self._changes(table)
        max_old = self.src.execute("SELECT coalesce(max(id), 0) FROM transactions").fetchone()[0]
        self._move_sequence(table, max_old)
        cities, types = self.maps["cities"], self.maps["transaction_types"]
        is_income = dict(self.dst.execute("SELECT id, is_income FROM transaction_types").fetchall())
        columns = "id, city_id, transaction_type_id, amount, notes, specified_date, payment_reason, created_at"
        for batch in self._changed_rows(table, columns, wanted, total):
            staged, refused = [], []
            for old_id, city_old, type_old, amount, notes, specified, reason_text, created_at, fp in batch:
                previous = known.get(old_id)
                city_id, type_id = cities.get(city_old), types.get(type_old)
                reason = None
                if city_id is None or type_id is None:
                    reason = "город или тип операции не перенесены"
                elif amount == 0:
                    reason = "нулевая сумма"
                elif (amount > 0) != is_income[type_id]:
                    reason = (f"знак суммы ({amount}) не соответствует типу операции "
                              f"({'приход' if is_income[type_id] else 'расход'})")
                if reason:
                    self.report.refuse(table, old_id, reason)
                    refused.append((old_id, None, fp, reason))
                    continue
                staged.append((old_id, fp, previous[0] if previous else None, previous is None or previous[0] is None,
                               city_id, type_id, amount, notes, specified, reason_text, rules.income_request(notes),
                               created_at or _now()))
            counts.skipped -= len(staged) + len(refused)
            self._apply_transactions(staged)
            self._remember(table, refused)
            self._commit()

    def _apply_transactions(self, staged: list[tuple]) -> None:
        if not staged:
            return
        counts = self.report.table("transactions")
        self._copy("stage_transactions", self.TRANSACTION_COLUMNS, staged)
        self._allocate_ids("stage_transactions", "transactions")
        cur = self.dst
        # A changed row is linked again below (its notes may name another request now).
        updated = cur.execute(
            "UPDATE transactions t SET city_id = s.city_id, transaction_type_id = s.transaction_type_id, "
            "amount = s.amount, notes = s.notes, specified_date = s.specified_date, payment_reason = s.payment_reason, "
            "created_at = s.created_at, updated_at = now(), request_id = NULL "
            "FROM stage_transactions s WHERE NOT s.is_new AND t.id = s.new_id").rowcount
        inserted = cur.execute(
            "INSERT INTO transactions (id, city_id, transaction_type_id, amount, notes, specified_date, "
            "payment_reason, created_at, updated_at) SELECT new_id, city_id, transaction_type_id, amount, notes, "
            "specified_date, payment_reason, created_at, created_at FROM stage_transactions WHERE is_new "
            "ORDER BY new_id").rowcount
        self._link_incomes()
        self._remember_stage("transactions", "stage_transactions")
        counts.imported += inserted
        counts.updated += updated

    def _link_incomes(self) -> None:
        """An automatic income (`Приход по заявке N`) gets request_id when its request came over in
        Готово and has no income linked yet (the lowest old id first); the others are reported."""
        self.dst.execute("""
            WITH wanted AS (
                SELECT DISTINCT ON (m.new_id) s.new_id AS transaction_id, m.new_id AS request_id
                FROM stage_transactions s
                JOIN transaction_types tt ON tt.id = s.transaction_type_id AND tt.is_income
                JOIN legacy_map m ON m.old_table = 'requests' AND m.old_id = s.income_for AND m.new_id IS NOT NULL
                JOIN requests r ON r.id = m.new_id AND r.status = 'Готово'
                WHERE NOT EXISTS (SELECT 1 FROM transactions x WHERE x.request_id = m.new_id AND x.id <> s.new_id)
                ORDER BY m.new_id, s.old_id)
            UPDATE transactions t SET request_id = w.request_id FROM wanted w
            WHERE t.id = w.transaction_id AND t.request_id IS DISTINCT FROM w.request_id""")
        rows = self.dst.execute("""
            SELECT s.old_id, s.income_for, t.request_id, t.amount, r.status, r.master_handover,
                   EXISTS (SELECT 1 FROM transactions x WHERE x.request_id = m.new_id AND x.id <> t.id)
            FROM stage_transactions s JOIN transactions t ON t.id = s.new_id
            LEFT JOIN legacy_map m ON m.old_table = 'requests' AND m.old_id = s.income_for
            LEFT JOIN requests r ON r.id = m.new_id
            WHERE s.income_for IS NOT NULL""").fetchall()
        for old_id, request_old, linked, amount, status, handover, other_linked in rows:
            if linked is not None:
                if handover is not None and amount != handover:
                    self.report.note("income_amount_differs", "transactions", old_id,
                                     f"приход {amount}, сдача мастера {handover} (заявка #{request_old})")
            elif other_linked:
                self.report.note("income_duplicate", "transactions", old_id, f"заявка #{request_old}")
            else:
                self.report.note("income_unlinked", "transactions", old_id,
                                 f"заявка #{request_old}: {'не найдена' if status is None else status}")

    # ---- files ---------------------------------------------------------------------------------------

    FILE_SQL = """
        SELECT 'requests', id, 'bso', bso_file_path, created_at FROM requests WHERE coalesce(bso_file_path, '') <> ''
        UNION ALL SELECT 'requests', id, 'expense', expense_file_path, created_at FROM requests
            WHERE coalesce(expense_file_path, '') <> ''
        UNION ALL SELECT 'requests', id, 'recording', recording_file_path, created_at FROM requests
            WHERE coalesce(recording_file_path, '') <> ''
        UNION ALL SELECT 'transactions', id, 'transaction', file_path, created_at FROM transactions
            WHERE coalesce(file_path, '') <> ''
        UNION ALL SELECT 'transactions', id, 'transaction', expense_receipt_path, created_at FROM transactions
            WHERE coalesce(expense_receipt_path, '') <> ''
        UNION ALL SELECT CASE WHEN request_id IS NOT NULL THEN 'requests' ELSE 'transactions' END,
            coalesce(request_id, transaction_id), file_type, file_path, uploaded_at FROM files
    """
    FILE_COLUMNS = ("key", "fp", "new_id", "is_new", "kind", "owner_table", "owner_old_id", "original_name",
                    "size_bytes", "sha256", "sniffed_type", "status", "reject_reason", "storage_path", "created_at")

    def _files(self) -> None:
        table = "media"
        counts = self.report.table("files")
        known = self._mapped(table)
        seen: dict[int, tuple[str, int]] = {}
        # The total (for the progress) comes with the rows: one scan of the old tables, not two.
        select = f"SELECT f.*, count(*) OVER () FROM ({self.FILE_SQL}) f"  # nosec B608 - fixed SQL
        done = 0
        for batch in batches(self.src, "files", select, min(self.batch_size, 1000)):
            staged = []
            total = batch[0][-1]
            for owner_table, owner_old, file_type, raw_path, created_at, _total in batch:
                counts.read += 1
                relative = rules.old_relative_path(raw_path)
                if relative is None:
                    self.report.refuse("files", owner_old, f"путь «{raw_path}» не указывает на файл")
                    continue
                key = rules.path_key(relative)
                if key in seen:
                    if seen[key] != (owner_table, owner_old):
                        self.report.note("file_shared", owner_table, owner_old, relative)
                    counts.skipped += 1
                    continue
                seen[key] = (owner_table, owner_old)
                kind = rules.file_kind(owner_table, file_type)
                row = self._check_file(key, relative, kind, owner_table, owner_old, created_at, known.get(key))
                if row is None:
                    counts.skipped += 1
                else:
                    staged.append(row)
            self._apply_files(staged)
            self._commit()
            done += len(batch)
            self.progress("files", done, total)

    def _check_file(self, key: int, relative: str, kind: str, owner_table: str, owner_old: int,
                    created_at, previous) -> tuple | None:
        """The staging row of one old file, its bytes checked and placed; None when unchanged."""
        source = self.media_dir / relative
        try:
            info = os.stat(source, follow_symlinks=False)
            present = stat_module.S_ISREG(info.st_mode)
        except OSError:
            info, present = None, False
        signature = f"{relative}|{owner_table}|{owner_old}|{kind}|" + (
            f"{info.st_size}|{info.st_mtime_ns}" if present else "missing")
        fp = hashlib.md5(signature.encode(), usedforsecurity=False).hexdigest()
        if previous is not None and previous[1] == fp:
            return None
        storage_path = rules.storage_path_for(kind, relative)
        name = relative.rpartition("/")[2][:255] or "file"
        base = (key, fp, previous[0] if previous else None, previous is None, kind, owner_table, owner_old, name)
        created = created_at or _now()
        if not present:
            self.report.note("file_missing", owner_table, owner_old, relative)
            return (*base, None, None, None, "rejected", "Файл не найден в папке старой системы при переносе",
                    None, created)
        digest = hashlib.sha256()
        head = b""
        try:
            with open(source, "rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    if not head:
                        head = chunk[:4096]
                    digest.update(chunk)
        except OSError:
            self.report.note("file_unreadable", owner_table, owner_old, relative)
            return (*base, None, None, None, "rejected", "Файл не читается в папке старой системы", None, created)
        if info.st_size == 0:
            self.report.note("file_empty", owner_table, owner_old, relative)
        threat = dangerous(head)
        if threat:
            self.report.note("file_dangerous", owner_table, owner_old, relative)
            return (*base, info.st_size, digest.hexdigest(), None, "rejected",
                    f"Исполняемый файл или скрипт: {threat[1]}", None, created)
        sniffed = sniff(head)
        allowed = {EXTENSION_TYPES[ext] for ext in KINDS[kind].extensions}
        allowed |= {CONTAINER_OF[t] for t in allowed if t in CONTAINER_OF}
        if sniffed not in allowed:
            self.report.note("file_type_unexpected", owner_table, owner_old, f"{relative}: {sniffed or 'неизвестно'}")
        if storage_path != relative:
            self.report.note("file_renamed", owner_table, owner_old, f"{relative} → {storage_path}")
        if not self.dry_run:
            adopt_file(source, storage_path)
        return (*base, info.st_size, digest.hexdigest(), sniffed, "ready", None, storage_path, created)

    def _apply_files(self, staged: list[tuple]) -> None:
        if not staged:
            return
        counts = self.report.table("files")
        self._copy("stage_files", self.FILE_COLUMNS, staged)
        cur = self.dst
        cur.execute("UPDATE stage_files SET new_id = nextval(pg_get_serial_sequence('files', 'id')) WHERE is_new")
        updated = cur.execute(
            "UPDATE files f SET kind = s.kind, "
            "request_id = CASE WHEN s.owner_table = 'requests' THEN m.new_id END, "
            "transaction_id = CASE WHEN s.owner_table = 'transactions' THEN m.new_id END, "
            "original_name = s.original_name, size_bytes = s.size_bytes, sha256 = s.sha256, "
            "sniffed_type = s.sniffed_type, status = s.status, reject_reason = s.reject_reason, "
            "storage_path = s.storage_path, validated_at = CASE WHEN s.status = 'ready' THEN now() END "
            "FROM stage_files s LEFT JOIN legacy_map m "
            "ON m.old_table = s.owner_table AND m.old_id = s.owner_old_id "
            "WHERE NOT s.is_new AND f.id = s.new_id").rowcount
        inserted = cur.execute(
            "INSERT INTO files (id, kind, request_id, transaction_id, original_name, size_bytes, sha256, sniffed_type, "
            "status, reject_reason, storage_path, created_at, validated_at) "
            "SELECT s.new_id, s.kind, CASE WHEN s.owner_table = 'requests' THEN m.new_id END, "
            "CASE WHEN s.owner_table = 'transactions' THEN m.new_id END, s.original_name, s.size_bytes, s.sha256, "
            "s.sniffed_type, s.status, s.reject_reason, s.storage_path, s.created_at, "
            "CASE WHEN s.status = 'ready' THEN now() END FROM stage_files s "
            "LEFT JOIN legacy_map m ON m.old_table = s.owner_table AND m.old_id = s.owner_old_id "
            "WHERE s.is_new").rowcount
        cur.execute(
            "INSERT INTO legacy_map (old_table, old_id, new_id, fingerprint) SELECT 'media', key, new_id, fp "
            "FROM stage_files ON CONFLICT (old_table, old_id) DO UPDATE SET new_id = excluded.new_id, "
            "fingerprint = excluded.fingerprint, refused = NULL, imported_at = now()")
        counts.imported += inserted
        counts.updated += updated

    # ---- afterwards -----------------------------------------------------------------------------------

    def _finish(self) -> None:
        """Rows deleted in the old system since the last run, and Готово requests without their income.
        (The id sequences were moved past the old ids before each table was written.)"""
        self._gone("transactions")
        self._gone("requests")
        for table in ("masters", "employees", "administrators", "advertising_campaigns"):
            self._gone(table)
        missing = self.dst.execute("""
            SELECT m.old_id FROM legacy_map m JOIN requests r ON r.id = m.new_id
            WHERE m.old_table = 'requests' AND r.status = 'Готово'
              AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.request_id = r.id)
            ORDER BY m.old_id""").fetchall()
        for (old_id,) in missing:
            self.report.note("income_missing", "requests", old_id)
        if self.dst.execute("SELECT NOT EXISTS (SELECT 1 FROM report_rollups)").fetchone()[0]:
            for statement, params in rollups.rebuild_sql(settings.BUSINESS_TZ):
                self.dst.execute(statement, params)
        if self.bulk and not self.dry_run:
            # Fresh statistics for what was just loaded (autovacuum gets there later, if it runs at
            # all): the verification that follows and the next (delta) run plan their joins on them.
            for table in self.ANALYZED:
                self.dst.execute(f"ANALYZE {table}")  # nosec B608 - fixed names
        self._commit()

    ANALYZED = ("requests", "transactions", "request_events", "files", "legacy_map")

    def _gone(self, table: str) -> None:
        """Old rows imported before and deleted in the old system since: requests and cash rows are
        deleted here too (a request's income stays, as the old system kept it); users are made
        inactive; campaigns are only reported."""
        if table in ("requests", "transactions"):  # their ids were staged with their fingerprints
            gone = self.dst.execute(
                "SELECT old_id, new_id FROM legacy_map m WHERE m.old_table = %s AND NOT EXISTS "  # nosec B608
                f"(SELECT 1 FROM stage_fingerprints_{table} s WHERE s.old_id = m.old_id)", (table,)).fetchall()
        else:
            self.dst.execute("TRUNCATE stage_ids")
            with self.dst.cursor() as cur, cur.copy("COPY stage_ids (old_id) FROM STDIN") as copy:
                for batch in batches(self.src, f"ids_{table}", f"SELECT id FROM {table}", 50000):  # nosec B608
                    for (old_id,) in batch:
                        copy.write_row((old_id,))
            gone = self.dst.execute(
                "SELECT old_id, new_id FROM legacy_map m WHERE m.old_table = %s "
                "AND NOT EXISTS (SELECT 1 FROM stage_ids s WHERE s.old_id = m.old_id)", (table,)).fetchall()
        if not gone:
            return
        new_ids = [new for _old, new in gone if new is not None]
        for old_id, _new in gone:
            self.report.note("old_row_gone", table, old_id)
        if table == "requests" and new_ids:
            self.dst.execute("UPDATE transactions SET request_id = NULL WHERE request_id = ANY(%s)", (new_ids,))
            self.dst.execute(
                "INSERT INTO request_events (request_id, action, source) SELECT id, 'deleted', 'import' FROM requests "
                "WHERE id = ANY(%s)", (new_ids,))
            self.dst.execute("DELETE FROM requests WHERE id = ANY(%s)", (new_ids,))
        elif table == "transactions" and new_ids:
            self.dst.execute("DELETE FROM transactions WHERE id = ANY(%s)", (new_ids,))
        elif table in rules.USER_TABLES and new_ids:
            self.dst.execute("UPDATE users SET status = 'inactive', session_epoch = session_epoch + 1 "
                             "WHERE id = ANY(%s) AND status <> 'inactive'", (new_ids,))
        if table != "advertising_campaigns":
            self.dst.execute("DELETE FROM legacy_map WHERE old_table = %s AND old_id = ANY(%s)",
                             (table, [old for old, _new in gone]))
