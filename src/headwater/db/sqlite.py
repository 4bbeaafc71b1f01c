"""Pooled execution on SQLite (sqlite3 on a thread pool, writes on one writer thread).

SQLite is driven through the standard ``sqlite3`` module on a small thread pool rather than
through aiosqlite, because one statement then costs one thread hop (execute and fetch happen
in the same job) instead of one per cursor call; the bench measures the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from headwater.config import Settings
from headwater.db.database import Database, QueryHook, Row, Snapshot, Statement, Tag, Transaction
from headwater.db.location import sqlite_open_target
from headwater.db.sqlite_connection import HOT_STATEMENTS, SqliteConn, add_functions, sqlite_error
from headwater.db.sqlite_writer import WriterThread, WriteSide
from headwater.errors import DatabaseUnavailable, HeadwaterError
from headwater.resilience.bulkhead import acquire_within

#: How long a read may run on the event loop's thread before it is handed to the pool.
INLINE_BUDGET_S = 0.002
_SLOW_MEMORY = 1024


class _InlineReader:
    """Short reads on the event loop's own thread, with no thread hop.

    A point or page read takes SQLite a few microseconds; handing it to a worker thread and
    back costs several times that in Python. So a read is first tried here, on a read-only
    connection with no busy wait and a progress handler that interrupts it after
    ``INLINE_BUDGET_S``: a read that is interrupted, meets a lock or fails in any way is run
    again on the pool as usual (reads are safe to repeat), and a statement that ran out of
    time goes straight to the pool from then on. The loop is never blocked for longer than the
    budget. Each statement in autocommit mode reads the latest committed data, as on the pool.
    """

    def __init__(self, path: str, read_only: bool) -> None:
        target, uri = sqlite_open_target(path, read_only)
        self.conn = sqlite3.connect(target, timeout=0, check_same_thread=False,
                                    isolation_level=None, cached_statements=HOT_STATEMENTS, uri=uri)
        self.conn.execute("PRAGMA query_only=ON")
        self.conn.execute("PRAGMA case_sensitive_like=ON")
        self.conn.set_progress_handler(self._over, 1000)
        add_functions(self.conn)
        self.deadline = 0.0
        #: Hashes of the statements that ran out of time (not their text, which can be large
        #: and would outlive ``compile_read``'s cache; a collision only sends a read to the pool).
        self.slow: dict[int, None] = {}

    def _over(self) -> int:
        return 1 if time.monotonic() > self.deadline else 0

    def fetchrow(self, sql: str, params: Sequence[object]) -> Row | None:
        """The first row, or None when the pool must answer instead."""
        if hash(sql) in self.slow:
            return None
        self.deadline = time.monotonic() + INLINE_BUDGET_S
        try:
            row = self.conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            if "interrupted" in str(exc):
                if len(self.slow) >= _SLOW_MEMORY:
                    self.slow.pop(next(iter(self.slow)))
                self.slow[hash(sql)] = None
            return None
        return None if row is None else tuple(row)


class _SqliteSnapshot(Snapshot):
    def __init__(self, db: SqliteDatabase, conn: SqliteConn) -> None:
        self.db = db
        self.conn = conn

    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        self.db._on_query()
        row: Row = await self.db._run(self.conn.fetchrow, sql, params)
        return row

    async def chunks(self, sql: str, params: Sequence[object],
                     size: int) -> AsyncIterator[list[Row]]:
        self.db._on_query()
        cur = await self.db._run(self.conn.conn.execute, sql, params)
        try:
            while True:
                self.conn.arm()
                batch: list[Row] = await self.db._run(cur.fetchmany, size)
                if not batch:
                    return
                yield batch
        finally:
            self.conn.deadline = 0.0
            await self.db._run(cur.close)


class _SqliteTransaction(Transaction):
    """BEGIN travels with the first statement and COMMIT with ``last``'s: every thread hop
    costs about as much as a small statement, so a write takes one or two instead of four."""

    dialect = "sqlite"

    def __init__(self, db: SqliteDatabase, conn: SqliteConn) -> None:
        self.db = db
        self.conn = conn
        #: Sent with the next statement; None once sent (the transaction is open).
        self.begin: str | None = "BEGIN IMMEDIATE"
        self.final: Statement | None = None

    def _next(self) -> str | None:
        assert self.final is None, "a statement after the transaction's last one"
        self.db._on_query()
        begin, self.begin = self.begin, None
        return begin

    async def fetch(self, sql: str, params: Sequence[object],
                    tag: Tag | None = None) -> list[Row]:
        rows: list[Row] = await self.db._write(self.conn.fetchall, sql, params, self._next(),
                                               tag)
        return rows

    async def execute(self, sql: str, params: Sequence[object], tag: Tag | None = None) -> int:
        count: int = await self.db._write(self.conn.changes, sql, params, self._next(), tag)
        return count

    async def last(self, sql: str, params: Sequence[object]) -> None:
        self.final = (sql, params)

    async def end(self, verb: str) -> None:
        """COMMIT or ROLLBACK, with the deferred last statement when there is one."""
        final, self.final = self.final, None
        if final is not None:
            self.db._on_query()
            begin, self.begin = self.begin, None
            await self.db._write(self.conn.finish, final[0], final[1], begin, verb)
        elif self.begin is None:  # something was sent: end it
            await self.db._write(self.conn.end, verb)


class _SqliteSingle(Transaction):
    """A one-statement write (autocommit) on the writer thread."""

    dialect = "sqlite"

    def __init__(self, db: SqliteDatabase, conn: SqliteConn) -> None:
        self.db = db
        self.conn = conn
        self.sent = False

    async def fetch(self, sql: str, params: Sequence[object],
                    tag: Tag | None = None) -> list[Row]:
        rows: list[Row] = await self._one(True, self.conn.fetchall, sql, params, None, tag)
        return rows

    async def fetch_with(self, sql: str, params: Sequence[object],
                         then: Callable[[list[Row]], Statement | None]) -> list[Row]:
        # its own BEGIN and COMMIT: not part of a group
        rows: list[Row] = await self._one(False, self.conn.pair, sql, params, then)
        return rows

    async def execute(self, sql: str, params: Sequence[object], tag: Tag | None = None) -> int:
        count: int = await self._one(True, self.conn.changes, sql, params, None, tag)
        return count

    async def _one(self, group: bool, fn: Callable[..., Any], *args: Any) -> Any:
        assert not self.sent, "a single-statement transaction ran a second statement"
        self.sent = True
        self.db._on_query()
        db = self.db
        # Unlocked, the job is queued at once, with no await in between: a transaction that
        # begins later queues its BEGIN behind it, so the job never runs inside one. Locked, a
        # multi-statement transaction is open: go after it.
        locked = db._side.lock.locked()
        if locked:
            await db._take_write_lock()
        try:
            return await db._write(fn, *args, group=group)
        finally:
            if locked:
                db._side.lock.release()


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, settings: Settings, on_query: QueryHook | None = None, *,
                 writer_of: SqliteDatabase | None = None) -> None:
        """``writer_of``: write through that database's writer thread and connection (one
        process, one SQLite writer: two would make each other sleep in the busy handler);
        it opens and closes them."""
        super().__init__(settings, on_query)
        self.schema = None
        url = settings.database_url
        self.path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else \
            url.removeprefix("sqlite:")
        self._size = max(1, settings.pool_max_size)
        self._idle: queue.SimpleQueue[SqliteConn] = queue.SimpleQueue()
        self._slots = asyncio.Semaphore(self._size)
        self._inline: _InlineReader | None = None
        self._owns_writer = writer_of is None
        self._side: WriteSide = WriteSide() if writer_of is None else writer_of._side
        self._conns: list[SqliteConn] = []
        self._executor: ThreadPoolExecutor | None = None
        self._in_use = 0

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="headwater-sqlite")
        try:
            for _ in range(self._size):
                conn = await self._run(SqliteConn, self.path, self.settings)
                self._conns.append(conn)
                self._idle.put(conn)
            self._inline = _InlineReader(self.path, self.settings.read_only)
            side = self._side
            if self._owns_writer:
                side.thread = WriterThread()
                writer = side.thread.conn = await self._write(
                    functools.partial(SqliteConn, cached_statements=HOT_STATEMENTS),
                    self.path, self.settings)
                if side.session is not None:
                    await self._write(writer.install, side.session)
        except (sqlite3.Error, HeadwaterError) as exc:
            raise DatabaseUnavailable("Could not open the SQLite database",
                                      details=str(exc)) from exc

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.conn.close()
            self._inline = None
        side = self._side
        if self._owns_writer and side.thread is not None:
            side.thread.close()
            if side.thread.conn is not None:
                side.thread.conn.conn.close()
            side.thread = None
        for c in self._conns:
            c.conn.close()
        self._conns.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            raise DatabaseUnavailable("Database is not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[SqliteConn]:
        try:
            await acquire_within(self._slots, self.settings.pool_timeout)
        except TimeoutError as exc:
            raise DatabaseUnavailable("Timed out waiting for a database connection",
                                      sent=False, retryable=False) from exc
        conn = self._idle.get_nowait()
        self._in_use += 1
        try:
            yield conn
        finally:
            self._in_use -= 1
            self._idle.put(conn)
            self._slots.release()

    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        self._on_query()
        inline = self._inline
        if inline is not None:
            found = inline.fetchrow(sql, params)
            if found is not None:
                return found
        async with self._acquire() as conn:
            row: Row = await self._run(conn.fetchrow, sql, params)
            return row

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        async with self._acquire() as conn:
            await self._run(conn.conn.execute, "BEGIN")
            try:
                yield _SqliteSnapshot(self, conn)
            finally:
                with contextlib.suppress(HeadwaterError):
                    await self._run(conn.conn.execute, "ROLLBACK")

    @contextlib.asynccontextmanager
    async def transaction(self, *, rollback: bool = False,
                          single: bool = False) -> AsyncIterator[Transaction]:
        # Every write of this process runs on one writer thread and connection. One-statement
        # writes are queued there as they come and run back to back with no lock held while
        # the event loop is elsewhere; a multi-statement transaction holds the write lock from
        # BEGIN to COMMIT so that nothing else runs inside it.
        conn = self._side.conn
        if conn is None:
            raise DatabaseUnavailable("Database is not started")
        if single and not rollback:
            yield _SqliteSingle(self, conn)
            return
        await self._take_write_lock()
        # IMMEDIATE takes the write lock up front, so a busy database (another process)
        # fails fast at BEGIN (after busy_timeout) instead of midway through the request.
        tx = _SqliteTransaction(self, conn)
        try:
            try:
                yield tx
            except BaseException:
                await self._rollback(conn)
                raise
            try:
                await tx.end("ROLLBACK" if rollback else "COMMIT")
            except BaseException:
                await self._rollback(conn)
                raise
        finally:
            self._side.lock.release()

    async def install_session(self, ddl: Sequence[str]) -> None:
        conn = self._side.conn
        if conn is None:
            raise DatabaseUnavailable("Database is not started")
        await self._take_write_lock()
        try:
            await self._write(conn.install, tuple(ddl))
            self._side.session = tuple(ddl)
        finally:
            self._side.lock.release()

    async def _take_write_lock(self) -> None:
        # SQLite admits one writer at a time and makes the others sleep and poll (busy_timeout
        # sleeps in steps of milliseconds): queueing this process's writers here instead hands
        # the lock over at once. Other processes still meet busy_timeout.
        try:
            await acquire_within(self._side.lock, self.settings.pool_timeout)
        except TimeoutError as exc:
            raise DatabaseUnavailable("Timed out waiting for the database's write lock",
                                      sent=False, retryable=False) from exc

    async def _rollback(self, conn: SqliteConn) -> None:
        def rollback() -> None:
            if conn.conn.in_transaction:
                conn.end("ROLLBACK")

        with contextlib.suppress(HeadwaterError):
            await self._write(rollback)

    async def _write(self, fn: Callable[..., Any], *args: Any, group: bool = False) -> Any:
        """``fn`` on the writer thread (where the writer connection is used, and only there);
        ``group``: ``fn`` runs one statement in autocommit mode, which may be committed
        together with others (``WriterThread``)."""
        writer = self._side.thread
        if writer is None:
            raise DatabaseUnavailable("Database is not started")
        try:
            return await writer.submit(fn, args, group)
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    async def ping(self) -> None:
        await self.fetchrow("SELECT 1", ())

    def pool_stats(self) -> tuple[int, int]:
        return len(self._conns), self._in_use
