"""Pooled execution on PostgreSQL (asyncpg) or SQLite (sqlite3 on a thread pool).

A ``Database`` runs SQL text with bound parameters and nothing else: it never sees HTTP or
plans. Driver errors are translated into ``headwater.errors`` here, in one place per driver.

SQLite is driven through the standard ``sqlite3`` module on a small thread pool rather than
through aiosqlite, because one statement then costs one thread hop (execute and fetch happen
in the same job) instead of one per cursor call; the bench measures the difference.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from headwater.config import Settings
from headwater.errors import (
    Conflict,
    ConstraintViolation,
    DatabaseError,
    DatabaseUnavailable,
    HeadwaterError,
    InvalidValue,
    RequestError,
    Timeout,
    TransactionConflict,
)
from headwater.resilience.breaker import CircuitBreaker
from headwater.resilience.bulkhead import acquire_within

Row = Sequence[Any]
QueryHook = Callable[[], None]


class Snapshot(ABC):
    """One connection inside a read-only transaction: a consistent view for several reads."""

    @abstractmethod
    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row: ...

    @abstractmethod
    def chunks(self, sql: str, params: Sequence[object], size: int) -> AsyncIterator[list[Row]]:
        ...


#: A statement and its parameters.
Statement = tuple[str, Sequence[object]]

#: SQLite: how the outbox's TEMP triggers record the rows of the statement it goes with —
#: (principal as JSON, transaction id, table, operation); a trigger fires only for the table
#: and operation named, so rows that hooks, cascades or other statements write are not taken
#: for the request's own. PostgreSQL records events inside the statement and ignores it.
Tag = tuple[str, int, str, str]
#: The one-row TEMP table on SQLite's writer connection through which a ``Tag`` reaches the
#: triggers (``SqliteDatabase.install_session``).
TAG_TABLE = 'temp."_headwater_tag"'


class Transaction(ABC):
    """One connection inside a read-write transaction; committed when the block ends cleanly."""

    dialect: Literal["postgresql", "sqlite"]

    @abstractmethod
    async def fetch(self, sql: str, params: Sequence[object],
                    tag: Tag | None = None) -> list[Row]:
        """``tag``: see ``Tag``."""

    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def last(self, sql: str, params: Sequence[object]) -> None:
        """The transaction's final statement, whose rows nobody reads (nothing may follow it):
        where the driver allows, it travels with the COMMIT (SQLite: one thread hop, not two).
        """
        await self.fetch(sql, params)

    async def execute(self, sql: str, params: Sequence[object], tag: Tag | None = None) -> int:
        """A statement with no RETURNING; how many rows it changed. (On SQLite every row a
        statement returns is one more hand-over of the GIL between threads: a statement that
        only needs a count should not return rows.)"""
        return len(await self.fetch(sql, params, tag))

    async def fetch_with(self, sql: str, params: Sequence[object],
                         then: Callable[[list[Row]], Statement | None]) -> list[Row]:
        """``sql``, then the statement ``then`` makes of its rows (if any), as one unit: where
        the driver allows, in one call (SQLite's writer thread). ``then`` must not do I/O."""
        rows = await self.fetch(sql, params)
        follow = then(rows)
        if follow is not None:
            await self.fetch(*follow)
        return rows


class Database(ABC):
    dialect: Literal["postgresql", "sqlite"]
    schema: str | None

    def __init__(self, settings: Settings, on_query: QueryHook | None = None) -> None:
        self.settings = settings
        self._on_query = on_query or (lambda: None)
        #: Set by the app: while open, calls fail at once instead of waiting on a dead server.
        self.breaker: CircuitBreaker | None = None

    def _guard(self) -> None:
        b = self.breaker
        if b is not None and not b.allow():
            raise DatabaseUnavailable("Database connection error: the circuit is open",
                                      sent=False, retryable=False, retry_after=b.retry_after(),
                                      hint="the database failed repeatedly; retry shortly")

    def _record(self, exc: HeadwaterError | None) -> None:
        """Feed the breaker: unavailability counts as failure, anything else as health."""
        b = self.breaker
        if b is None:
            return
        if isinstance(exc, DatabaseUnavailable):
            b.failure()
        else:
            b.success()

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        """Run one statement on a pooled connection and return its first row."""

    @abstractmethod
    def snapshot(self) -> contextlib.AbstractAsyncContextManager[Snapshot]: ...

    @abstractmethod
    def transaction(self, *, rollback: bool = False, single: bool = False,
                    ) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A read-write transaction; ``rollback=True`` undoes it even when it succeeds.

        ``single=True`` promises exactly one statement: it runs on its own (autocommit),
        without BEGIN and COMMIT, since one statement is atomic by itself. A second statement
        is a programming error."""

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    def pool_stats(self) -> tuple[int, int]:
        """(size, in use)."""

    async def install_session(self, ddl: Sequence[str]) -> None:
        """SQLite: replace the TEMP triggers of the connection this process writes with by
        ``ddl`` (and create ``TAG_TABLE``), now and whenever that connection is opened again.
        """
        raise NotImplementedError(f"{self.dialect} has no per-session triggers here")


def open_database(settings: Settings, on_query: QueryHook | None = None) -> Database:
    url = settings.database_url
    if url.startswith("sqlite:"):
        return SqliteDatabase(settings, on_query)
    if url.startswith(("postgresql:", "postgres:")):
        return PostgresDatabase(settings, on_query)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")


# --- PostgreSQL -------------------------------------------------------------------------------

_PG_CONFLICT = frozenset({"23505", "23503", "23P01"})


#: What asyncpg raises: the server's errors, the connection's, and the client's own protocol
#: errors (a connection whose protocol is confused must fail as unavailable, not as a 500).
_PG_ERRORS = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError,
              asyncpg.exceptions.InternalClientError)


def _pg_error(exc: BaseException) -> HeadwaterError:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate and sqlstate[:2] == "54":
        # statement too complex (e.g. max_stack_depth): the request's shape, not a failure
        return RequestError("statement too complex: nest fewer embeds or use fewer filters",
                            code=sqlstate, details=None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate and sqlstate[:2] == "23":
        # PostgreSQL's own message and detail name the constraint and key, never our SQL.
        cls = Conflict if sqlstate in _PG_CONFLICT else ConstraintViolation
        return cls(exc.args[0] if exc.args else "constraint violation", code=sqlstate,
                   details=getattr(exc, "detail", None), hint=getattr(exc, "hint", None))
    if isinstance(exc, asyncpg.PostgresError) and sqlstate in ("22001", "22003", "22007", "22008",
                                                               "22P02", "22023"):
        return ConstraintViolation(exc.args[0] if exc.args else "invalid value", code=sqlstate,
                                   details=getattr(exc, "detail", None))
    if sqlstate in ("40001", "40P01"):
        return TransactionConflict("could not serialize access: the transaction was retried "
                                   "and conflicted again", code=sqlstate)
    if sqlstate and (sqlstate.startswith(("08", "57P")) or sqlstate in ("53300", "55000")):
        # Connection failures, administrator shutdown or restart, too many connections.
        return DatabaseUnavailable("Database connection error. Retrying the connection.",
                                   details=type(exc).__name__)
    if isinstance(exc, asyncpg.QueryCanceledError):
        return Timeout("canceling statement due to statement timeout")
    if isinstance(exc, asyncpg.DataError):
        sqlstate = getattr(exc, "sqlstate", None) or "22P02"
        return InvalidValue(str(exc).split("\n")[0], code=sqlstate)
    if isinstance(exc, (asyncpg.exceptions.InsufficientPrivilegeError,)):
        return RequestError("permission denied", code="42501", status=403)
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                        asyncpg.exceptions.InternalClientError,
                        asyncpg.exceptions.ConnectionDoesNotExistError,
                        asyncpg.exceptions.CannotConnectNowError,
                        asyncpg.exceptions.TooManyConnectionsError,
                        asyncpg.exceptions.AdminShutdownError)):
        return DatabaseUnavailable("Database connection error. Retrying the connection.",
                                   details=type(exc).__name__)
    return DatabaseError("Database error", details=f"{type(exc).__name__}: {exc}"[:300])


class _PgSnapshot(Snapshot):
    def __init__(self, conn: Any, hook: QueryHook) -> None:
        self.conn = conn
        self.hook = hook

    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        self.hook()
        try:
            row = await self.conn.fetchrow(sql, *params)
        except _PG_ERRORS as exc:
            raise _pg_error(exc) from exc
        assert row is not None
        return tuple(row)

    async def chunks(self, sql: str, params: Sequence[object],
                     size: int) -> AsyncIterator[list[Row]]:
        self.hook()
        try:
            cur = self.conn.cursor(sql, *params, prefetch=size)
            batch: list[Row] = []
            async for rec in cur:
                batch.append(tuple(rec))
                if len(batch) >= size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        except _PG_ERRORS as exc:
            raise _pg_error(exc) from exc


class _PgTransaction(Transaction):
    dialect = "postgresql"

    def __init__(self, conn: Any, hook: QueryHook, single: bool = False) -> None:
        self.conn = conn
        self.hook = hook
        self.single = single
        self.sent = 0

    async def fetch(self, sql: str, params: Sequence[object],
                    tag: Tag | None = None) -> list[Row]:
        self.hook()
        if self.single:
            self.sent += 1
            assert self.sent == 1, "a single-statement transaction ran a second statement"
        try:
            return [tuple(r) for r in await self.conn.fetch(sql, *params)]
        except _PG_ERRORS as exc:
            raise _pg_error(exc) from exc


async def _no_reset(conn: Any) -> None:
    return None


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, settings: Settings, on_query: QueryHook | None = None) -> None:
        super().__init__(settings, on_query)
        self.schema = settings.db_schema
        self._pool: asyncpg.Pool[Any] | None = None

    async def start(self) -> None:
        s = self.settings
        try:
            self._pool = await asyncpg.create_pool(
                s.database_url.replace("postgres://", "postgresql://", 1),
                min_size=s.pool_min_size, max_size=s.pool_max_size, timeout=s.connect_timeout,
                command_timeout=s.statement_timeout + 1.0,
                server_settings={"statement_timeout": str(int(s.statement_timeout * 1000)),
                                 "application_name": "headwater"},
                # asyncpg's default reset is one more round trip per checkout; Headwater never
                # leaves session state behind (no SET, LISTEN or advisory locks), and aborted
                # transactions are rolled back by their own context managers.
                reset=_no_reset,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable("Could not connect to the database",
                                      details=type(exc).__name__) from exc

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        if self._pool is None:
            raise DatabaseUnavailable("Database pool is not started", sent=False)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Any]:
        self._guard()
        pool = self.pool
        try:
            # With a connection idle, take it without the timeout machinery (asyncpg wraps a
            # timed acquire in wait_for, a measurable cost on every request).
            conn = await (pool.acquire() if pool.get_idle_size() > 0
                          else pool.acquire(timeout=self.settings.pool_timeout))
        except (TimeoutError, *_PG_ERRORS) as exc:
            if isinstance(exc, TimeoutError):
                # Every connection busy: load, not a dead server; nothing was sent.
                raise DatabaseUnavailable("Timed out waiting for a database connection",
                                          sent=False, retryable=False) from exc
            err = _pg_error(exc)
            if isinstance(err, DatabaseUnavailable):
                err.sent = False
            self._record(err)
            raise err from exc
        try:
            yield conn
        except HeadwaterError as exc:
            if isinstance(exc, DatabaseUnavailable):
                # A connection error (the server shutting down, a confused protocol): handed
                # out again, the connection would fail the next request too, or worse, with
                # "another operation is in progress" (a 500). The pool opens a new one.
                with contextlib.suppress(asyncpg.InterfaceError):  # already let go of
                    conn.terminate()
            self._record(exc)
            raise
        else:
            self._record(None)
        finally:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        self._on_query()
        async with self._acquire() as conn:
            try:
                row = await conn.fetchrow(sql, *params)
            except _PG_ERRORS as exc:
                raise _pg_error(exc) from exc
        assert row is not None
        return tuple(row)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        async with self._acquire() as conn:
            try:
                tx = conn.transaction(isolation="repeatable_read", readonly=True)
                await tx.start()
            except _PG_ERRORS as exc:
                raise _pg_error(exc) from exc
            try:
                yield _PgSnapshot(conn, self._on_query)
            finally:
                with contextlib.suppress(*_PG_ERRORS):
                    await tx.rollback()

    @contextlib.asynccontextmanager
    async def transaction(self, *, rollback: bool = False,
                          single: bool = False) -> AsyncIterator[Transaction]:
        async with self._acquire() as conn:
            if single and not rollback:
                # One statement commits by itself: two round trips fewer than BEGIN … COMMIT.
                yield _PgTransaction(conn, self._on_query, single=True)
                return
            tx = conn.transaction()
            try:
                await tx.start()
            except _PG_ERRORS as exc:
                raise _pg_error(exc) from exc
            try:
                yield _PgTransaction(conn, self._on_query)
            except BaseException:
                with contextlib.suppress(*_PG_ERRORS):
                    await tx.rollback()
                raise
            try:
                await (tx.rollback() if rollback else tx.commit())
            except _PG_ERRORS as exc:
                raise _pg_error(exc) from exc

    async def ping(self) -> None:
        await self.fetchrow("SELECT 1", ())

    def pool_stats(self) -> tuple[int, int]:
        if self._pool is None:
            return (0, 0)
        size = self._pool.get_size()
        return size, size - self._pool.get_idle_size()


# --- SQLite -----------------------------------------------------------------------------------

_SQLITE_CONSTRAINT: dict[str, tuple[type[HeadwaterError], str]] = {
    "SQLITE_CONSTRAINT_UNIQUE": (Conflict, "23505"),
    "SQLITE_CONSTRAINT_PRIMARYKEY": (Conflict, "23505"),
    "SQLITE_CONSTRAINT_FOREIGNKEY": (Conflict, "23503"),
    "SQLITE_CONSTRAINT_NOTNULL": (ConstraintViolation, "23502"),
    "SQLITE_CONSTRAINT_CHECK": (ConstraintViolation, "23514"),
}


def _sqlite_error(exc: sqlite3.Error) -> HeadwaterError:
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        cls, code = _SQLITE_CONSTRAINT.get(getattr(exc, "sqlite_errorname", ""),
                                           (ConstraintViolation, "23514"))
        return cls(text, code=code)
    if "interrupted" in text:
        return Timeout("canceling statement due to statement timeout")
    if "locked" in text or "busy" in text or "unable to open" in text:
        return DatabaseUnavailable("Database is busy or unavailable", details=text)
    if text in _SQLITE_TOO_COMPLEX or text.startswith("too many arguments on function"):
        # The request asked for more than SQLite can plan (e.g. embeds nested too deeply).
        return RequestError("statement too complex: nest fewer embeds or use fewer filters",
                            code="54001", details=text)
    return DatabaseError("Database error")


_SET_TAG = f"UPDATE {TAG_TABLE} SET principal = ?1, txid = ?2, tbl = ?3, op = ?4"
_UNKNOWN = object()
_SQLITE_TOO_COMPLEX = frozenset({"parser stack overflow", "Expression tree is too large "
                                 "(maximum depth 1000)", "too many terms in compound SELECT"})


class _SqliteConn:
    """One sqlite3 connection, used by one thread at a time, with a statement deadline."""

    def __init__(self, path: str, settings: Settings) -> None:
        self.conn = sqlite3.connect(path, timeout=settings.sqlite_busy_timeout_ms / 1000,
                                    check_same_thread=False, isolation_level=None,
                                    cached_statements=512)
        self.deadline = 0.0
        self.timeout = settings.statement_timeout
        c = self.conn
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA foreign_keys=ON")
        c.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        # PostgreSQL's LIKE is case-sensitive; SQLite's is not unless told.
        c.execute("PRAGMA case_sensitive_like=ON")
        c.set_progress_handler(self._check_deadline, 10_000)
        #: What ``TAG_TABLE`` holds (the writer connection only): set when a statement needs
        #: another, so a stream of writes costs one small statement each, not two. Unknown
        #: after any failure or rollback, since the table is transactional like any other.
        self.tag: object = None
        self.tagging = False

    def _check_deadline(self) -> int:
        return 1 if self.deadline and time.monotonic() > self.deadline else 0

    def arm(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def _prepare(self, begin: str | None, tag: Tag | None) -> None:
        if begin is not None:
            self.conn.execute(begin)
        if tag != self.tag:
            if not self.tagging:
                if tag is None:
                    return
                raise DatabaseError("events: the outbox triggers are not installed")
            self.conn.execute(_SET_TAG, tag or (None, None, None, None))
            self.tag = tag

    def _statement(self, sql: str, params: Sequence[object], begin: str | None,
                   tag: Tag | None, rows: bool) -> Any:
        self.arm()
        try:
            self._prepare(begin, tag)
            cur = self.conn.execute(sql, params)
            return cur.fetchall() if rows else cur.rowcount
        except BaseException:
            self.tag = _UNKNOWN
            raise
        finally:
            self.deadline = 0.0

    def fetchall(self, sql: str, params: Sequence[object], begin: str | None = None,
                 tag: Tag | None = None) -> list[Row]:
        rows: list[Row] = self._statement(sql, params, begin, tag, True)
        return rows

    def changes(self, sql: str, params: Sequence[object], begin: str | None = None,
                tag: Tag | None = None) -> int:
        count: int = self._statement(sql, params, begin, tag, False)
        return count

    def end(self, verb: str) -> None:
        """COMMIT or ROLLBACK (a rollback also undoes the transaction's tag changes)."""
        if verb != "COMMIT":
            self.tag = _UNKNOWN
        self.conn.execute(verb)

    def install(self, ddl: Sequence[str]) -> None:
        """``TAG_TABLE`` and the session's TEMP triggers, replaced in one transaction."""
        c = self.conn
        if not self.tagging:
            # Before any TEMP object exists (changing it drops them): no temp file on disk.
            c.execute("PRAGMA temp_store=MEMORY")
        c.execute(f"CREATE TEMP TABLE IF NOT EXISTS {TAG_TABLE} "
                  f"(principal TEXT, txid INTEGER, tbl TEXT, op TEXT)")
        c.execute("BEGIN IMMEDIATE")
        try:
            for (name,) in c.execute("SELECT name FROM temp.sqlite_master WHERE type = "
                                     "'trigger' AND name GLOB '_headwater_*'").fetchall():
                c.execute('DROP TRIGGER temp."' + name.replace('"', '""') + '"')
            c.execute(f"DELETE FROM {TAG_TABLE}")
            c.execute(f"INSERT INTO {TAG_TABLE} VALUES (NULL, NULL, NULL, NULL)")
            for sql in ddl:
                c.execute(sql)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            self.tag = None
        self.tagging = True

    def pair(self, sql: str, params: Sequence[object],
             then: Callable[[list[Row]], Statement | None]) -> list[Row]:
        """``sql`` and the statement ``then`` makes of its rows, in one transaction."""
        c = self.conn
        self.arm()
        try:
            self._prepare("BEGIN IMMEDIATE", None)
            try:
                rows = c.execute(sql, params).fetchall()
                follow = then(rows)
                if follow is not None:
                    c.execute(follow[0], follow[1]).fetchall()
                self.end("COMMIT")
            except BaseException:
                self.tag = _UNKNOWN
                if c.in_transaction:
                    self.end("ROLLBACK")
                raise
            return rows
        finally:
            self.deadline = 0.0

    def finish(self, sql: str, params: Sequence[object], begin: str | None, verb: str) -> None:
        """The last statement, then COMMIT/ROLLBACK, in one call (the caller rolls back on
        errors, as for any statement)."""
        self.fetchall(sql, params, begin)
        self.end(verb)

    def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        self.arm()
        try:
            row: Row | None = self.conn.execute(sql, params).fetchone()
        finally:
            self.deadline = 0.0
        assert row is not None
        return tuple(row)


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

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=0, check_same_thread=False,
                                    isolation_level=None, cached_statements=512)
        self.conn.execute("PRAGMA query_only=ON")
        self.conn.execute("PRAGMA case_sensitive_like=ON")
        self.conn.set_progress_handler(self._over, 1000)
        self.deadline = 0.0
        self.slow: dict[str, None] = {}

    def _over(self) -> int:
        return 1 if time.monotonic() > self.deadline else 0

    def fetchrow(self, sql: str, params: Sequence[object]) -> Row | None:
        """The first row, or None when the pool must answer instead."""
        if sql in self.slow:
            return None
        self.deadline = time.monotonic() + INLINE_BUDGET_S
        try:
            row = self.conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            if "interrupted" in str(exc):
                if len(self.slow) >= _SLOW_MEMORY:
                    self.slow.pop(next(iter(self.slow)))
                self.slow[sql] = None
            return None
        return None if row is None else tuple(row)


class _SqliteSnapshot(Snapshot):
    def __init__(self, db: SqliteDatabase, conn: _SqliteConn) -> None:
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

    def __init__(self, db: SqliteDatabase, conn: _SqliteConn) -> None:
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

    def __init__(self, db: SqliteDatabase, conn: _SqliteConn) -> None:
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


#: The most one-statement writes committed together (one transaction, one fsync).
GROUP_MAX = 256


class _Job:
    __slots__ = ("args", "fn", "future", "group", "loop")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], group: bool,
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.fn = fn
        self.args = args
        self.group = group
        self.loop = loop
        self.future = future


class _WriterThread:
    """The one thread that uses SQLite's writer connection, with group commit.

    Jobs run in the order they were queued. One-statement writes (``group``) that are waiting
    together run as one transaction: BEGIN, each statement, one COMMIT, so a burst of writes
    pays for one commit (and its fsync) instead of one each, as PostgreSQL's group commit does.
    Each is still atomic on its own: a statement that fails is undone by SQLite alone and the
    others go on; if a failure takes the whole transaction with it (an interrupt, a full disk),
    the ones before it run again on their own. A write is answered only after the COMMIT that
    made it durable. A waiting writer adds no delay: a group is whatever queued meanwhile.
    Every group is answered with one wake-up of the event loop, not one per write.
    """

    def __init__(self) -> None:
        self._jobs: collections.deque[_Job] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self.conn: _SqliteConn | None = None
        #: Transactions that committed several writes, the writes in them, and the writes run
        #: again because a failure in their group undid it (read by tests and the bench).
        self.groups = self.grouped = self.redone = 0
        self._thread = threading.Thread(target=self._run, name="headwater-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               group: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._ready:
            if self._closed:
                raise DatabaseUnavailable("Database is not started")
            self._jobs.append(_Job(fn, args, group, loop, future))
            self._ready.notify()
        return future

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if not self._jobs:
                    return
                batch = [self._jobs.popleft()]
                if batch[0].group:
                    while self._jobs and self._jobs[0].group and len(batch) < GROUP_MAX:
                        batch.append(self._jobs.popleft())
            batch = [j for j in batch if not j.future.cancelled()]
            if not batch:
                continue
            conn = self.conn
            if len(batch) == 1 or conn is None or conn.conn.in_transaction:
                outcomes = [_attempt(j) for j in batch]
            else:
                outcomes = self._together(conn, batch)
            batch[0].loop.call_soon_threadsafe(_answer, batch, outcomes)

    def _together(self, conn: _SqliteConn, batch: list[_Job]) -> list[tuple[bool, Any]]:
        c = conn.conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return [_attempt(j) for j in batch]  # each meets the same error, or not
        outcomes: list[tuple[bool, Any]] = []
        for i, job in enumerate(batch):
            outcome = _attempt(job)
            if not outcome[0] and not c.in_transaction:
                # The failure undid the whole transaction: the writes before it are gone.
                conn.tag = _UNKNOWN
                self.redone += i
                redo = [_attempt(j) for j in batch[:i]]
                return redo + [outcome] + [_attempt(j) for j in batch[i + 1:]]
            outcomes.append(outcome)
        try:
            conn.end("COMMIT")
        except sqlite3.Error as exc:
            if c.in_transaction:
                conn.end("ROLLBACK")
            conn.tag = _UNKNOWN
            return [(False, exc)] * len(batch)
        self.groups += 1
        self.grouped += len(batch)
        return outcomes


def _attempt(job: _Job) -> tuple[bool, Any]:
    try:
        return True, job.fn(*job.args)
    except BaseException as exc:  # handed to the waiting coroutine
        return False, exc


def _answer(batch: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
    for job, (ok, value) in zip(batch, outcomes, strict=True):
        if job.future.cancelled():
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


@dataclass(slots=True)
class _WriteSide:
    """What every write of a process goes through: the writer thread, its connection, and
    the lock a multi-statement transaction holds from BEGIN to COMMIT."""

    thread: _WriterThread | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The connection's TEMP triggers (``install_session``), kept for a reopen.
    session: tuple[str, ...] | None = None

    @property
    def conn(self) -> _SqliteConn | None:
        return self.thread.conn if self.thread is not None else None


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
        self._idle: queue.SimpleQueue[_SqliteConn] = queue.SimpleQueue()
        self._slots = asyncio.Semaphore(self._size)
        self._inline: _InlineReader | None = None
        self._owns_writer = writer_of is None
        self._side: _WriteSide = _WriteSide() if writer_of is None else writer_of._side
        self._conns: list[_SqliteConn] = []
        self._executor: ThreadPoolExecutor | None = None
        self._in_use = 0

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="headwater-sqlite")
        try:
            for _ in range(self._size):
                conn = await self._run(_SqliteConn, self.path, self.settings)
                self._conns.append(conn)
                self._idle.put(conn)
            self._inline = _InlineReader(self.path)
            side = self._side
            if self._owns_writer:
                side.thread = _WriterThread()
                writer = side.thread.conn = await self._write(_SqliteConn, self.path,
                                                              self.settings)
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
            raise _sqlite_error(exc) from exc

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[_SqliteConn]:
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

    async def _rollback(self, conn: _SqliteConn) -> None:
        def rollback() -> None:
            if conn.conn.in_transaction:
                conn.end("ROLLBACK")

        with contextlib.suppress(HeadwaterError):
            await self._write(rollback)

    async def _write(self, fn: Callable[..., Any], *args: Any, group: bool = False) -> Any:
        """``fn`` on the writer thread (where the writer connection is used, and only there);
        ``group``: ``fn`` runs one statement in autocommit mode, which may be committed
        together with others (``_WriterThread``)."""
        writer = self._side.thread
        if writer is None:
            raise DatabaseUnavailable("Database is not started")
        try:
            return await writer.submit(fn, args, group)
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from exc

    async def ping(self) -> None:
        await self.fetchrow("SELECT 1", ())

    def pool_stats(self) -> tuple[int, int]:
        return len(self._conns), self._in_use
