"""Lists: the complete array streamed when no page is asked (the SPA's way), pages otherwise.

Rows are read with a server-side cursor in batches and written out as they come, so memory stays
bounded whatever the table size. Serialisation is a plain function per row and orjson: lists are
the hottest path of the API.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable, Iterator

import orjson
from flask import Response, stream_with_context
from marshmallow import Schema, fields, validate
from redis.exceptions import RedisError
from sqlalchemy import Select, func, select

from models.core.db import Session, prepared_scalars, transaction_block
from models.core.redis import get_redis, key

STREAM_BATCH = 2000
MAX_PAGE_SIZE = 1000
# Pass as `serialize` when the statement selects one column, the row's JSON text built by PostgreSQL
# (api/sqljson.py): the rows are then joined as they come, with nothing parsed or formatted in Python.
JSON_TEXT_ROWS: Any = object()


class PageArgs(Schema):
    page = fields.Integer(validate=validate.Range(min=1, max=1_000_000), metadata={"description": "1-based page"})
    page_size = fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), load_default=None,
                               metadata={"description": f"rows per page (default 100, at most {MAX_PAGE_SIZE})"})


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(payload), status=status, mimetype="application/json", headers=headers)


def _stream(stmt: Select, serialize: Callable[[Any], dict]) -> Iterator[bytes]:
    yield b"["
    first = True
    if serialize is JSON_TEXT_ROWS:
        chunks = _copied_rows(stmt)
    else:
        transaction_block()  # a server-side cursor lives in a transaction block
        result = Session.execute(stmt.execution_options(yield_per=STREAM_BATCH))
        chunks = (b",".join(dumps(serialize(row)) for row in partition) for partition in result.partitions())
    for chunk in chunks:
        if not chunk:
            continue
        yield chunk if first else b"," + chunk
        first = False
    yield b"]"
    Session.commit()  # end the read transaction (COMMIT keeps the connection's prepared statements)


COPY_CHUNK_BYTES = 256 * 1024


def _copied_rows(stmt: Select) -> Iterator[bytes]:
    """The JSON text rows of `stmt`, comma-joined in chunks, read with COPY … TO STDOUT.

    COPY streams: PostgreSQL builds and sends the rows while this process forwards the ones it has,
    so the database and the API work at the same time instead of taking turns batch by batch as a
    cursor's FETCH does. In COPY's text format each row ends with a newline and backslashes are
    doubled; JSON text holds no raw newline, tab or other control character, so undoubling the
    backslashes restores it exactly."""
    compiled = stmt.compile(dialect=Session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    for name, process in compiled._bind_processors.items():  # noqa: SLF001 - what execution would apply
        if name in params:
            params[name] = process(params[name])
    dbapi_connection = Session.connection().connection.dbapi_connection
    with dbapi_connection.cursor() as cursor, cursor.copy(f"COPY ({compiled.string}) TO STDOUT", params) as copy:
        pending: list = []
        size = 0
        for row in copy:
            pending.append(row)
            size += len(row)
            if size >= COPY_CHUNK_BYTES:
                yield _json_rows(pending)
                pending, size = [], 0
        if pending:
            yield _json_rows(pending)


def _json_rows(copied: list) -> bytes:
    rows = b"".join(copied)
    return rows[:-1].replace(b"\\\\", b"\\").replace(b"\n", b",")


COUNT_TTL_SECONDS = 10


_sql_texts: dict[Any, str] = {}


def _statement_text(stmt: Select) -> str:
    """The statement's SQL and bound values as text. The SQL is compiled once per statement shape
    (SQLAlchemy's cache key, which executing the statement then reuses), not on every call."""
    cache_key = stmt._generate_cache_key()  # noqa: SLF001 - the public API compiles every time
    if cache_key is None:  # a statement SQLAlchemy cannot cache
        compiled = stmt.compile()
        return f"{compiled}|{sorted(compiled.params.items(), key=str)}"
    sql = _sql_texts.get(cache_key.key)
    if sql is None:
        if len(_sql_texts) > 1000:
            _sql_texts.clear()
        sql = _sql_texts[cache_key.key] = str(stmt.compile())
    return f"{sql}|{[bind.effective_value for bind in cache_key.bindparams]!r}"


def cached_count(count_stmt: Select) -> int:
    """The total for X-Pagination, kept in Redis for a few seconds: paging through a large filtered
    list must not count its rows again for every page. The total may lag by COUNT_TTL_SECONDS."""
    statement = _statement_text(count_stmt)
    digest = hashlib.sha1(statement.encode(), usedforsecurity=False).hexdigest()  # a cache key, not a signature
    cache_key = key("count", digest)
    try:
        cached = get_redis().get(cache_key)
        if cached is not None:
            return int(cached)
    except RedisError:
        return Session.scalar(count_stmt)
    total = Session.scalar(count_stmt)
    try:
        get_redis().set(cache_key, total, ex=COUNT_TTL_SECONDS)
    except RedisError:
        pass
    return total


def list_response(stmt: Select, serialize: Callable[[Any], dict], args: dict,
                  count_stmt: Select | None = None, page_rows: Callable[[list], list] | None = None) -> Response:
    """Stream every row of `stmt`, or one page of it with an X-Pagination header.

    `count_stmt` counts the rows cheaper than wrapping `stmt` (e.g. without its joins); with
    `page_rows`, `stmt` selects ids and the page's rows are read by them, in their order (the rows
    an OFFSET skips are never joined or formatted)."""
    page, page_size = args.get("page"), args.get("page_size")
    if page is None and page_size is None:
        return Response(stream_with_context(_stream(stmt, serialize)), mimetype="application/json")
    page, page_size = page or 1, page_size or 100
    if count_stmt is None:
        count_stmt = select(func.count()).select_from(stmt.order_by(None).subquery())
    total = cached_count(count_stmt)
    page_select = stmt.limit(page_size).offset((page - 1) * page_size)
    if page_rows is not None:
        ids = prepared_scalars(page_select)
        rows = page_rows(ids) if ids else []
    else:
        rows = Session.execute(page_select).all()
    pages = max(1, math.ceil(total / page_size))
    pagination = {
        "total": total,
        "total_pages": pages,
        "first_page": 1,
        "last_page": pages,
        "page": page,
        "page_size": page_size,
    }
    if page > 1:
        pagination["previous_page"] = page - 1
    if page < pages:
        pagination["next_page"] = page + 1
    headers = {"X-Pagination": json.dumps(pagination)}
    if serialize is JSON_TEXT_ROWS:
        texts = [row[0] for row in rows]
        if texts and isinstance(texts[0], str):
            texts = [text.encode() for text in texts]
        return Response(b"[" + b",".join(texts) + b"]", mimetype="application/json", headers=headers)
    return json_response([serialize(row) for row in rows], headers=headers)
