"""Headwater's own tables, versioned: fresh databases, in-place upgrades, repeats, races.

On SQLite and PostgreSQL alike, each test with a database of its own.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.config import Settings
from headwater.db.connect import open_database
from headwater.db.database import Database
from headwater.db.migrations import MIGRATIONS, migrate
from headwater.events.outbox import Outbox
from headwater.service.api_keys import KeyStore
from tests.conftest import _pg_execute, pg_url_for

TABLES = {"_headwater_outbox", "_headwater_processed", "_headwater_dead_letters",
          "_headwater_leases", "_headwater_api_keys", "_headwater_schema"}
LATEST = [m.version for m in MIGRATIONS]

#: What the versions before migrations ran (``Outbox.ddl`` and ``KeyStore.ensure``), verbatim.
PREVIOUS_OUTBOX_DDL = {
    "postgresql": [
        "SELECT pg_advisory_xact_lock(1752629248, 0)",
        """CREATE TABLE IF NOT EXISTS "public"."_headwater_outbox" (
            seq bigserial PRIMARY KEY, id uuid NOT NULL, tbl text NOT NULL,
            op text NOT NULL, pk json NOT NULL, new json, old json,
            principal json NOT NULL, txid bigint NOT NULL,
            at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz)""",
        'CREATE INDEX IF NOT EXISTS "_headwater_outbox_pending" ON "public"."_headwater_outbox" '
        "(seq) WHERE sent_at IS NULL",
        'CREATE INDEX IF NOT EXISTS "_headwater_outbox_sent" ON "public"."_headwater_outbox" '
        "(sent_at) WHERE sent_at IS NOT NULL",
        """CREATE TABLE IF NOT EXISTS "public"."_headwater_processed" (
            handler text NOT NULL, event_id uuid NOT NULL,
            at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (handler, event_id))""",
        """CREATE TABLE IF NOT EXISTS "public"."_headwater_dead_letters" (
            seq bigserial PRIMARY KEY, queue text NOT NULL, event_id text NOT NULL,
            routing_key text NOT NULL, body text NOT NULL, attempts integer NOT NULL,
            error text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
            replay boolean NOT NULL DEFAULT false)""",
        """CREATE TABLE IF NOT EXISTS "public"."_headwater_leases" (
            name text PRIMARY KEY, holder text NOT NULL,
            until double precision NOT NULL)""",
    ],
    "sqlite": [
        """CREATE TABLE IF NOT EXISTS "_headwater_outbox" (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, tbl TEXT NOT NULL,
            op TEXT NOT NULL, pk TEXT NOT NULL, new TEXT, old TEXT,
            principal TEXT NOT NULL, txid INTEGER NOT NULL, at TEXT NOT NULL,
            sent_at REAL)""",
        'CREATE INDEX IF NOT EXISTS "_headwater_outbox_pending" ON "_headwater_outbox" (seq) '
        "WHERE sent_at IS NULL",
        'CREATE INDEX IF NOT EXISTS "_headwater_outbox_sent" ON "_headwater_outbox" (sent_at) '
        "WHERE sent_at IS NOT NULL",
        """CREATE TABLE IF NOT EXISTS "_headwater_processed" (
            handler TEXT NOT NULL, event_id TEXT NOT NULL, at REAL NOT NULL,
            PRIMARY KEY (handler, event_id)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS "_headwater_dead_letters" (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL,
            event_id TEXT NOT NULL, routing_key TEXT NOT NULL, body TEXT NOT NULL,
            attempts INTEGER NOT NULL, error TEXT NOT NULL, at REAL NOT NULL,
            replay INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE IF NOT EXISTS "_headwater_leases" (
            name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL)""",
    ],
}
PREVIOUS_KEYS_DDL = ("CREATE TABLE IF NOT EXISTS {table} (id VARCHAR(8) PRIMARY KEY, "
                     "name TEXT NOT NULL, role TEXT NOT NULL, key_hash VARCHAR(64) NOT NULL, "
                     "created_at TEXT NOT NULL, last_used_at TEXT, uses BIGINT NOT NULL "
                     "DEFAULT 0, revoked_at TEXT)")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    admin = request.getfixturevalue("pg_admin")
    name = "hw_migrations_" + secrets.token_hex(4)
    asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield pg_url_for(name)
    finally:
        asyncio.run(_pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db(url: str) -> AsyncIterator[Database]:
    database = open_database(Settings(database_url=url))
    await database.start()
    try:
        yield database
    finally:
        await database.close()


async def rows(db: Database, sql: str, *params: object) -> list[tuple[Any, ...]]:
    if db.dialect == "sqlite":
        sql = sql.replace("$1", "?1")
    async with db.transaction(rollback=True) as tx:
        return [tuple(r) for r in await tx.fetch(sql, params)]


async def tables(db: Database) -> set[str]:
    sql = ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
           if db.dialect == "postgresql" else
           "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in await rows(db, sql)}


async def indexes(db: Database) -> set[str]:
    sql = ("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
           if db.dialect == "postgresql" else
           "SELECT name FROM sqlite_master WHERE type = 'index'")
    return {r[0] for r in await rows(db, sql) if r[0].startswith("_headwater")}


async def versions(db: Database) -> list[tuple[Any, ...]]:
    return await rows(db, 'SELECT version, name, applied_at FROM "_headwater_schema" '
                          "ORDER BY version")


async def run(db: Database, *statements: str) -> None:
    async with db.transaction() as tx:
        for sql in statements:
            await tx.fetch(sql, ())


async def test_a_fresh_database_gets_every_table_and_a_row_per_version(db: Database) -> None:
    assert await migrate(db) == LATEST
    assert await tables(db) >= TABLES
    assert await indexes(db) >= {"_headwater_outbox_pending", "_headwater_outbox_sent"}
    recorded = await versions(db)
    assert [(v, n) for v, n, _ in recorded] == [(m.version, m.name) for m in MIGRATIONS]
    assert all(at is not None for _, _, at in recorded)


async def test_migrating_again_is_a_no_op(db: Database) -> None:
    await migrate(db)
    before = await versions(db), await tables(db)
    assert await migrate(db) == []
    assert await migrate(db) == []
    assert (await versions(db), await tables(db)) == before


@pytest.mark.parametrize("keys", [True, False], ids=["with-keys", "events-only"])
async def test_a_database_of_the_previous_version_upgrades_in_place(db: Database,
                                                                   keys: bool) -> None:
    pg = db.dialect == "postgresql"
    await run(db, "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)",
              "INSERT INTO orders VALUES (1, 'mine')")
    await run(db, *PREVIOUS_OUTBOX_DDL[db.dialect])
    if keys:  # a server that never made a key has no key table
        await run(db, PREVIOUS_KEYS_DDL.format(table='"public"."_headwater_api_keys"' if pg
                                               else '"_headwater_api_keys"'))
        await run(db, "INSERT INTO _headwater_api_keys (id, name, role, key_hash, created_at) "
                      "VALUES ('0badcafe', 'ci', 'reader', 'h', '2024-01-01T00:00:00')")
    at = "" if pg else ", at"
    now = "" if pg else ", '2024-01-01T00:00:00Z'"
    await run(db, *(f"INSERT INTO _headwater_outbox (id, tbl, op, pk, new, principal, txid{at}) "
                    f"VALUES ('{u}', 'orders', 'insert', '{{\"id\": {i}}}', '{{\"id\": {i}}}', "
                    f"'{{\"role\": \"anonymous\"}}', 7{now})"
                    for i, u in enumerate(["6f1c4c0e-1d2e-4c1a-9d55-3f2f0a1b2c3d",
                                           "0e7a3d2b-5b6c-4f7e-8a9b-1c2d3e4f5a6b"], 1)))
    outbox_sql = "SELECT seq, id, tbl, op, pk, new, sent_at FROM _headwater_outbox ORDER BY seq"
    outbox_before = await rows(db, outbox_sql)
    assert len(outbox_before) == 2

    assert await migrate(db) == LATEST
    assert await tables(db) >= TABLES
    assert await rows(db, outbox_sql) == outbox_before  # kept, untouched
    assert await rows(db, "SELECT id, note FROM orders") == [(1, "mine")]
    assert [v for v, _, _ in await versions(db)] == LATEST
    key_rows = await rows(db, "SELECT id, role FROM _headwater_api_keys")
    assert key_rows == ([("0badcafe", "reader")] if keys else [])
    # and the outbox goes on from where it was
    await run(db, f"INSERT INTO _headwater_outbox (id, tbl, op, pk, principal, txid{at}) "
                  f"VALUES ('1a2b3c4d-1d2e-4c1a-9d55-3f2f0a1b2c3d', 'orders', 'delete', "
                  f"'{{\"id\": 1}}', '{{}}', 8{now})")
    assert [r[0] for r in await rows(db, outbox_sql)] == [1, 2, 3]
    assert await migrate(db) == []


async def test_two_processes_starting_at_once_apply_each_migration_once(url: str) -> None:
    # Two Database objects: two pools (PostgreSQL), two writer connections (SQLite), as two
    # processes would have.
    dbs = [open_database(Settings(database_url=url)) for _ in range(2)]
    for d in dbs:
        await d.start()
    try:
        applied = await asyncio.gather(*(migrate(d) for d in dbs))
        assert sorted(v for a in applied for v in a) == LATEST
        assert [v for v, _, _ in await versions(dbs[0])] == LATEST
    finally:
        for d in dbs:
            await d.close()


async def test_the_stores_create_their_tables_through_the_migrations(db: Database) -> None:
    await KeyStore(db).create("reader", "ci")
    assert [v for v, _, _ in await versions(db)] == LATEST
    outbox = Outbox(Settings(), db.dialect, db.schema)
    await outbox.ensure(db)
    assert outbox.ready and await outbox.pending(db) == 0
    assert [v for v, _, _ in await versions(db)] == LATEST
