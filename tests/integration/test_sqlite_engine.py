"""SQLite engine: reads tried on the loop's thread, every write on one writer thread."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from headwater.config import Settings
from headwater.db.engine import SqliteDatabase
from headwater.errors import Conflict


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
    assert inline is not None and SLOW in inline.slow  # next time straight to the pool
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
