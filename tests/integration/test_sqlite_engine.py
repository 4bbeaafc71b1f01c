"""SQLite engine: reads tried on the loop's thread, every write on one writer thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from headwater.config import Settings
from headwater.db.sqlite import SqliteDatabase
from headwater.errors import Conflict, Timeout


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    path = tmp_path / "e.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")
    conn.commit()
    conn.close()
    database = SqliteDatabase(Settings(database_url=f"sqlite:///{path}", pool_max_size=4))
    await database.start()
    yield database
    await database.close()


SLOW = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
        "SELECT count(*), 0, 0 FROM n")


async def test_a_read_over_budget_is_answered_by_the_pool(db: SqliteDatabase) -> None:
    assert await db.fetchrow("SELECT 1, 2, 3", ()) == (1, 2, 3)
    assert await db.fetchrow(SLOW, ()) == (3000000, 0, 0)
    inline = db._inline
    assert inline is not None and hash(SLOW) in inline.slow  # next time straight to the pool
    assert await db.fetchrow(SLOW, ()) == (3000000, 0, 0)


async def test_reads_see_every_committed_write(db: SqliteDatabase) -> None:
    for i in range(50):
        async with db.transaction(single=True) as tx:
            await tx.fetch("INSERT INTO t (v) VALUES (?) RETURNING 1", (f"s{i}",))
        assert await db.fetchrow("SELECT count(*) FROM t", ()) == (i + 1,)


async def test_single_writes_never_run_inside_a_transaction(db: SqliteDatabase) -> None:
    """One-statement writes interleaved with multi-statement transactions that roll back:
    every one-statement write stays, nothing of a rolled-back transaction does."""

    async def single(i: int) -> None:
        async with db.transaction(single=True) as tx:
            await tx.fetch("INSERT INTO t (v) VALUES (?) RETURNING 1", (f"single{i}",))

    async def doomed_work(i: int) -> None:
        async with db.transaction() as tx:
            await tx.fetch("INSERT INTO t (v) VALUES (?) RETURNING 1", (f"doomed{i}",))
            await asyncio.sleep(0.001)  # others queue meanwhile
            await tx.fetch("INSERT INTO t (v) VALUES ('dup') RETURNING 1", ())
            await tx.fetch("INSERT INTO t (v) VALUES ('dup') RETURNING 1", ())

    async def doomed(i: int) -> None:
        with pytest.raises(Conflict):
            await doomed_work(i)

    await asyncio.gather(*(single(i) for i in range(100)), *(doomed(i) for i in range(10)),
                         *(single(i) for i in range(100, 200)))
    rows = await db.fetchrow("SELECT count(*), sum(v LIKE 'single%'), sum(v LIKE 'doomed%') "
                             "FROM t", ())
    assert rows == (200, 200, 0)


async def test_fetch_with_is_one_unit(db: SqliteDatabase) -> None:
    async with db.transaction(single=True) as tx:
        rows = await tx.fetch_with("INSERT INTO t (v) VALUES ('a') RETURNING id", (),
                                   lambda r: ("INSERT INTO t (v) VALUES (?) RETURNING 1",
                                              (f"after{r[0][0]}",)))
    assert await db.fetchrow("SELECT count(*) FROM t", ()) == (2,)
    async def clash() -> None:
        async with db.transaction(single=True) as tx:
            await tx.fetch_with("INSERT INTO t (v) VALUES ('b') RETURNING id", (),
                                lambda r: ("INSERT INTO t (v) VALUES ('a') RETURNING 1", ()))

    with pytest.raises(Conflict):
        await clash()
    # The follow-up failed: the first statement was rolled back with it.
    assert await db.fetchrow("SELECT count(*), sum(v = 'b') FROM t", ()) == (2, 0)
    assert rows[0][0] == 1


async def _hold_writer(db: SqliteDatabase, seconds: float) -> asyncio.Future[Any]:
    """Keep the writer thread busy so that what is queued next forms one group."""
    started = threading.Event()

    def hold() -> None:
        started.set()
        time.sleep(seconds)

    held = asyncio.ensure_future(db._write(hold))
    await asyncio.to_thread(started.wait)
    return held


async def test_queued_single_writes_commit_together_each_atomic(db: SqliteDatabase) -> None:
    async def insert(v: str) -> str:
        async with db.transaction(single=True) as tx:
            await tx.execute("INSERT INTO t (v) VALUES (?)", (v,))
        return v

    held = await _hold_writer(db, 0.2)
    # every fifth value is taken twice: those second writes fail alone
    values = [f"g{i}" for i in range(100)] + [f"g{i}" for i in range(0, 100, 5)]
    results = await asyncio.gather(*(insert(v) for v in values), return_exceptions=True)
    await held
    assert sum(isinstance(r, Conflict) for r in results) == 20
    assert results[:100] == values[:100]
    writer = db._side.thread
    assert writer is not None and writer.groups >= 1 and writer.grouped >= 100
    assert await db.fetchrow("SELECT count(*) FROM t WHERE v LIKE 'g%'", ()) == (100,)


async def test_a_failure_that_undoes_the_group_spares_the_others(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.close()
    db = SqliteDatabase(Settings(database_url=f"sqlite:///{path}", statement_timeout=0.2))
    await db.start()
    try:
        async def insert(sql: str) -> None:
            async with db.transaction(single=True) as tx:
                await tx.execute(sql, ())

        slow = ("INSERT INTO t (v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                "FROM n WHERE i < 50000000) SELECT 'slow' FROM n WHERE i = 50000000")
        held = await _hold_writer(db, 0.2)
        sqls = [f"INSERT INTO t (v) VALUES ('q{i}')" for i in range(20)]
        results = await asyncio.gather(*(insert(s) for s in [*sqls[:10], slow, *sqls[10:]]),
                                       return_exceptions=True)
        await held
        # the interrupt rolled the group's transaction back: the ten before it ran again
        assert isinstance(results[10], Timeout)
        assert [r for i, r in enumerate(results) if i != 10] == [None] * 20
        assert db._side.thread is not None and db._side.thread.redone == 10
        assert await db.fetchrow("SELECT count(*), count(DISTINCT v) FROM t", ()) == (20, 20)
    finally:
        await db.close()
