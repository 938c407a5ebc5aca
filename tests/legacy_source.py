"""An old backend's database and media folder, built in PostgreSQL exactly as the old backend's
schema was (its tables, constraints, defaults and foreign-key rules), filled
with a realistic mix: the three user tables with bcrypt hashes (colliding logins among them),
English, Russian, odd and unknown statuses, phones as people type them, Готово requests with and
without their income (and one with two), positive and negative cash, file paths of every shape the
old code wrote, present and missing, and the media folder with the bytes.

Used by the tests (small) and by bench/legacy_import.py (100,000 requests)."""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import bcrypt
import psycopg

# Every table as the old app's create_all made it, with the FK rules of its migration 41b7968bb5eb
# and requests.updated_at of migration 001.
OLD_SCHEMA = """
CREATE TABLE cities (id SERIAL PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE);
CREATE INDEX ix_cities_id ON cities (id);
CREATE TABLE request_types (id SERIAL PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);
CREATE INDEX ix_request_types_id ON request_types (id);
CREATE TABLE directions (id SERIAL PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);
CREATE INDEX ix_directions_id ON directions (id);
CREATE TABLE roles (id SERIAL PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);
CREATE INDEX ix_roles_id ON roles (id);
CREATE TABLE transaction_types (id SERIAL PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE);
CREATE INDEX ix_transaction_types_id ON transaction_types (id);

CREATE TABLE advertising_campaigns (
    id SERIAL PRIMARY KEY,
    city_id INTEGER NOT NULL REFERENCES cities (id) ON DELETE RESTRICT,
    name VARCHAR(200) NOT NULL,
    phone_number VARCHAR(20) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);
CREATE INDEX ix_advertising_campaigns_id ON advertising_campaigns (id);

CREATE TABLE masters (
    id SERIAL PRIMARY KEY,
    city_id INTEGER NOT NULL REFERENCES cities (id) ON DELETE RESTRICT,
    full_name VARCHAR(200) NOT NULL,
    phone_number VARCHAR(20) NOT NULL,
    birth_date DATE,
    passport VARCHAR(20),
    status VARCHAR(50) DEFAULT 'active',
    chat_id VARCHAR(100),
    login VARCHAR(100) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    notes TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);
CREATE INDEX ix_masters_id ON masters (id);

CREATE TABLE employees (
    id SERIAL PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
    status VARCHAR(50) DEFAULT 'active',
    city_id INTEGER REFERENCES cities (id) ON DELETE SET NULL,
    login VARCHAR(100) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    notes TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);
CREATE INDEX ix_employees_id ON employees (id);

CREATE TABLE administrators (
    id SERIAL PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    role_id INTEGER NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
    status VARCHAR(50) DEFAULT 'active',
    login VARCHAR(100) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    notes TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);
CREATE INDEX ix_administrators_id ON administrators (id);

CREATE TABLE requests (
    id SERIAL PRIMARY KEY,
    advertising_campaign_id INTEGER REFERENCES advertising_campaigns (id) ON DELETE SET NULL,
    city_id INTEGER NOT NULL REFERENCES cities (id) ON DELETE RESTRICT,
    request_type_id INTEGER NOT NULL REFERENCES request_types (id) ON DELETE RESTRICT,
    client_phone VARCHAR(20) NOT NULL,
    client_name VARCHAR(200),
    address TEXT,
    meeting_date TIMESTAMP WITH TIME ZONE,
    direction_id INTEGER REFERENCES directions (id) ON DELETE SET NULL,
    problem TEXT,
    status VARCHAR(50) DEFAULT 'Новая',
    master_id INTEGER REFERENCES masters (id) ON DELETE SET NULL,
    master_notes TEXT,
    result NUMERIC(10, 2),
    expenses NUMERIC(10, 2) DEFAULT 0,
    net_amount NUMERIC(10, 2) DEFAULT 0,
    master_handover NUMERIC(10, 2) DEFAULT 0,
    ats_number VARCHAR(50),
    call_center_name VARCHAR(200),
    call_center_notes TEXT,
    bso_file_path VARCHAR(500),
    expense_file_path VARCHAR(500),
    recording_file_path VARCHAR(500),
    avito_chat_id VARCHAR(100),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX ix_requests_id ON requests (id);

CREATE TABLE transactions (
    id SERIAL PRIMARY KEY,
    city_id INTEGER NOT NULL REFERENCES cities (id) ON DELETE RESTRICT,
    transaction_type_id INTEGER NOT NULL REFERENCES transaction_types (id) ON DELETE RESTRICT,
    amount NUMERIC(10, 2) NOT NULL,
    notes TEXT,
    file_path VARCHAR(500),
    specified_date DATE NOT NULL,
    payment_reason TEXT,
    expense_receipt_path TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now()
);
CREATE INDEX ix_transactions_id ON transactions (id);

CREATE TABLE files (
    id SERIAL PRIMARY KEY,
    request_id INTEGER REFERENCES requests (id) ON DELETE CASCADE,
    transaction_id INTEGER REFERENCES transactions (id) ON DELETE CASCADE,
    file_type VARCHAR(50) NOT NULL,
    file_path VARCHAR(500) NOT NULL,
    uploaded_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    CONSTRAINT check_reference CHECK (
        (request_id IS NOT NULL AND transaction_id IS NULL) OR (request_id IS NULL AND transaction_id IS NOT NULL))
);
CREATE INDEX ix_files_id ON files (id);
"""

CITIES = ("Москва", "Саратов", "Самара", "Казань")
REQUEST_TYPES = ("Впервые", "Повтор", "Ремонт кондиционера")
DIRECTIONS = ("Бытовая техника", "Кондиционеры", "Компьютеры")
ROLES = ("admin", "director", "manager", "avitolog", "callcentr", "callcenter")
TRANSACTION_TYPES = ("Приход", "Расход", "Инкассация")  # the last one: expenses by its sign only
STATUSES = ("Новая", "Ожидает", "Ожидает принятия", "Принял", "В пути", "В работе", "Готово", "Отказ", "Модерн",
            "НеЗаказ", "Перезвонить", "ТНО")
# Old spellings: the English keys of the old code and its migration 002, case and space variants.
ODD_STATUSES = {"done": "Готово", "completed": "Готово", "new": "Новая", "in_progress": "В работе",
                "cancelled": "Отказ", "pending": "Ожидает", "готово": "Готово", " В работе ": "В работе",
                "ожидает  принятия": "Ожидает принятия", "НЕЗАКАЗ": "НеЗаказ", "Done": "Готово"}
UNKNOWN_STATUSES = ("archived", "Брак")
PHONE_SHAPES = ("7{}", "+7 ({}) {}-{}-{}", "8 {} {} {} {}", "{}", "8({}){}{}{}")

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x21"
EXE = b"MZ\x90\x00\x03\x00\x00\x00"
MSK = timezone(timedelta(hours=3))


def password_of(table: str, old_id: int) -> str:
    """The old password of a generated user (their hash in the old tables is bcrypt of it)."""
    return f"old-{table}-{old_id}-пароль"


@dataclass
class Generated:
    """What a test needs to know about the generated database besides the rows themselves."""

    users: list[tuple[str, int, str]] = field(default_factory=list)  # (table, id, login)
    done_without_income: list[int] = field(default_factory=list)
    done_with_two_incomes: list[int] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    present_files: list[str] = field(default_factory=list)
    dangerous_files: list[str] = field(default_factory=list)
    max_request_id: int = 0


def create_database(admin_url: str, name: str) -> str:
    """An empty database `name` on the server of `admin_url` (created, or emptied when it exists:
    quicker than dropping it, which waits for a checkpoint); its URL."""
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    if exists:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    return url


def create_schema(conn: psycopg.Connection) -> None:
    conn.execute(OLD_SCHEMA)


def _hash(password: str, rng: random.Random) -> str:
    # Cost 4 keeps generation fast (the old backend used passlib's default, 12: any cost verifies).
    prefix = b"2a" if rng.random() < 0.2 else b"2b"
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4, prefix=prefix)).decode()


def _phone(rng: random.Random) -> str:
    digits = f"9{rng.randrange(10**8, 10**9)}"
    shape = rng.choice(PHONE_SHAPES)
    if shape.count("{}") == 1:
        return shape.format(digits)
    return shape.format(digits[:3], digits[3:6], digits[6:8], digits[8:])


def _media_file(media: Path | None, relative: str, content: bytes, rng: random.Random, size: int) -> None:
    if media is None:
        return
    path = media / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content + rng.randbytes(max(0, size - len(content))))


def fill(conn: psycopg.Connection, *, requests: int = 300, transactions: int = 120, masters: int = 12,
         employees: int = 8, administrators: int = 3, files: int = 40, media: Path | None = None,
         seed: int = 18, file_size: int = 4096) -> Generated:
    """Fill an empty old schema. `files` is the number of file paths on requests and transactions;
    about one in eight is missing from `media` (when given)."""
    rng = random.Random(seed)
    out = Generated()
    with conn.cursor() as cur:
        for table, names in (("cities", CITIES), ("request_types", REQUEST_TYPES), ("directions", DIRECTIONS),
                             ("roles", ROLES), ("transaction_types", TRANSACTION_TYPES)):
            cur.executemany(f"INSERT INTO {table} (name) VALUES (%s)", [(n,) for n in names])  # nosec B608
        role_id = {name: i + 1 for i, name in enumerate(ROLES)}
        # Campaigns: tracking lines typed in different ways; the last one repeats the first line.
        campaigns = []
        for i in range(1, 9):
            line = f"7999111{i:04d}"
            typed = line if i % 3 else f"+7 ({line[1:4]}) {line[4:7]}-{line[7:9]}-{line[9:]}"
            campaigns.append((i, (i - 1) % len(CITIES) + 1, f"РК {i}", typed))
        campaigns.append((9, 1, "РК 1 (дубль)", "8 999 111 00 01"))
        cur.executemany("INSERT INTO advertising_campaigns (id, city_id, name, phone_number, created_at) "
                        "VALUES (%s, %s, %s, %s, now() - interval '400 days')", campaigns)

        # Users: logins collide across tables (and by case), as the old tables allowed.
        shared = ["ivan", "olga", "admin"]
        for i in range(1, masters + 1):
            login = {1: "Ivan", 2: "olga"}.get(i, f"master{i}")
            status = {3: "inactive", 4: "busy", 5: None, 6: "Active"}.get(i, "active")
            cur.execute(
                "INSERT INTO masters (id, city_id, full_name, phone_number, birth_date, passport, status, chat_id, "
                "login, password_hash, notes, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (i, (i - 1) % len(CITIES) + 1, f"Мастер {i}", _phone(rng), date(1980 + i % 20, 1 + i % 12, 1 + i % 27),
                 f"63 0{i} 12345{i}"[:20], status, str(100000 + i), login, _hash(password_of("masters", i), rng),
                 None, datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(days=i)))
            out.users.append(("masters", i, login))
        roles = ("director", "manager", "callcentr", "avitolog", "callcenter", "admin")
        for i in range(1, employees + 1):
            login = {1: "ivan", 2: "OLGA"}.get(i, f"employee{i}")
            cur.execute(
                "INSERT INTO employees (id, name, role_id, status, city_id, login, password_hash, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (i, f"Сотрудник {i}", role_id[roles[(i - 1) % len(roles)]], "active",
                 None if i % 3 == 0 else (i - 1) % len(CITIES) + 1, login, _hash(password_of("employees", i), rng),
                 datetime(2025, 2, 1, tzinfo=timezone.utc) + timedelta(days=i)))
            out.users.append(("employees", i, login))
        for i in range(1, administrators + 1):
            login = {1: "admin", 2: "ivan"}.get(i, f"administrator{i}")
            cur.execute(
                "INSERT INTO administrators (id, name, role_id, status, login, password_hash) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (i, f"Администратор {i}", role_id["admin"], "active", login,
                 _hash(password_of("administrators", i), rng)))
            out.users.append(("administrators", i, login))
        del shared

        # Requests and their automatic incomes.
        start = datetime(2025, 1, 1, 9, tzinfo=MSK)
        span = 500 * 24 * 3600
        request_rows, transaction_rows, file_rows = [], [], []
        file_budget = files
        t_id = done_count = 0
        # Готово often enough that its automatic incomes are about a third of the cash book.
        done_every = max(4, round(requests / max(1, transactions * 0.4)))
        ordinary = [status for status in STATUSES if status != "Готово"]
        # Ids grow with time, as the old database's sequence gave them.
        created_times = sorted(start + timedelta(seconds=rng.randrange(span)) for _ in range(requests))
        for rid in range(1, requests + 1):
            roll = rng.random()
            if roll < 0.03:
                status = rng.choice(list(ODD_STATUSES))
            elif roll < 0.035 or rid in (7, 8):
                status = rng.choice(UNKNOWN_STATUSES)
            elif rid % done_every == 0:
                status = "Готово"
            else:
                status = rng.choice(ordinary)
            created = created_times[rid - 1]
            updated = None if rng.random() < 0.3 else created + timedelta(hours=rng.randrange(1, 200))
            result = expenses = net = handover = None
            if ODD_STATUSES.get(status, status) in ("Готово", "В работе", "Модерн"):
                result = Decimal(rng.randrange(500, 30000))
                expenses = Decimal(rng.randrange(0, int(result) // 2))
                net = result - expenses
                share = rng.random()
                handover = (net / 2).quantize(Decimal("0.01")) if share < 0.85 else (
                    (net * Decimal("0.6")).quantize(Decimal("0.01")) if share < 0.95 else Decimal("0.00"))
                if rng.random() < 0.05:
                    net = net + 100  # stale net the old front end sent
            else:
                expenses, net, handover = Decimal("0"), Decimal("0"), Decimal("0")
            bso = expense_path = recording = None
            if file_budget > 0 and rng.random() < files / max(requests, 1) * 0.8:
                kind = rng.choice(("bso", "rashod", "zapis"))
                if kind == "zapis":
                    name = f"{created:%Y.%m.%d__%H-%M-%S}__7917{rng.randrange(10**6, 10**7)}__79991110001.mp3"
                    recording = f"media/zayvka/zapis/{name}"
                elif kind == "bso":
                    bso = f"media/zayvka/bso/{uuid.UUID(int=rng.getrandbits(128))}.jpg"
                else:
                    expense_path = f"media\\zayvka\\rashod\\{uuid.UUID(int=rng.getrandbits(128))}.pdf"
                path = recording or bso or expense_path
                file_budget -= 1
                relative = path.replace("\\", "/").removeprefix("media/")
                if rng.random() < 0.125:
                    out.missing_files.append(relative)
                else:
                    content = MP3 if recording else (JPEG if bso else PDF)
                    _media_file(media, relative, content, rng, file_size)
                    out.present_files.append(relative)
            request_rows.append((
                rid, rng.choice(range(1, 10)) if rng.random() < 0.8 else None, rng.randrange(1, len(CITIES) + 1),
                rng.randrange(1, len(REQUEST_TYPES) + 1), _phone(rng) if rid % 50 else "нет номера",
                f"Клиент {rid}", f"ул. Ленина, {rid}", created + timedelta(days=1) if rng.random() < 0.5 else None,
                rng.randrange(1, len(DIRECTIONS) + 1) if rng.random() < 0.9 else None, "Не включается",
                status, rng.randrange(1, masters + 1) if rng.random() < 0.7 else None, None, result, expenses, net,
                handover, "79991110001" if rng.random() < 0.5 else None, "Оператор 1" if rid % 2 else None,
                f"call_id:{rng.getrandbits(40)}" if rng.random() < 0.3 else None, bso, expense_path, recording,
                None, created, updated,
            ))
            if ODD_STATUSES.get(status, status) == "Готово" and handover and handover > 0:
                done_count += 1
                if done_count % 40 == 0:
                    out.done_without_income.append(rid)
                    continue
                copies = 2 if done_count % 60 == 5 else 1
                if copies == 2:
                    out.done_with_two_incomes.append(rid)
                for _ in range(copies):
                    t_id += 1
                    transaction_rows.append((t_id, request_rows[-1][2], 1, handover, f"Приход по заявке {rid}", None,
                                             (updated or created).date(), None, None, updated or created))
            elif ODD_STATUSES.get(status, status) == "Готово":
                out.done_without_income.append(rid)
        out.max_request_id = requests

        # The rest of the cash book: incomes positive, expenses (and Инкассация) negative.
        while t_id < transactions:
            t_id += 1
            kind = rng.random()
            type_id = 1 if kind < 0.3 else (2 if kind < 0.85 else 3)
            amount = Decimal(rng.randrange(100, 50000)) / (1 if rng.random() < 0.7 else 3)
            amount = amount.quantize(Decimal("0.01"))
            amount = amount if type_id == 1 else -amount
            day = (start + timedelta(seconds=rng.randrange(span))).date()
            receipt = file_path = None
            if type_id != 1 and file_budget > 0 and rng.random() < 0.3:
                name = f"{uuid.UUID(int=rng.getrandbits(128))}.png"
                receipt = f"/app/media/gorod_rashod/{name}" if rng.random() < 0.5 else None
                file_path = None if receipt else f"media/gorod/rashod/{name}"
                relative = "gorod_rashod/" + name if receipt else "gorod/rashod/" + name
                file_budget -= 1
                if rng.random() < 0.125:
                    out.missing_files.append(relative)
                else:
                    _media_file(media, relative, PNG, rng, file_size)
                    out.present_files.append(relative)
            transaction_rows.append((t_id, rng.randrange(1, len(CITIES) + 1), type_id, amount,
                                     rng.choice((None, "Расходники", "Аренда")), file_path, day,
                                     "Оплата" if type_id != 1 else "Сдача мастера", receipt,
                                     datetime.combine(day, datetime.min.time(), MSK)))
        with cur.copy("COPY requests (id, advertising_campaign_id, city_id, request_type_id, client_phone, "
                      "client_name, address, meeting_date, direction_id, problem, status, master_id, master_notes, "
                      "result, expenses, net_amount, master_handover, ats_number, call_center_name, call_center_notes, "
                      "bso_file_path, expense_file_path, recording_file_path, avito_chat_id, created_at, updated_at) "
                      "FROM STDIN") as copy:
            for row in request_rows:
                copy.write_row(row)
        with cur.copy("COPY transactions (id, city_id, transaction_type_id, amount, notes, file_path, specified_date, "
                      "payment_reason, expense_receipt_path, created_at) FROM STDIN") as copy:
            for row in transaction_rows:
                copy.write_row(row)
        # The `files` table: the rows the old transaction upload meant to write (and one executable).
        for i, t in enumerate(transaction_rows[-3:]):
            name = f"{uuid.UUID(int=rng.getrandbits(128))}.pdf"
            relative = f"transactions/{name}"
            content = EXE if i == 0 else PDF
            _media_file(media, relative, content, rng, file_size)
            (out.dangerous_files if i == 0 else out.present_files).append(relative)
            file_rows.append((None, t[0], "expense_receipt", f"media/{relative}"))
        file_rows.append((1, None, "bso", "media/zayvka/bso/"))  # a path naming a folder, not a file
        cur.executemany("INSERT INTO files (request_id, transaction_id, file_type, file_path) VALUES (%s, %s, %s, %s)",
                        file_rows)
        for table in ("cities", "request_types", "directions", "roles", "transaction_types", "advertising_campaigns",
                      "masters", "employees", "administrators", "requests", "transactions", "files"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # nosec B608
                        f"(SELECT coalesce(max(id), 1) FROM {table}))")
    conn.commit()
    return out


def change(conn: psycopg.Connection, *, fraction: float = 0.01, seed: int = 19) -> dict[str, int]:
    """What a day of work on the old system does: some requests change (status, money, master), some
    are added, a cash row changes and one is deleted. Returns how many of each."""
    rng = random.Random(seed)
    with conn.cursor() as cur:
        total = cur.execute("SELECT count(*) FROM requests").fetchone()[0]
        changed = max(1, int(total * fraction))
        ids = [row[0] for row in cur.execute("SELECT id FROM requests ORDER BY id")]
        picked = rng.sample(ids, changed)
        cur.execute("UPDATE requests SET status = 'В работе', result = coalesce(result, 0) + 10, "
                    "net_amount = coalesce(result, 0) + 10 - coalesce(expenses, 0), updated_at = now() "
                    "WHERE id = ANY(%s) AND status <> 'Готово'", (picked,))
        updated = cur.rowcount
        added = max(1, changed // 2)
        cur.execute(
            "INSERT INTO requests (city_id, request_type_id, client_phone, status, created_at) "
            "SELECT 1 + g %% 4, 1, '8 917 000 ' || lpad(g::text, 4, '0'), 'Новая', now() "
            "FROM generate_series(1, %s) g", (added,))
        t_changed = cur.execute(
            "UPDATE transactions SET amount = amount - 1 WHERE id IN (SELECT id FROM transactions "
            "WHERE amount < -10 ORDER BY id LIMIT %s)", (max(1, int(changed / 5)),)).rowcount
        deleted = cur.execute("DELETE FROM transactions WHERE id = (SELECT max(id) FROM transactions "
                              "WHERE notes IS NULL AND amount < 0 AND id NOT IN "
                              "(SELECT transaction_id FROM files WHERE transaction_id IS NOT NULL))").rowcount
    conn.commit()
    return {"requests_updated": updated, "requests_added": added, "transactions_updated": t_changed,
            "transactions_deleted": deleted}
