"""What the rest of Headwater sees of a database: ``Database``, ``Transaction``, ``Snapshot``.

A ``Database`` runs SQL text with bound parameters and nothing else: it never sees HTTP or
plans. Driver errors are translated into ``headwater.errors`` by each backend, in one place
per driver (``headwater.db.postgres``, ``headwater.db.sqlite``).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

from headwater.config import Settings
from headwater.errors import DatabaseUnavailable, HeadwaterError
from headwater.resilience.breaker import CircuitBreaker, Guard

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
#: for the request's own. A transaction id None: each row the trigger records draws a random
#: one (a one-row, one-statement transaction). PostgreSQL records events inside the statement
#: and ignores it.
Tag = tuple[str, int | None, str, str]
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

    def _guard(self) -> Guard:
        """One call to the server through the breaker: unavailability counts as failure, any
        other of our errors (the server answered) as health, anything else (a cancellation)
        not at all; while the breaker is open the call fails at once."""
        return Guard(self.breaker, DatabaseUnavailable, successes=HeadwaterError,
                     opened=_circuit_open)

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


def _circuit_open(breaker: CircuitBreaker) -> DatabaseUnavailable:
    return DatabaseUnavailable("Database connection error: the circuit is open",
                               sent=False, retryable=False, retry_after=breaker.retry_after(),
                               hint="the database failed repeatedly; retry shortly")
