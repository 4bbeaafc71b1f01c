"""One SQLite connection (``sqlite3``) with a statement deadline and the outbox tag; sqlite3's
errors become ``headwater.errors`` here."""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from headwater.config import Settings
from headwater.db.database import TAG_TABLE, Row, Statement, Tag
from headwater.db.location import sqlite_open_target
from headwater.db.sql import BLOB_FROM_HEX, IREGEXP
from headwater.errors import (
    Conflict,
    ConstraintViolation,
    DatabaseError,
    DatabaseUnavailable,
    HeadwaterError,
    ReadOnly,
    RequestError,
    Timeout,
)
from headwater.model.values import from_hex, is_hex

_SQLITE_CONSTRAINT: dict[str, tuple[type[HeadwaterError], str]] = {
    "SQLITE_CONSTRAINT_UNIQUE": (Conflict, "23505"),
    "SQLITE_CONSTRAINT_PRIMARYKEY": (Conflict, "23505"),
    "SQLITE_CONSTRAINT_FOREIGNKEY": (Conflict, "23503"),
    "SQLITE_CONSTRAINT_NOTNULL": (ConstraintViolation, "23502"),
    "SQLITE_CONSTRAINT_CHECK": (ConstraintViolation, "23514"),
}


def sqlite_error(exc: sqlite3.Error) -> HeadwaterError:
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError):
        cls, code = _SQLITE_CONSTRAINT.get(getattr(exc, "sqlite_errorname", ""),
                                           (ConstraintViolation, "23514"))
        if code == "23514":
            expression = text.partition("CHECK constraint failed: ")[2]
            out = ConstraintViolation(_check_message(text), code=code)
            # The names in the expression, kept off the wire: the writer tells the caller
            # which of the columns it wrote the constraint concerns (``service.writes``).
            out.columns = tuple(dict.fromkeys(_NAME.findall(expression)))
            return out
        return cls(text, code=code)
    if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
        return ReadOnly("cannot write: the database file is read-only",
                        hint="Serve a writable file, without --read-only, to write")
    if "interrupted" in text:
        return Timeout("canceling statement due to statement timeout")
    if "locked" in text or "busy" in text or "unable to open" in text:
        return DatabaseUnavailable("Database is busy or unavailable", details=text)
    if text.startswith("fts5: syntax error"):
        # The caller's full-text query (``fts.…``), which FTS5 could not read: PostgreSQL
        # answers a malformed tsquery with 42601 too.
        return RequestError("syntax error in the full-text search query", code="42601",
                            details=text.removeprefix("fts5: "),
                            hint="balance the parentheses and put words around & and |")
    if text in _SQLITE_TOO_COMPLEX or text.startswith("too many arguments on function"):
        # The request asked for more than SQLite can plan (e.g. embeds nested too deeply).
        return RequestError("statement too complex: nest fewer embeds or use fewer filters",
                            code="54001", details=text)
    return DatabaseError("Database error")


def _check_message(text: str) -> str:
    """SQLite's "CHECK constraint failed: <name or expression>" in PostgreSQL's words; the
    expression text of an unnamed constraint is not echoed (it may describe columns and
    values the caller may not read)."""
    name = text.partition("CHECK constraint failed: ")[2]
    if _NAME.fullmatch(name):
        return f'new row violates check constraint "{name}"'
    return "new row violates a check constraint"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_SET_TAG = f"UPDATE {TAG_TABLE} SET principal = ?1, txid = ?2, tbl = ?3, op = ?4"
UNKNOWN_TAG = object()
_SQLITE_TOO_COMPLEX = frozenset({"parser stack overflow", "Expression tree is too large "
                                 "(maximum depth 1000)", "too many terms in compound SELECT"})


@functools.lru_cache(maxsize=256)
def _regex(pattern: str, flags: int) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, flags)
    except (re.error, RecursionError, OverflowError):
        return None


def _search(pattern: object, value: object, flags: int) -> int | None:
    if not isinstance(pattern, str) or value is None or isinstance(value, bytes):
        return None
    compiled = _regex(pattern, flags)
    if compiled is None:
        return None
    return 1 if compiled.search(value if isinstance(value, str) else str(value)) else 0


def add_functions(conn: sqlite3.Connection) -> None:
    """``match``/``imatch`` on SQLite: ``x REGEXP p`` calls ``regexp(p, x)``. Patterns from
    requests were checked (``headwater.model.pattern``) before they get here: one call of
    Python's ``re`` cannot be interrupted by the statement deadline."""
    conn.create_function("regexp", 2, lambda p, v: _search(p, v, 0), deterministic=True)
    conn.create_function(IREGEXP, 2, lambda p, v: _search(p, v, re.IGNORECASE),
                         deterministic=True)
    conn.create_function(BLOB_FROM_HEX, 1, _blob, deterministic=True)


def _blob(value: str | bytes | int | float | None) -> str | bytes | int | float | None:
    if isinstance(value, str) and is_hex(value):
        return from_hex(value)
    return value


#: Prepared statements each connection keeps. sqlite3 bounds its cache by count, not by
#: memory, and a statement for a wide ``select=`` holds about as much memory as hundreds of
#: plain ones (0.4 MB for 800 columns): so the counts are small, and smallest on the pool's
#: connections, whose reads are the slow ones (past the inline budget, or streamed) where
#: preparing again costs nothing that shows. The worst case is
#: ``(HOT_STATEMENTS * 2 + POOL_STATEMENTS * pool_max_size)`` statements of the largest size
#: a URL allows, instead of 512 per connection (300 distinct wide selects: +600 MB).
HOT_STATEMENTS = 64
POOL_STATEMENTS = 4


class SqliteConn:
    """One sqlite3 connection, used by one thread at a time, with a statement deadline."""

    def __init__(self, path: str, settings: Settings, *,
                 cached_statements: int = POOL_STATEMENTS) -> None:
        target, uri = sqlite_open_target(path, settings.read_only)
        self.conn = sqlite3.connect(target, timeout=settings.sqlite_busy_timeout_ms / 1000,
                                    check_same_thread=False, isolation_level=None,
                                    cached_statements=cached_statements, uri=uri)
        self.deadline = 0.0
        self.timeout = settings.statement_timeout
        c = self.conn
        if not settings.read_only:  # --read-only: the file stays as it is, byte for byte
            c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA foreign_keys=ON")
        c.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        # PostgreSQL's LIKE is case-sensitive; SQLite's is not unless told.
        c.execute("PRAGMA case_sensitive_like=ON")
        c.set_progress_handler(self._check_deadline, 10_000)
        add_functions(c)
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
            self.tag = UNKNOWN_TAG
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
            self.tag = UNKNOWN_TAG
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
                self.tag = UNKNOWN_TAG
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
