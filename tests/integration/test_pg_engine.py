"""PostgreSQL engine: a connection never goes back to the pool in the middle of an operation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from headwater.config import Settings
from headwater.db.postgres import PostgresDatabase


async def test_a_cancelled_query_does_not_poison_the_pool(fresh_pg_database: str) -> None:
    # One connection: whatever the cancelled request leaves behind, the next one gets.
    db = PostgresDatabase(Settings(database_url=fresh_pg_database, pool_min_size=1,
                                   pool_max_size=1))
    await db.start()
    try:
        for _ in range(3):
            slow = asyncio.ensure_future(db.fetchrow("SELECT pg_sleep(5), 1", ()))
            await asyncio.sleep(0.2)
            slow.cancel()  # as when a client goes away mid-request
            with contextlib.suppress(asyncio.CancelledError):
                await slow
            assert await asyncio.wait_for(db.fetchrow("SELECT 2", ()), 3) == (2,)
    finally:
        await db.close()


async def test_connections_killed_mid_query_fail_as_unavailable_then_recover(
        fresh_pg_database: str) -> None:
    """The server ends every connection while queries run on them (as at a shutdown): those
    fail as unavailable (503), never as anything else, and the pool then serves again."""
    from headwater.errors import DatabaseUnavailable

    db = PostgresDatabase(Settings(database_url=fresh_pg_database, pool_min_size=4,
                                   pool_max_size=4, retry_attempts=0))
    await db.start()
    admin = PostgresDatabase(Settings(database_url=fresh_pg_database, pool_min_size=1,
                                      pool_max_size=1))
    await admin.start()
    try:
        for _ in range(3):
            running = [asyncio.ensure_future(db.fetchrow("SELECT pg_sleep(0.3), 1", ()))
                       for _ in range(4)]
            await asyncio.sleep(0.1)
            await admin.fetchrow("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                                 ())
            outcomes = await asyncio.gather(*running, return_exceptions=True)
            assert all(isinstance(o, DatabaseUnavailable) for o in outcomes), outcomes
            after = await asyncio.gather(*(db.fetchrow("SELECT 2", ()) for _ in range(8)),
                                         return_exceptions=True)
            assert all(a == (2,) or isinstance(a, DatabaseUnavailable) for a in after), after
            assert await db.fetchrow("SELECT 3", ()) == (3,)
    finally:
        await admin.close()
        await db.close()


async def test_a_client_side_timeout_does_not_poison_the_pool(fresh_pg_database: str) -> None:
    """asyncpg's own deadline (statement timeout + 1 s) fires while the server still runs the
    statement: the connection is mid-operation, and must not serve the next request. The
    statement was too expensive, the server is up: one 504, neither retried nor counted
    (issue 16, item 14)."""
    from headwater.errors import Timeout

    db = PostgresDatabase(Settings(database_url=fresh_pg_database, pool_min_size=1,
                                   pool_max_size=1, statement_timeout=0.3, retry_attempts=0))
    await db.start()
    try:
        async def stuck() -> None:
            async with db.transaction() as tx:
                await tx.fetch("SET LOCAL statement_timeout = 0", ())  # the server won't stop it
                await tx.fetch("SELECT pg_sleep(3)", ())

        with pytest.raises(Timeout):
            await stuck()
        assert await asyncio.wait_for(db.fetchrow("SELECT 2", ()), 5) == (2,)
    finally:
        await db.close()
