"""SQLite's writer thread: every write of a process, in order, with group commit."""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headwater.db.sqlite_connection import UNKNOWN_TAG, SqliteConn
from headwater.errors import DatabaseUnavailable

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


class WriterThread:
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
        self.conn: SqliteConn | None = None
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

    def _together(self, conn: SqliteConn, batch: list[_Job]) -> list[tuple[bool, Any]]:
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
                conn.tag = UNKNOWN_TAG
                self.redone += i
                redo = [_attempt(j) for j in batch[:i]]
                return redo + [outcome] + [_attempt(j) for j in batch[i + 1:]]
            outcomes.append(outcome)
        try:
            conn.end("COMMIT")
        except sqlite3.Error as exc:
            if c.in_transaction:
                conn.end("ROLLBACK")
            conn.tag = UNKNOWN_TAG
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
class WriteSide:
    """What every write of a process goes through: the writer thread, its connection, and
    the lock a multi-statement transaction holds from BEGIN to COMMIT."""

    thread: WriterThread | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The connection's TEMP triggers (``install_session``), kept for a reopen.
    session: tuple[str, ...] | None = None

    @property
    def conn(self) -> SqliteConn | None:
        return self.thread.conn if self.thread is not None else None
