"""The old backend's database, read-only: one REPEATABLE READ snapshot, read through server-side
cursors in batches (memory bounded whatever the table's size). The importer never writes to it:
the connection's transactions are read-only, so PostgreSQL itself refuses any write."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg

from settings import mask_url


class SourceUnavailable(Exception):
    """The old database cannot be reached or is not the old backend's schema."""


OLD_TABLES = ("cities", "request_types", "directions", "roles", "transaction_types", "advertising_campaigns",
              "masters", "employees", "administrators", "requests", "transactions", "files")


def plain_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


@contextmanager
def open_source(url: str) -> Iterator[psycopg.Connection]:
    """A read-only connection to the old database, inside one snapshot for the whole import."""
    try:
        conn = psycopg.connect(plain_url(url), connect_timeout=10, autocommit=False,
                               options="-c default_transaction_read_only=on -c statement_timeout=0")
    except psycopg.Error as exc:
        raise SourceUnavailable(f"старая база недоступна: {mask_url(str(exc)).strip()}") from None
    try:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        present = {row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
        missing = [name for name in OLD_TABLES if name not in present]
        if missing:
            raise SourceUnavailable("в старой базе нет таблиц: " + ", ".join(missing))
        yield conn
    finally:
        conn.rollback()
        conn.close()


def batches(conn: psycopg.Connection, name: str, sql: str, size: int, params=None) -> Iterator[list[tuple]]:
    """The rows of `sql` in batches of `size`, through a server-side cursor."""
    with conn.cursor(name=f"legacy_{name}") as cursor:
        cursor.itersize = size
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(size)
            if not rows:
                return
            yield rows


def count(conn: psycopg.Connection, table: str) -> int:
    if table not in OLD_TABLES:
        raise ValueError(table)
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # nosec B608 - a fixed table name
