"""Bulk data for the benchmarks: a database with N requests and their cash book, loaded set-based.

    python -m bench.seed_bulk --database-url postgresql://postgres@127.0.0.1:5432/ --requests 100000

The URL names a server; without a database name the database is `leadline_bench_100k` for 100,000
requests, `leadline_bench_1m` for 1,000,000 and `leadline_bench_<N>` otherwise. The database is
created when missing and migrated to head (Alembic). A database that already holds the same number
of requests and `bench_admin` is left as it is; any other content of the data tables is truncated
and loaded anew. `--reset` drops and recreates the database first.

What is loaded, all with INSERT ... SELECT over generate_series in one transaction:
- cities (5–20), 3–6 advertising campaigns per city with unique normalised tracking phones,
  directions, ~50 masters spread over the cities and the administrator `bench_admin`;
- N requests over the last 365 days in all 12 statuses (open statuses in the last two weeks),
  masters on dispatched requests, money on Готово ones (net = result − expenses,
  handover = net × MASTER_SHARE), normalised 11-digit client phones, some repeat clients;
- one income per Готово request (request_id set, amount = handover, booked on the completion day)
  and manual incomes and expenses up to ≈ 0.6 × N transactions;
- ≈ 1.35 × N calls: the answered inbound call of each request with a campaign (on its line, a few
  minutes before the request), 0.2 × N missed inbound calls (60 % called back by an answered outbound
  call within the hour), 0.03 × N inbound calls on a line without a campaign;
- campaign spend over the last 13 months: a month per row, every third campaign per 14 days, the
  amounts in proportion to N.

The secondary indexes of requests and transactions are dropped during the load and rebuilt from
their own definitions afterwards; foreign-key triggers are skipped while loading (the generated
keys are consistent by construction) when the role may do so. The tables are vacuumed and analysed
at the end.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from contextlib import contextmanager
from decimal import Decimal
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

BENCH_ADMIN_LOGIN = "bench_admin"
BENCH_ADMIN_PASSWORD = "bench-admin-password"
MASTER_LOGIN_PREFIX = "bench_master_"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/"
BIG_TABLES = ("requests", "transactions")
# Data tables emptied before a load; tables that reference them are emptied with them (CASCADE).
DATA_TABLES = ("requests", "transactions", "request_events", "calls", "campaign_spend", "advertising_campaigns",
               "users", "cities", "directions")

# (name, area code, weight): the biggest cities get the most requests.
CITIES = (
    ("Москва", "495", 30), ("Санкт-Петербург", "812", 18), ("Новосибирск", "383", 7), ("Екатеринбург", "343", 7),
    ("Казань", "843", 6), ("Нижний Новгород", "831", 5), ("Челябинск", "351", 4), ("Самара", "846", 4),
    ("Омск", "381", 3), ("Ростов-на-Дону", "863", 4), ("Уфа", "347", 3), ("Красноярск", "391", 3),
    ("Пермь", "342", 3), ("Воронеж", "473", 3), ("Волгоград", "844", 2), ("Краснодар", "861", 4),
    ("Саратов", "845", 2), ("Тюмень", "345", 2), ("Тольятти", "848", 1), ("Ижевск", "341", 1),
)
CAMPAIGNS = ("Яндекс Директ", "Авито", "2ГИС", "ВКонтакте", "Сайт", "Листовки")
DIRECTIONS = ("Бытовая техника", "Компьютеры", "Кондиционеры", "Сантехника", "Электрика")
# Relative frequency of each status; open statuses are recent (created in the last 14 days).
STATUS_WEIGHTS = (
    ("Новая", 5), ("Ожидает", 4), ("Ожидает принятия", 3), ("Принял", 3), ("В пути", 2), ("В работе", 4),
    ("Готово", 35), ("Отказ", 12), ("Модерн", 4), ("НеЗаказ", 8), ("Перезвонить", 8), ("ТНО", 12),
)
OPEN_STATUSES = ("Новая", "Ожидает", "Ожидает принятия", "Принял", "В пути", "В работе", "Перезвонить")
DISPATCHED_STATUSES = ("Ожидает принятия", "Принял", "В пути", "В работе", "Готово", "Модерн", "НеЗаказ")
WITH_MEETING_STATUSES = DISPATCHED_STATUSES + ("Ожидает",)
FIRST_NAMES = ("Александр", "Алексей", "Андрей", "Дмитрий", "Евгений", "Иван", "Игорь", "Максим", "Михаил",
               "Николай", "Олег", "Павел", "Роман", "Сергей", "Анна", "Елена", "Ирина", "Мария", "Наталья",
               "Ольга", "Светлана", "Татьяна", "Юлия", "Екатерина")
SURNAMES = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков",
            "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
            "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев")
PATRONYMICS = ("Александрович", "Андреевич", "Викторович", "Дмитриевич", "Иванович", "Игоревич", "Михайлович",
               "Николаевич", "Олегович", "Сергеевич")
STREETS = ("ул. Ленина", "ул. Мира", "ул. Гагарина", "ул. Советская", "пр-т Победы", "ул. Садовая",
           "ул. Молодёжная", "ул. Школьная", "ул. Лесная", "ул. Набережная", "ул. Кирова", "ул. Пушкина",
           "ул. Чехова", "ул. Маяковского", "ул. Заводская", "Комсомольский пр-т", "ул. Островского",
           "ул. Строителей", "ул. Луговая", "ул. Октябрьская")
PROBLEMS = ("Стиральная машина не сливает воду", "Холодильник не морозит", "Посудомоечная машина не греет воду",
            "Ноутбук не включается", "Компьютер шумит и перегревается", "Кондиционер не охлаждает",
            "Течёт вода из внутреннего блока", "Течёт смеситель на кухне", "Засор в ванной",
            "Выбивает автомат при включении чайника", "Духовой шкаф не включается", "Нужно настроить роутер")
WORK_DONE = ("Заменён сливной насос, проверена работа", "Заменены подшипники барабана", "Заменён ТЭН",
             "Чистка от пыли, замена термопасты", "Чистка и дозаправка фреоном", "Заменён смеситель",
             "Прочищен засор", "Заменён автомат, проверена проводка", "Замена модуля управления")
OPERATORS = ("Орлова Анна", "Зайцева Мария", "Никитина Ольга", "Смирнова Елена", "Петрова Юлия")
CALL_NOTES = ("Позвонить за час до приезда", "Код домофона 45, этаж 3", "Клиент будет после 14:00",
              "Просит перезвонить вечером", "Дорого, отказался")
# (payment reason, low, high in roubles); expenses are negative amounts in the cash book.
EXPENSES = (("Аренда офиса", 10000, 30000), ("Реклама", 3000, 20000), ("Запчасти", 800, 12000),
            ("Топливо", 500, 3000), ("Связь", 1000, 4000), ("Канцтовары", 300, 2000), ("Инструмент", 1500, 12000),
            ("Зарплата", 10000, 25000))
MANUAL_INCOMES = (("Внесение наличных", 5000, 30000), ("Возврат от поставщика", 1000, 8000),
                  ("Безналичная оплата", 8000, 30000))
TRANSACTIONS_PER_REQUEST = 0.6
# Calls besides the answered inbound call of every request with a campaign: missed inbound calls (a share
# of them called back by an outbound call), and inbound calls on a line without a campaign.
MISSED_CALLS_PER_REQUEST = 0.2
CALLED_BACK_SHARE = 0.6
UNTRACKED_CALLS_PER_REQUEST = 0.03
UNTRACKED_LINE = "78005550000"
EXPENSE_SHARE = 0.8  # of the transactions that are not incomes of requests


# ---- plumbing --------------------------------------------------------------------------------------

def default_database_name(requests: int) -> str:
    if requests == 100_000:
        return "leadline_bench_100k"
    if requests == 1_000_000:
        return "leadline_bench_1m"
    return f"leadline_bench_{requests}"


def split_url(url: str, requests: int) -> tuple[str, str, str]:
    """(maintenance URL, database URL, database name) from a server or database URL."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or default_database_name(requests)
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    return maintenance, urlunsplit(parts._replace(path="/" + name)), name


@contextmanager
def step(label: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    print(f"  {label} ...", end="", flush=True)
    yield
    elapsed = time.perf_counter() - started
    timings[label] = round(elapsed, 2)
    print(f" {elapsed:.1f} s", flush=True)


def literal_array(values) -> sql.Composable:
    return sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(sql.Literal(v) for v in values))


def ensure_database(maintenance_url: str, name: str, reset: bool) -> None:
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        if reset:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def already_seeded(conn: psycopg.Connection, requests: int) -> bool:
    count = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    admin = conn.execute("SELECT 1 FROM users WHERE login = %s", (BENCH_ADMIN_LOGIN,)).fetchone()
    calls = conn.execute("SELECT EXISTS (SELECT 1 FROM calls)").fetchone()[0]  # seeded before calls were: reload
    conn.rollback()
    return count == requests and admin is not None and calls


def ids_by_name(conn: psycopg.Connection, table: str) -> dict[str, int]:
    rows = conn.execute(sql.SQL("SELECT name, id FROM {}").format(sql.Identifier(table))).fetchall()
    return dict(rows)


def phone_display(normalized: str) -> str:
    d = normalized
    return f"+7 ({d[1:4]}) {d[4:7]}-{d[7:9]}-{d[9:11]}"


# ---- the load --------------------------------------------------------------------------------------

def status_case(column: str) -> sql.Composable:
    """CASE mapping a uniform [0, 1) value to a status by STATUS_WEIGHTS."""
    total = sum(weight for _, weight in STATUS_WEIGHTS)
    branches, bound = [], 0
    for status, weight in STATUS_WEIGHTS[:-1]:
        bound += weight
        branches.append(sql.SQL("WHEN {} < {} THEN {}").format(
            sql.Identifier(column), sql.Literal(bound / total), sql.Literal(status)))
    return sql.SQL("CASE {} ELSE {} END").format(sql.SQL(" ").join(branches), sql.Literal(STATUS_WEIGHTS[-1][0]))


def drop_secondary_indexes(conn: psycopg.Connection) -> list[str]:
    """Drop the non-constraint indexes of the big tables; return their definitions to rebuild them."""
    rows = conn.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%s::regclass[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        (list(BIG_TABLES),),
    ).fetchall()
    for name, _ in rows:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [definition for _, definition in rows]


def skip_fk_triggers(conn: psycopg.Connection) -> bool:
    try:
        with conn.transaction():
            conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def load_reference(conn: psycopg.Connection, rng: random.Random, cities: int, masters: int,
                   password_hash: str) -> dict:
    """Cities, directions, campaigns and users; returns the arrays the big inserts index into."""
    chosen = CITIES[:cities]
    city_ids = [conn.execute("INSERT INTO cities (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0]
                for name, _, _ in chosen]
    for name in DIRECTIONS:
        conn.execute("INSERT INTO directions (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))
    direction_ids = sorted(ids_by_name(conn, "directions").values())
    roles = ids_by_name(conn, "roles")

    campaign_ids, campaign_phones, campaign_offsets, campaign_counts = [], [], [], []
    for index, ((_, area, _), city_id) in enumerate(zip(chosen, city_ids)):
        count = 3 + index % 4
        campaign_offsets.append(len(campaign_ids))
        campaign_counts.append(count)
        for number in range(count):
            normalized = f"7{area}{200 + index:03d}{number:02d}{rng.randrange(100):02d}"
            campaign_ids.append(conn.execute(
                "INSERT INTO advertising_campaigns (city_id, name, phone_number, phone, is_active)"
                " VALUES (%s, %s, %s, %s, true) RETURNING id",
                (city_id, CAMPAIGNS[number], phone_display(normalized), normalized),
            ).fetchone()[0])
            campaign_phones.append(normalized)

    admin_id = conn.execute(
        "INSERT INTO users (login, password_hash, role_id, status, full_name, phone_number, phone)"
        " VALUES (%s, %s, %s, 'active', 'Администратор Бенчмарка', '+7 (900) 000-00-01', '79000000001')"
        " RETURNING id",
        (BENCH_ADMIN_LOGIN, password_hash, roles["admin"]),
    ).fetchone()[0]
    by_city: list[list[int]] = [[] for _ in chosen]
    for number in range(masters):
        index = number % len(chosen)
        normalized = f"79{rng.randrange(10 ** 9):09d}"
        name = f"{rng.choice(SURNAMES)} {rng.choice(FIRST_NAMES[:14])} {rng.choice(PATRONYMICS)}"
        master_id = conn.execute(
            "INSERT INTO users (login, password_hash, role_id, status, city_id, full_name, phone_number, phone)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (f"{MASTER_LOGIN_PREFIX}{number + 1:03d}", password_hash, roles["master"],
             "busy" if number % 7 == 3 else "active", city_ids[index], name, phone_display(normalized), normalized),
        ).fetchone()[0]
        by_city[index].append(master_id)
    master_ids, master_offsets, master_counts = [], [], []
    for ids in by_city:
        master_offsets.append(len(master_ids))
        master_counts.append(len(ids))
        master_ids.extend(ids)

    return {
        "city_ids": city_ids,
        "city_bounds": cumulative([weight for _, _, weight in chosen]),
        "direction_ids": direction_ids,
        "campaign_ids": campaign_ids,
        "campaign_phones": campaign_phones,
        "campaign_offsets": campaign_offsets,
        "campaign_counts": campaign_counts,
        "master_ids": master_ids,
        "master_offsets": master_offsets,
        "master_counts": master_counts,
        "admin_id": admin_id,
        "request_types": ids_by_name(conn, "request_types"),
        "transaction_types": ids_by_name(conn, "transaction_types"),
    }


def cumulative(weights: list[int]) -> list[float]:
    total, bounds, running = sum(weights), [], 0
    for weight in weights:
        running += weight
        bounds.append(running / total)
    bounds[-1] = 1.0
    return bounds


def city_index_sql(column: str, bounds: list[float]) -> sql.Composable:
    """0-based city index from a uniform value, by the cities' weights."""
    branches = [sql.SQL("WHEN {} < {} THEN {}").format(sql.Identifier(column), sql.Literal(b), sql.Literal(i))
                for i, b in enumerate(bounds[:-1])]
    if not branches:
        return sql.Literal(0)
    return sql.SQL("CASE {} ELSE {} END").format(sql.SQL(" ").join(branches), sql.Literal(len(bounds) - 1))


REQUESTS_SQL = """
INSERT INTO requests (
    advertising_campaign_id, city_id, request_type_id, client_phone, client_phone_raw, client_name, address,
    meeting_date, direction_id, problem, status, master_id, master_notes, result, expenses, net_amount,
    master_handover, ats_number, call_center_name, call_center_notes, avito_chat_id, completed_at,
    created_by_id, version, created_at, updated_at)
WITH src AS MATERIALIZED (
    SELECT g, random() AS r_city, random() AS r_status, random() AS r_campaign, random() AS r_master,
           random() AS r_money, random() AS r_expense, random() AS r_phone, random() AS r_name,
           random() AS r_direction, random() AS r_time, random() AS r_meeting, random() AS r_repeat
    FROM generate_series(1, {n}) AS g
), shaped AS (
    SELECT src.*, {city_index} AS ci, {status} AS status
    FROM src
), timed AS (
    SELECT shaped.*,
           now() - r_time * CASE WHEN status IN ({open}) THEN interval '14 days' ELSE interval '365 days' END
               AS created,
           CASE WHEN r_repeat < 0.12
                THEN '79' || lpad((floor(r_phone * 20000))::bigint::text, 9, '0')
                ELSE '79' || lpad((floor(r_phone * 1000000000))::bigint::text, 9, '0') END AS phone,
           CASE WHEN r_campaign < 0.92
                THEN ({campaign_offsets})[ci + 1] + 1 + floor(r_campaign / 0.92 * ({campaign_counts})[ci + 1])::int
           END AS campaign_index,
           CASE WHEN status IN ({dispatched}) AND ({master_counts})[ci + 1] > 0
                THEN ({master_offsets})[ci + 1] + 1 + floor(r_master * ({master_counts})[ci + 1])::int
           END AS master_index,
           CASE WHEN status = 'Готово'
                THEN (round((1500 + r_money * r_money * 28500) / 100) * 100)::numeric END AS result_value
    FROM shaped
), dated AS (
    SELECT timed.*,
           CASE WHEN status IN ({with_meeting})
                THEN (date_trunc('day', created AT TIME ZONE {tz}) + (1 + floor(r_meeting * 3)) * interval '1 day'
                      + (9 + floor(r_meeting * 1000)::int % 11) * interval '1 hour') AT TIME ZONE {tz}
           END AS meeting,
           CASE WHEN result_value IS NOT NULL
                THEN (round(result_value::float8 * r_expense * 0.4 / 50) * 50)::numeric END AS expense_value
    FROM timed
), finished AS (
    SELECT dated.*,
           CASE WHEN status = 'Готово'
                THEN least(now(), meeting + (1 + r_expense * 5) * interval '1 hour') END AS completed
    FROM dated
)
SELECT
    ({campaign_ids})[campaign_index],
    ({city_ids})[ci + 1],
    CASE WHEN r_repeat < 0.12 THEN {repeat_type} ELSE {first_type} END,
    phone,
    CASE g % 3 WHEN 0 THEN '+7 (' || substr(phone, 2, 3) || ') ' || substr(phone, 5, 3) || '-'
                           || substr(phone, 8, 2) || '-' || substr(phone, 10, 2)
               WHEN 1 THEN '8' || substr(phone, 2)
               ELSE phone END,
    ({first_names})[1 + floor(r_name * {n_first_names})::int] || CASE WHEN g % 2 = 0 THEN ''
        ELSE ' ' || ({surnames})[1 + (floor(r_name * 1000000)::bigint % {n_surnames})::int] END,
    ({streets})[1 + (g % {n_streets})::int] || ', д. ' || (1 + (g * 7) % 150) || ', кв. ' || (1 + (g * 13) % 300),
    meeting,
    CASE WHEN r_direction < 0.95 THEN ({direction_ids})[1 + floor(r_direction / 0.95 * {n_directions})::int] END,
    ({problems})[1 + (g % {n_problems})::int],
    status,
    ({master_ids})[master_index],
    CASE WHEN status = 'Готово' THEN ({work_done})[1 + (g % {n_work_done})::int] END,
    result_value,
    coalesce(expense_value, 0),
    coalesce(result_value - expense_value, 0),
    coalesce(round((result_value - expense_value) * {share}, 2), 0),
    ({campaign_phones})[campaign_index],
    ({operators})[1 + (g % {n_operators})::int],
    CASE WHEN g % 4 = 0 THEN ({call_notes})[1 + ((g / 4) % {n_call_notes})::int] END,
    CASE WHEN campaign_index IS NOT NULL AND g % 17 = 0 THEN 'u2i-' || substr(md5(g::text), 1, 16) END,
    completed,
    {admin_id},
    1 + (g % 3)::int,
    created,
    greatest(created, coalesce(completed, created))
FROM finished
"""

INCOMES_SQL = """
INSERT INTO transactions (city_id, transaction_type_id, amount, notes, specified_date, payment_reason, request_id,
                          created_by_id, created_at, updated_at)
SELECT city_id, %(income)s, master_handover, 'Приход по заявке ' || id, (completed_at AT TIME ZONE %(tz)s)::date,
       'Сдача денег мастером', id, master_id, completed_at, completed_at
FROM requests
WHERE status = 'Готово'
"""

CASH_SQL = """
INSERT INTO transactions (city_id, transaction_type_id, amount, notes, specified_date, payment_reason,
                          created_by_id, created_at, updated_at)
WITH src AS MATERIALIZED (
    SELECT g, random() AS r_city, random() AS r_kind, random() AS r_amount, random() AS r_time
    FROM generate_series(1, {n}) AS g
), shaped AS (
    SELECT src.*, {city_index} AS ci, r_kind < {expense_share} AS is_expense,
           now() - r_time * interval '365 days' AS created
    FROM src
)
SELECT
    ({city_ids})[ci + 1],
    CASE WHEN is_expense THEN {expense_type} ELSE {income_type} END,
    CASE WHEN is_expense
         THEN -round(({expense_low})[1 + (g % {n_expenses})::int]
                     + r_amount * (({expense_high})[1 + (g % {n_expenses})::int]
                                   - ({expense_low})[1 + (g % {n_expenses})::int]))
         ELSE round(({income_low})[1 + (g % {n_incomes})::int]
                    + r_amount * (({income_high})[1 + (g % {n_incomes})::int]
                                  - ({income_low})[1 + (g % {n_incomes})::int])) END,
    CASE WHEN is_expense THEN 'Расход: ' || ({expense_reason})[1 + (g % {n_expenses})::int]
         ELSE 'Приход: ' || ({income_reason})[1 + (g % {n_incomes})::int] END,
    (created AT TIME ZONE {tz})::date,
    CASE WHEN is_expense THEN ({expense_reason})[1 + (g % {n_expenses})::int]
         ELSE ({income_reason})[1 + (g % {n_incomes})::int] END,
    {admin_id},
    created,
    created
FROM shaped
"""


def load_requests(conn: psycopg.Connection, n: int, ref: dict, share: Decimal, tz: str) -> None:
    arrays = {name: literal_array(ref[name]) for name in (
        "city_ids", "direction_ids", "campaign_ids", "campaign_phones", "campaign_offsets", "campaign_counts",
        "master_ids", "master_offsets", "master_counts")}
    text_arrays = {"first_names": FIRST_NAMES, "surnames": SURNAMES, "streets": STREETS, "problems": PROBLEMS,
                   "work_done": WORK_DONE, "operators": OPERATORS, "call_notes": CALL_NOTES}
    query = sql.SQL(REQUESTS_SQL).format(
        n=sql.Literal(n),
        city_index=city_index_sql("r_city", ref["city_bounds"]),
        status=status_case("r_status"),
        open=sql.SQL(", ").join(sql.Literal(s) for s in OPEN_STATUSES),
        dispatched=sql.SQL(", ").join(sql.Literal(s) for s in DISPATCHED_STATUSES),
        with_meeting=sql.SQL(", ").join(sql.Literal(s) for s in WITH_MEETING_STATUSES),
        repeat_type=sql.Literal(ref["request_types"]["Повтор"]),
        first_type=sql.Literal(ref["request_types"]["Впервые"]),
        share=sql.Literal(share),
        admin_id=sql.Literal(ref["admin_id"]),
        tz=sql.Literal(tz),
        n_directions=sql.Literal(len(ref["direction_ids"])),
        **arrays,
        **{name: literal_array(values) for name, values in text_arrays.items()},
        **{f"n_{name}": sql.Literal(len(values)) for name, values in text_arrays.items()},
    )
    conn.execute(query)


def load_cash(conn: psycopg.Connection, n: int, ref: dict, tz: str) -> None:
    income, expense = ref["transaction_types"]["Приход"], ref["transaction_types"]["Расход"]
    conn.execute(INCOMES_SQL, {"income": income, "tz": tz})
    done = conn.execute("SELECT count(*) FROM transactions").fetchone()[0]
    extra = max(0, round(n * TRANSACTIONS_PER_REQUEST) - done)
    if not extra:
        return
    query = sql.SQL(CASH_SQL).format(
        n=sql.Literal(extra),
        city_index=city_index_sql("r_city", ref["city_bounds"]),
        expense_share=sql.Literal(EXPENSE_SHARE),
        city_ids=literal_array(ref["city_ids"]),
        expense_type=sql.Literal(expense),
        income_type=sql.Literal(income),
        expense_low=literal_array([low for _, low, _ in EXPENSES]),
        expense_high=literal_array([high for _, _, high in EXPENSES]),
        expense_reason=literal_array([reason for reason, _, _ in EXPENSES]),
        n_expenses=sql.Literal(len(EXPENSES)),
        income_low=literal_array([low for _, low, _ in MANUAL_INCOMES]),
        income_high=literal_array([high for _, _, high in MANUAL_INCOMES]),
        income_reason=literal_array([reason for reason, _, _ in MANUAL_INCOMES]),
        n_incomes=sql.Literal(len(MANUAL_INCOMES)),
        tz=sql.Literal(tz),
        admin_id=sql.Literal(ref["admin_id"]),
    )
    conn.execute(query)


CALLS_SQL = """
INSERT INTO calls (entry_id, direction, line_number, campaign_id, client_phone, started_at, answered_at, ended_at,
                   talk_seconds, missed, summary_received, request_id, created_at, updated_at)
SELECT 'bench-r' || r.id, 'in', r.ats_number, r.advertising_campaign_id, r.client_phone,
       r.created_at - interval '4 minutes', r.created_at - interval '3 minutes 50 seconds',
       r.created_at - interval '1 minute', 170, false, true, r.id, r.created_at, r.created_at
FROM requests r
WHERE r.advertising_campaign_id IS NOT NULL
"""

EXTRA_CALLS_SQL = """
INSERT INTO calls (entry_id, direction, line_number, campaign_id, client_phone, started_at, answered_at, ended_at,
                   talk_seconds, missed, summary_received, created_at, updated_at)
WITH src AS MATERIALIZED (
    SELECT g, random() AS r_campaign, random() AS r_phone, random() AS r_time, random() AS r_back
    FROM generate_series(1, {missed} + {untracked}) AS g
), shaped AS (
    SELECT src.*, g <= {missed} AS tracked, now() - r_time * interval '365 days' AS at,
           1 + floor(r_campaign * {n_campaigns})::int AS campaign_index,
           CASE WHEN r_phone < 0.3 THEN '79' || lpad((floor(r_phone / 0.3 * 20000))::bigint::text, 9, '0')
                ELSE '79' || lpad((floor(r_phone * 1000000000))::bigint::text, 9, '0') END AS phone
    FROM src
), made AS (
    SELECT 'bench-m' || g AS entry_id, 'in' AS direction, ({campaign_phones})[campaign_index] AS line,
           ({campaign_ids})[campaign_index] AS campaign_id, phone, at, NULL::timestamptz AS answered,
           at + interval '40 seconds' AS ended, 0 AS talk, true AS missed
    FROM shaped WHERE tracked
    UNION ALL
    SELECT 'bench-u' || g, 'in', {untracked_line}, NULL, phone, at, at + interval '8 seconds',
           at + interval '3 minutes', 170, false
    FROM shaped WHERE NOT tracked
    UNION ALL
    SELECT 'bench-b' || g, 'out', ({campaign_phones})[campaign_index], NULL, phone,
           at + (5 + r_back * 50) * interval '1 minute',
           at + (5 + r_back * 50) * interval '1 minute' + interval '9 seconds',
           at + (5 + r_back * 50) * interval '1 minute' + interval '2 minutes', 110, false
    FROM shaped WHERE tracked AND r_back < {called_back}
)
SELECT entry_id, direction, line, campaign_id, phone, at, answered, ended, talk, missed, true, at, at
FROM made
"""

SPEND_SQL = """
INSERT INTO campaign_spend (campaign_id, date_from, date_to, amount, comment, created_by_id, created_at, updated_at)
SELECT c.id, m::date, (m + interval '1 month' - interval '1 day')::date,
       round((5000 + random() * 55000)::numeric * {scale}, 2), 'Бюджет на месяц', {admin_id}, now(), now()
FROM advertising_campaigns c,
     generate_series(date_trunc('month', now() - interval '12 months'), date_trunc('month', now()),
                     interval '1 month') m
WHERE c.id % 3 <> 0
UNION ALL
SELECT c.id, d::date, (d + interval '13 days')::date, round((2000 + random() * 25000)::numeric * {scale}, 2),
       'Оплата за две недели', {admin_id}, now(), now()
FROM advertising_campaigns c, generate_series(now()::date - 392, now()::date, interval '14 days') d
WHERE c.id % 3 = 0
"""


def load_calls_and_spend(conn: psycopg.Connection, n: int, ref: dict) -> None:
    conn.execute(CALLS_SQL)
    conn.execute(sql.SQL(EXTRA_CALLS_SQL).format(
        missed=sql.Literal(round(n * MISSED_CALLS_PER_REQUEST)),
        untracked=sql.Literal(round(n * UNTRACKED_CALLS_PER_REQUEST)),
        n_campaigns=sql.Literal(len(ref["campaign_ids"])),
        campaign_phones=literal_array(ref["campaign_phones"]),
        campaign_ids=literal_array(ref["campaign_ids"]),
        untracked_line=sql.Literal(UNTRACKED_LINE),
        called_back=sql.Literal(CALLED_BACK_SHARE),
    ))
    load_spend(conn, n, ref["admin_id"])


def load_spend(conn: psycopg.Connection, n: int, admin_id: int) -> None:
    """Budgets in proportion to the volume of requests (per 100,000 requests a year)."""
    conn.execute(sql.SQL(SPEND_SQL).format(admin_id=sql.Literal(admin_id), scale=sql.Literal(Decimal(n) / 100_000)))


def seed(database_url: str, requests: int, cities: int, masters: int, random_seed: int,
         timings: dict[str, float]) -> dict[str, int]:
    from models.people.passwords import hash_password
    from models.reports import rollups
    from settings import settings

    with step("password hash", timings):
        password_hash = hash_password(BENCH_ADMIN_PASSWORD)
    with psycopg.connect(database_url) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SELECT setseed(%s)", (((random_seed % 1000) / 1000.0),))
        with step("truncate", timings):
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in DATA_TABLES)))
        fk_skipped = skip_fk_triggers(conn)
        with step("drop secondary indexes", timings):
            index_definitions = drop_secondary_indexes(conn)
        with step("cities, campaigns, users", timings):
            ref = load_reference(conn, random.Random(random_seed), cities, masters, password_hash)
        with step(f"requests ({requests:,})", timings):
            load_requests(conn, requests, ref, settings.MASTER_SHARE, settings.BUSINESS_TZ)
        with step("transactions", timings):
            load_cash(conn, requests, ref, settings.BUSINESS_TZ)
        with step("calls, campaign spend", timings):
            load_calls_and_spend(conn, requests, ref)
        with step(f"rebuild {len(index_definitions)} indexes", timings):
            for definition in index_definitions:
                conn.execute(definition)
        if fk_skipped:
            conn.execute("SET session_replication_role = origin")
        with step("report rollups", timings):  # the load skipped (or bypassed) the triggers that keep them
            for statement, params in rollups.rebuild_sql(settings.BUSINESS_TZ):
                conn.execute(statement, params)
        with step("commit", timings):
            conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        with step("vacuum analyze", timings):
            conn.execute("VACUUM (ANALYZE) requests")
            conn.execute("VACUUM (ANALYZE) transactions")
            conn.execute("VACUUM (ANALYZE) calls")
            conn.execute("VACUUM (ANALYZE) call_day_stats")
            conn.execute("ANALYZE")
        counts = {table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                  for table in ("cities", "advertising_campaigns", "users", "requests", "transactions", "calls",
                                "campaign_spend", "call_day_stats")}
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_SERVER_URL,
                        help="server URL (default database name by --requests) or a database URL")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--cities", type=int, default=10, help="5 to 20")
    parser.add_argument("--masters", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42, help="random seed: the same data for the same seed")
    parser.add_argument("--reset", action="store_true", help="drop and recreate the database first")
    parser.add_argument("--force", action="store_true", help="reload even when the database looks seeded")
    args = parser.parse_args(argv)
    if not 5 <= args.cities <= len(CITIES):
        parser.error(f"--cities must be between 5 and {len(CITIES)}")
    if args.requests < 1 or args.masters < 1:
        parser.error("--requests and --masters must be positive")

    maintenance_url, database_url, name = split_url(args.database_url, args.requests)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    print(f"database {name}")
    with step("create database" + (" (reset)" if args.reset else ""), timings):
        ensure_database(maintenance_url, name, args.reset)
    with step("migrations", timings):
        from models.core import migrate

        migrate.upgrade(database_url)
    with psycopg.connect(database_url) as conn:
        seeded = already_seeded(conn, args.requests)
    if seeded and not args.force:
        print(f"already seeded with {args.requests:,} requests (use --reset or --force to reload)")
    else:
        counts = seed(database_url, args.requests, args.cities, args.masters, args.seed, timings)
        print("rows: " + ", ".join(f"{table} {count:,}" for table, count in counts.items()))
    print(f"total {time.perf_counter() - started:.1f} s")
    print(f"DATABASE_URL={database_url}")
    print(f"admin login: {BENCH_ADMIN_LOGIN}  password: {BENCH_ADMIN_PASSWORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
