"""Executing a read: run a ``ReadPlan`` and hand back the body, or a bounded-memory stream.

Small results (the common case) take one statement that returns the finished JSON array.
When a read turns out larger than ``stream_threshold_rows``, it is re-run inside a
read-only snapshot: a count for ``Content-Range``, then a server-side cursor whose rows are
sent in chunks, so a million-row export keeps memory flat.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import AsyncIterator

import msgspec

from headwater.config import Settings
from headwater.db.database import Database, Snapshot
from headwater.db.sql import ReadSQL, bind, compile_read
from headwater.errors import LimitExceeded
from headwater.model.plan import ReadPlan
from headwater.model.result import ReadResult, RowStream
from headwater.resilience.retry import read_retryable, retrying


def _sql(db: Database, plan: ReadPlan, settings: Settings) -> ReadSQL:
    return compile_read(db.dialect, db.schema, plan.root, plan.limit_param, plan.offset_param,
                        plan.count, settings.max_response_bytes)


def too_large(settings: Settings, size: int) -> LimitExceeded:
    limit = settings.max_response_bytes
    return LimitExceeded(
        f"The response would be larger than the limit of {limit} bytes",
        details=f"{size} bytes or more, embedded resources included",
        hint="Ask for fewer rows (limit=, filters, or a limit on an embedded resource such "
             "as orders.limit=10) or fewer columns; the limit is the max_response_bytes "
             "setting (HEADWATER_MAX_RESPONSE_BYTES)")


async def execute_read(db: Database, plan: ReadPlan, settings: Settings) -> ReadResult:
    sql = _sql(db, plan, settings)
    params = bind(db.dialect, plan.params)
    if plan.media != "csv":
        requested = plan.params[plan.limit_param]
        cap = settings.stream_threshold_rows
        capped = requested is None or (isinstance(requested, int) and requested > cap)
        if capped:
            params[plan.limit_param] = cap + 1
        total, rows, body, size = await retrying(
            settings, lambda: db.fetchrow(sql.bounded, params), read_retryable)
        if not capped or rows <= cap:
            if body is None:
                raise too_large(settings, size)
            return ReadResult(rows=rows, total=total, first=plan.first, body=body.encode())
        params[plan.limit_param] = bind(db.dialect, (requested,))[0]
    return await _stream(db, plan, sql, params, settings)


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
        keys = plan.root.output_keys()
        chunks = _csv_chunks(snap, sql.rows, params, keys, settings)
    else:
        chunks = _json_chunks(snap, sql.rows, params, settings)
    return ReadResult(rows=rows, total=total if plan.count else None, first=plan.first,
                      stream=RowStream(chunks, stack))


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


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        return msgspec.json.encode(value).decode()
    return value


async def _csv_chunks(snap: Snapshot, sql: str, params: list[object], keys: list[str],
                      settings: Settings) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(keys)
    decode = msgspec.json.Decoder(dict[str, object]).decode
    sent = 0
    limit = settings.max_response_bytes or None
    async for batch in snap.chunks(sql, params, 500):
        for (row,) in batch:
            obj = decode(row)
            writer.writerow([_csv_cell(v) for v in obj.values()])
            if limit is not None and sent + out.tell() > limit:
                raise too_large(settings, sent + out.tell())  # cut off, as in _json_chunks
            if out.tell() >= settings.stream_chunk_bytes:
                sent += out.tell()
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
    yield out.getvalue().encode()

