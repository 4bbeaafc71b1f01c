"""Executing a read: run a ``ReadPlan`` and hand back the body, or a bounded-memory stream.

Small results (the common case) take one statement that returns the finished JSON array.
When a read turns out larger than ``stream_threshold_rows``, it is re-run inside a
read-only snapshot: a count for ``Content-Range``, then a server-side cursor whose rows are
sent in chunks, so a million-row export keeps memory flat.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec

from headwater.config import Settings
from headwater.db import csv_out
from headwater.db.database import Database, Snapshot
from headwater.db.sql import ReadSQL, bind, compile_read
from headwater.errors import LimitExceeded
from headwater.model.plan import ReadPlan
from headwater.model.result import ReadResult, RowStream
from headwater.resilience.retry import read_retryable, retrying


def _estimated(db: Database, plan: ReadPlan) -> bool:
    """``count=planned|estimated`` on PostgreSQL: the total comes from ``_estimate``, not
    from the read's own exact count (SQLite always counts exactly)."""
    return plan.count and db.dialect == "postgresql" and plan.count_kind in (
        "planned", "estimated")


def _sql(db: Database, plan: ReadPlan, settings: Settings) -> ReadSQL:
    # settings.db_schema: the exposed schema read (another profile's settings name theirs)
    schema = settings.db_schema if db.schema else None
    return compile_read(db.dialect, schema, plan.root, plan.limit_param, plan.offset_param,
                        plan.count and not _estimated(db, plan), settings.max_response_bytes)


async def _estimate(db: Database, plan: ReadPlan, sql: ReadSQL, params: list[object],
                    settings: Settings) -> int:
    """PostgREST's totals: ``planned`` is the planner's row estimate for the filtered table;
    ``estimated`` counts exactly up to ``max_rows`` and past it takes the larger of the two
    (with no ``max_rows`` it is exact)."""
    args = [params[i] for i in sql.count_params]
    prefix = "SELECT count(*) FROM "
    if not sql.count.startswith(prefix):  # a count of another shape: counted exactly
        (exact,) = await retrying(settings, lambda: db.fetchrow(sql.count, args),
                                  read_retryable)
        return int(exact)
    source = sql.count.removeprefix(prefix)

    async def planned() -> int:
        (doc,) = await db.fetchrow("EXPLAIN (FORMAT JSON) SELECT 1 FROM " + source, args)
        tree = msgspec.json.decode(doc) if isinstance(doc, (str, bytes)) else doc
        return int(tree[0]["Plan"]["Plan Rows"])

    if plan.count_kind == "planned":
        return await retrying(settings, planned, read_retryable)
    if not settings.max_rows:
        (total,) = await retrying(settings, lambda: db.fetchrow(sql.count, args),
                                  read_retryable)
        return int(total)
    limited = (f"SELECT count(*) FROM (SELECT 1 FROM {source} "
               f"LIMIT {int(settings.max_rows) + 1}) AS _c")
    (total,) = await retrying(settings, lambda: db.fetchrow(limited, args), read_retryable)
    if total <= settings.max_rows:
        return int(total)
    return max(int(total), await retrying(settings, planned, read_retryable))


def too_large(settings: Settings, size: int) -> LimitExceeded:
    limit = settings.max_response_bytes
    return LimitExceeded(
        f"The response would be larger than the limit of {limit} bytes",
        details=f"{size} bytes or more, embedded resources included",
        hint="Ask for fewer rows (limit=, filters, or a limit on an embedded resource such "
             "as orders.limit=10) or fewer columns; the limit is the max_response_bytes "
             "setting (HEADWATER_MAX_RESPONSE_BYTES)")


async def execute_read(db: Database, plan: ReadPlan, settings: Settings) -> ReadResult:
    result = await _read(db, plan, settings)
    if _estimated(db, plan):
        sql = _sql(db, plan, settings)
        result.total = await _estimate(db, plan, sql, bind(db.dialect, plan.params), settings)
    return result


async def _read(db: Database, plan: ReadPlan, settings: Settings) -> ReadResult:
    sql = _sql(db, plan, settings)
    params = bind(db.dialect, plan.params)
    csv = plan.media == "csv"
    requested = plan.params[plan.limit_param]
    cap = settings.stream_threshold_rows
    capped = requested is None or (isinstance(requested, int) and requested > cap)
    if capped:
        params[plan.limit_param] = cap + 1
    statement = sql.csv_bounded if csv else sql.bounded
    total, rows, body, size = await retrying(
        settings, lambda: db.fetchrow(statement, params), read_retryable)
    if not capped or rows <= cap:
        if body is None:
            raise too_large(settings, size)
        if csv:
            body = _csv_body(db, plan, rows, body)
        return ReadResult(rows=rows, total=total, first=plan.first, body=body.encode())
    params[plan.limit_param] = bind(db.dialect, (requested,))[0]
    return await _stream(db, plan, sql, params, settings)


def _csv_body(db: Database, plan: ReadPlan, rows: int, body: str) -> str:
    if db.dialect == "postgresql":
        return csv_out.header(plan.root.output_keys(), rows) + body
    decoded = msgspec.json.decode(body, type=list[dict[str, object]])
    # As PostgREST: the header is the first row's keys
    head = csv_out.header(list(decoded[0]) if decoded else [], len(decoded))
    return head + "\n".join(csv_out.render_rows(decoded, plan.root))


async def _stream(db: Database, plan: ReadPlan, sql: ReadSQL, params: list[object],
                  settings: Settings) -> ReadResult:
    stack = contextlib.AsyncExitStack()
    try:
        snap = await stack.enter_async_context(db.snapshot())
        (total,) = await snap.fetchrow(sql.count, [params[i] for i in sql.count_params])
    except BaseException:
        await stack.aclose()
        raise
    limit = plan.params[plan.limit_param]
    rows = max(0, total - plan.first)
    if isinstance(limit, int):
        rows = min(rows, limit)
    if plan.media == "csv":
        chunks = _csv_chunks(db, snap, sql.csv_rows, params, plan, settings)
    else:
        chunks = _json_chunks(snap, sql.rows, params, settings)
    return ReadResult(rows=rows, total=total if plan.count else None, first=plan.first,
                      stream=RowStream(chunks, stack))  # an estimate replaces it later


async def _json_chunks(snap: Snapshot, sql: str, params: list[object],
                       settings: Settings) -> AsyncIterator[bytes]:
    buf: list[str] = ["["]
    size = 1
    sent = 0
    limit = settings.max_response_bytes or None
    first = True
    async for batch in snap.chunks(sql, params, 500):
        for (row,) in batch:
            if not first:
                buf.append(",")
            first = False
            buf.append(row)
            size += len(row) + 1
            if limit is not None and sent + size > limit:
                # The status line is sent: the response can only be cut off (the front logs
                # it and closes the connection without the final chunk, so no client takes
                # it for a complete answer).
                raise too_large(settings, sent + size)
            if size >= settings.stream_chunk_bytes:
                yield "".join(buf).encode()
                buf, sent, size = [], sent + size, 0
    buf.append("]")
    yield "".join(buf).encode()


async def _csv_chunks(db: Database, snap: Snapshot, sql: str, params: list[object],
                      plan: ReadPlan, settings: Settings) -> AsyncIterator[bytes]:
    buf: list[str] = []
    size = 0
    sent = 0
    limit = settings.max_response_bytes or None
    decode = msgspec.json.Decoder(dict[str, object]).decode
    pg = db.dialect == "postgresql"
    keys = plan.root.output_keys()  # a spread embed's keys in its place
    async for batch in snap.chunks(sql, params, 500):
        if pg:
            texts = [row for (row,) in batch]
        else:
            texts = list(csv_out.render_rows((decode(row) for (row,) in batch), plan.root))
        for text in texts:
            # PostgREST's rows are joined by newlines, with none after the last
            buf.append(csv_out.header(keys, 1) if not sent and not buf else "\n")
            buf.append(text)
            size += len(text) + 1
            if limit is not None and sent + size > limit:
                raise too_large(settings, sent + size)  # cut off, as in _json_chunks
            if size >= settings.stream_chunk_bytes:
                yield "".join(buf).encode()
                buf, sent, size = [], sent + size, 0
    if not sent and not buf:
        buf.append(csv_out.header(keys, 0))
    yield "".join(buf).encode()
