"""Pooled execution on PostgreSQL (asyncpg); asyncpg's errors become ``headwater.errors``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from headwater.config import Settings
from headwater.db.database import Database, QueryHook, Row, Snapshot, Tag, Transaction
from headwater.errors import (
    Conflict,
    ConstraintViolation,
    DatabaseError,
    DatabaseUnavailable,
    HeadwaterError,
    InvalidValue,
    MethodNotAllowed,
    Raised,
    ReadOnly,
    RequestError,
    Timeout,
    TransactionConflict,
)

_PG_CONFLICT = frozenset({"23505", "23503", "23P01"})


#: What asyncpg raises: the server's errors, the connection's, and the client's own protocol
#: errors (a connection whose protocol is confused must fail as unavailable, not as a 500).
_PG_ERRORS = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError,
              asyncpg.exceptions.InternalClientError)
#: ... and, once a statement is on its way, our own command timeout.
_STATEMENT_ERRORS = (*_PG_ERRORS, TimeoutError)


def _raised(exc: asyncpg.PostgresError, sqlstate: str) -> HeadwaterError | None:
    """An error a function or trigger raised on purpose, mapped as PostgREST maps it:
    ``P0001`` (plain ``RAISE EXCEPTION``) and codes PostgreSQL does not define are 400,
    ``PTxyz`` is status xyz, and ``PGRST`` carries the whole error as JSON in its message
    and the status and headers in its detail."""
    message = exc.args[0] if exc.args else ""
    detail, hint = getattr(exc, "detail", None), getattr(exc, "hint", None)
    if sqlstate == "PGRST":
        try:
            body = json.loads(message)
            meta = json.loads(detail) if detail else {}
            status = int(meta.get("status", 400))
            headers = {str(k): str(v) for k, v in (meta.get("headers") or {}).items()}
            if not isinstance(body, dict) or "code" not in body or not 100 <= status <= 599:
                raise ValueError("no code, or no HTTP status")
        except (ValueError, TypeError, AttributeError):
            return DatabaseError("The message and detail of a PGRST error must be JSON",
                                 code="PGRST121", details=None,
                                 hint="RAISE SQLSTATE 'PGRST' USING message = '{\"code\":…,"
                                      "\"message\":…}', detail = '{\"status\":…}'")
        return Raised(str(body.get("message", "")), status=status, code=str(body["code"]),
                      details=body.get("details"), hint=body.get("hint"), headers=headers)
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit() and 100 <= int(sqlstate[2:]) <= 599:
        return Raised(message, status=int(sqlstate[2:]), code=sqlstate, details=detail,
                      hint=hint)
    if sqlstate == "P0001" or isinstance(exc, asyncpg.exceptions.UnknownPostgresError):
        return Raised(message, code=sqlstate, details=detail, hint=hint)
    return None


def _pg_error(exc: BaseException) -> HeadwaterError:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate:
        raised = _raised(exc, sqlstate)
        if raised is not None:
            return raised
    if isinstance(exc, asyncpg.PostgresError) and sqlstate and sqlstate[:2] == "54":
        # statement too complex (e.g. max_stack_depth): the request's shape, not a failure
        return RequestError("statement too complex: nest fewer embeds or use fewer filters",
                            code=sqlstate, details=None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate and sqlstate[:2] == "23":
        # PostgreSQL's own message and detail name the constraint and key, never our SQL.
        # Except "Failing row contains (…)": it lists every column of the row, those the
        # caller may not read (and ciphertext) included, so it is dropped.
        cls = Conflict if sqlstate in _PG_CONFLICT else ConstraintViolation
        detail = getattr(exc, "detail", None)
        if detail and detail.startswith("Failing row contains"):
            detail = None
        return cls(exc.args[0] if exc.args else "constraint violation", code=sqlstate,
                   details=detail, hint=getattr(exc, "hint", None))
    if isinstance(exc, asyncpg.PostgresError) and sqlstate in ("22001", "22003", "22007", "22008",
                                                               "22P02", "22023"):
        return ConstraintViolation(exc.args[0] if exc.args else "invalid value", code=sqlstate,
                                   details=getattr(exc, "detail", None))
    if sqlstate == "25006":  # read-only transaction (--read-only), as PostgREST answers it
        return ReadOnly(exc.args[0] if exc.args else "read-only transaction", code=sqlstate)
    if sqlstate in ("40001", "40P01"):
        return TransactionConflict("could not serialize access: the transaction was retried "
                                   "and conflicted again", code=sqlstate)
    if sqlstate == "55000" and exc.args and " view " in f" {exc.args[0]} ":
        # "cannot insert into view …": the request's doing, never the database's failure
        return MethodNotAllowed(str(exc.args[0]), code=sqlstate,
                                details=getattr(exc, "detail", None),
                                hint=getattr(exc, "hint", None))
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
    if sqlstate == "42704" and exc.args and str(exc.args[0]).startswith("type "):
        # a cast in select= to a type that does not exist: the message names only the type
        return RequestError(str(exc.args[0]), code=sqlstate, details=None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate and sqlstate[:2] == "42":
        # The statement's text was refused (syntax, an unknown name): the request's doing,
        # since every name was looked up in the catalog. PostgreSQL's message would quote
        # our SQL: say only what kind of error it was.
        return RequestError("the database could not run the statement for this request",
                            code=sqlstate, details=None)
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                        asyncpg.exceptions.InternalClientError,
                        asyncpg.exceptions.ConnectionDoesNotExistError,
                        asyncpg.exceptions.CannotConnectNowError,
                        asyncpg.exceptions.TooManyConnectionsError,
                        asyncpg.exceptions.AdminShutdownError)):
        return DatabaseUnavailable("Database connection error. Retrying the connection.",
                                   details=type(exc).__name__)
    return DatabaseError("Database error", details=f"{type(exc).__name__}: {exc}"[:300])


def _statement_error(exc: BaseException, conn: Any) -> HeadwaterError:
    """An error raised by a statement on a connection we hold (the connection was made and
    the statement sent). What the statement's own text or values caused is the request's
    doing, not the database's: it is never retried and never counts toward the breaker
    (else a few hostile requests open it for everyone). Only a connection that is gone,
    or a server that is shutting down, is unavailability."""
    if (isinstance(exc, asyncpg.exceptions.ProtocolViolationError)
            and getattr(exc, "severity", None) == "ERROR"):
        # 08P01 as an ERROR (not FATAL) answers one message we sent, e.g. a NUL in its text;
        # the session goes on. (A FATAL one is the connection failing: unavailable.)
        return RequestError("the database refused the text of this request's statement",
                            code="08P01", details=None)
    if isinstance(exc, asyncpg.exceptions._base.DataError):  # the client-side one
        # asyncpg could not encode an argument: the value is wrong, nothing was run.
        return InvalidValue(str(exc).split("\n")[0][:200], code="22P02")
    if isinstance(exc, TimeoutError):
        # Our own command timeout (statement_timeout + 1 s) fired first, e.g. PostgreSQL was
        # blocked sending a huge result: the statement was too expensive, the server is up.
        # One 504, like the statement timeout; the connection is dropped (``_acquire``).
        return Timeout("canceling statement due to statement timeout",
                       details="the statement ran past the statement timeout")
    if (isinstance(exc, (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError))
            and not conn.is_closed()):
        # The driver refused the statement on a connection that is still open (its
        # arguments, its text): a fault of this statement, not of the database.
        return DatabaseError("Database error", details=f"{type(exc).__name__}: {exc}"[:300])
    return _pg_error(exc)


def _suspect(exc: BaseException) -> bool:
    """After this error, may the connection be handed out again? Not after a failure of the
    connection, nor when the driver or our timeout left it mid-statement: the next request
    would fail too, or worse, with "another operation is in progress" (a 500)."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    return isinstance(exc.__cause__, (TimeoutError, asyncpg.InterfaceError,
                                      asyncpg.exceptions.InternalClientError,
                                      asyncpg.exceptions.ProtocolViolationError))


class _PgSnapshot(Snapshot):
    def __init__(self, conn: Any, hook: QueryHook) -> None:
        self.conn = conn
        self.hook = hook

    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        self.hook()
        try:
            row = await self.conn.fetchrow(sql, *params)
        except _STATEMENT_ERRORS as exc:
            raise _statement_error(exc, self.conn) from exc
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
        except _STATEMENT_ERRORS as exc:
            raise _statement_error(exc, self.conn) from exc


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
        except _STATEMENT_ERRORS as exc:
            raise _statement_error(exc, self.conn) from exc


async def _no_reset(conn: Any) -> None:
    return None


#: What a pooler in transaction mode answers to a startup parameter it does not carry.
POOLER_REFUSAL = "unsupported startup parameter"
POOLER_HINT = ("behind a pooler in transaction mode (pgbouncer) set db_prepared_statements = "
               "false (HEADWATER_DB_PREPARED_STATEMENTS=false)")


def connect_options(settings: Settings) -> dict[str, Any]:
    """asyncpg's connection options for every connection Headwater opens to a server (pool,
    probes, the replica monitor): with ``db_prepared_statements`` off, nothing a pooler in
    transaction mode cannot carry (named prepared statements live on one server connection;
    startup parameters other than a few are refused)."""
    if not settings.db_prepared_statements:
        return {"statement_cache_size": 0, "server_settings": {"application_name": "headwater"}}
    return {"server_settings": {"statement_timeout": str(int(settings.statement_timeout * 1000)),
                                "application_name": "headwater",
                                **({"default_transaction_read_only": "on"}
                                   if settings.read_only else {})}}


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, settings: Settings, on_query: QueryHook | None = None) -> None:
        super().__init__(settings, on_query)
        self.schema = settings.db_schema
        self._pool: asyncpg.Pool[Any] | None = None
        #: Read-only without a session setting to say so (``db_prepared_statements`` off):
        #: every transaction begins READ ONLY and no write runs as a lone statement; plain
        #: reads still run outside a transaction (only Headwater's own SELECTs).
        self._readonly_tx = settings.read_only and not settings.db_prepared_statements

    async def start(self) -> None:
        s = self.settings
        try:
            self._pool = await asyncpg.create_pool(
                s.database_url.replace("postgres://", "postgresql://", 1),
                min_size=s.pool_min_size, max_size=s.pool_max_size, timeout=s.connect_timeout,
                command_timeout=s.statement_timeout + 1.0, **connect_options(s),
                # asyncpg's default reset is one more round trip per checkout; Headwater never
                # leaves session state behind (no SET, LISTEN or advisory locks), and aborted
                # transactions are rolled back by their own context managers.
                reset=_no_reset,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            # The server's (or the network's) own words: 'database "x" does not exist'.
            details = str(exc).split("\n")[0] or type(exc).__name__
            raise DatabaseUnavailable("Could not connect to the database", details=details,
                                      hint=POOLER_HINT if POOLER_REFUSAL in details else None,
                                      ) from exc

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
        conn: Any = None
        try:
            with self._guard() as call:
                try:
                    pool = self.pool
                except DatabaseUnavailable:
                    call.uncounted()  # not started: the server was never asked
                    raise
                try:
                    # With a connection idle, take it without the timeout machinery (asyncpg
                    # wraps a timed acquire in wait_for, a measurable cost on every request).
                    conn = await (pool.acquire() if pool.get_idle_size() > 0
                                  else pool.acquire(timeout=self.settings.pool_timeout))
                except (TimeoutError, *_PG_ERRORS) as exc:
                    if isinstance(exc, TimeoutError):
                        # Every connection busy: load, not a dead server; nothing was sent.
                        call.uncounted()
                        raise DatabaseUnavailable("Timed out waiting for a database connection",
                                                  sent=False, retryable=False) from exc
                    err = _pg_error(exc)
                    if isinstance(err, DatabaseUnavailable):
                        err.sent = False
                    raise err from exc
                try:
                    yield conn
                except HeadwaterError as exc:
                    if _suspect(exc):
                        # The pool opens a new connection in its place.
                        with contextlib.suppress(asyncpg.InterfaceError):  # already let go of
                            conn.terminate()
                    raise
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await self.pool.release(conn)

    async def fetchrow(self, sql: str, params: Sequence[object]) -> Row:
        self._on_query()
        async with self._acquire() as conn:
            try:
                row = await conn.fetchrow(sql, *params)
            except _STATEMENT_ERRORS as exc:
                raise _statement_error(exc, conn) from exc
        assert row is not None
        return tuple(row)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        async with self._acquire() as conn:
            try:
                tx = conn.transaction(isolation="repeatable_read", readonly=True)
                await tx.start()
            except _STATEMENT_ERRORS as exc:
                raise _statement_error(exc, conn) from exc
            try:
                yield _PgSnapshot(conn, self._on_query)
            finally:
                with contextlib.suppress(*_STATEMENT_ERRORS):
                    await tx.rollback()

    @contextlib.asynccontextmanager
    async def transaction(self, *, rollback: bool = False,
                          single: bool = False) -> AsyncIterator[Transaction]:
        async with self._acquire() as conn:
            if single and not rollback and not self._readonly_tx:
                # One statement commits by itself: two round trips fewer than BEGIN … COMMIT.
                yield _PgTransaction(conn, self._on_query, single=True)
                return
            tx = conn.transaction(readonly=self._readonly_tx)
            try:
                await tx.start()
            except _STATEMENT_ERRORS as exc:
                raise _statement_error(exc, conn) from exc
            try:
                yield _PgTransaction(conn, self._on_query)
            except BaseException:
                with contextlib.suppress(*_STATEMENT_ERRORS):
                    await tx.rollback()
                raise
            try:
                await (tx.rollback() if rollback else tx.commit())
            except _STATEMENT_ERRORS as exc:
                raise _statement_error(exc, conn) from exc

    async def ping(self) -> None:
        await self.fetchrow("SELECT 1", ())

    async def probe(self) -> None:
        """Is the server answering? On a connection of its own, past the pool and the
        breaker (this is what tells an open breaker that the database is back)."""
        conn = await asyncpg.connect(self.settings.database_url.replace("postgres://", "postgresql://", 1),
                                     timeout=self.settings.connect_timeout,
                                     **connect_options(self.settings))
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close(timeout=1)

    def pool_stats(self) -> tuple[int, int]:
        if self._pool is None:
            return (0, 0)
        size = self._pool.get_size()
        return size, size - self._pool.get_idle_size()
