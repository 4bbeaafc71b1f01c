"""Headwater's own tables, versioned: ordered migrations, applied at start.

Every table Headwater owns is ``_headwater_*`` (the catalog never serves them). Which of these
migrations a database has had is kept in ``_headwater_schema``, one row per migration applied
(version, name, applied_at). ``migrate`` applies the missing ones in version order, each in
its own transaction, and is safe when several processes start at once: on PostgreSQL each
transaction first takes an advisory lock (the key the DDL of the versions before migrations
took, so an older node creating its tables waits too), on SQLite it begins with
``BEGIN IMMEDIATE`` (``Database.transaction``), so one writer at a time. Migrations only
create or change Headwater's own tables, never a user's.

Migration 1 is the DDL of the versions before migrations, statement for statement: each is
``IF NOT EXISTS``, so on a database they made it adds only what is missing (the API-key table
of a server that never made a key, say), leaves the existing tables and their rows as they
are, and records version 1. A migration's SQL is history: never edit one that has shipped,
add the next.
"""

from __future__ import annotations

from dataclasses import dataclass

from headwater.db.database import Database, Transaction

SCHEMA = "_headwater_schema"
#: Headwater's advisory locks on PostgreSQL: ``(LOCK_SPACE, 0)`` for its schema (here),
#: ``(LOCK_SPACE + 1, a table's hash)`` for the relay (``headwater.events.outbox``).
LOCK_SPACE = 0x68770000


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    #: Statements per dialect; ``{p}`` stands for the schema prefix (``"public".``, or nothing
    #: on SQLite).
    postgresql: tuple[str, ...]
    sqlite: tuple[str, ...]

    def statements(self, db: Database) -> list[str]:
        prefix = _prefix(db)
        return [s.replace("{p}", prefix)
                for s in (self.postgresql if db.dialect == "postgresql" else self.sqlite)]


_API_KEYS = ('CREATE TABLE IF NOT EXISTS {p}"_headwater_api_keys" (id VARCHAR(8) PRIMARY KEY, '
             "name TEXT NOT NULL, role TEXT NOT NULL, key_hash VARCHAR(64) NOT NULL, "
             "created_at TEXT NOT NULL, last_used_at TEXT, uses BIGINT NOT NULL DEFAULT 0, "
             "revoked_at TEXT)")

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "outbox, processed ids, dead letters, leases, API keys",
        postgresql=(
            """CREATE TABLE IF NOT EXISTS {p}"_headwater_outbox" (
                    seq bigserial PRIMARY KEY, id uuid NOT NULL, tbl text NOT NULL,
                    op text NOT NULL, pk json NOT NULL, new json, old json,
                    principal json NOT NULL, txid bigint NOT NULL,
                    at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz)""",
            'CREATE INDEX IF NOT EXISTS "_headwater_outbox_pending" ON {p}"_headwater_outbox" '
            "(seq) WHERE sent_at IS NULL",
            'CREATE INDEX IF NOT EXISTS "_headwater_outbox_sent" ON {p}"_headwater_outbox" '
            "(sent_at) WHERE sent_at IS NOT NULL",
            """CREATE TABLE IF NOT EXISTS {p}"_headwater_processed" (
                    handler text NOT NULL, event_id uuid NOT NULL,
                    at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (handler, event_id))""",
            """CREATE TABLE IF NOT EXISTS {p}"_headwater_dead_letters" (
                    seq bigserial PRIMARY KEY, queue text NOT NULL, event_id text NOT NULL,
                    routing_key text NOT NULL, body text NOT NULL, attempts integer NOT NULL,
                    error text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
                    replay boolean NOT NULL DEFAULT false)""",
            """CREATE TABLE IF NOT EXISTS {p}"_headwater_leases" (
                    name text PRIMARY KEY, holder text NOT NULL,
                    until double precision NOT NULL)""",
            _API_KEYS,
        ),
        sqlite=(
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
            _API_KEYS,
        ),
    ),
)


def _prefix(db: Database) -> str:
    return f'"{db.schema}".' if db.dialect == "postgresql" and db.schema else ""


async def _applied(tx: Transaction, db: Database) -> set[int]:
    """Take the migration lock for ``tx`` and read the versions applied (creating the table
    that lists them, the first time)."""
    table = _prefix(db) + f'"{SCHEMA}"'
    if db.dialect == "postgresql":
        await tx.fetch(f"SELECT pg_advisory_xact_lock({LOCK_SPACE}, 0)", ())
        await tx.fetch(f"CREATE TABLE IF NOT EXISTS {table} (version integer PRIMARY KEY, "
                       f"name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())", ())
    else:  # the transaction's BEGIN IMMEDIATE is the lock
        await tx.fetch(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, "
                       f"name TEXT NOT NULL, applied_at TEXT NOT NULL "
                       f"DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))", ())
    return {int(r[0]) for r in await tx.fetch(f"SELECT version FROM {table}", ())}


async def is_current(db: Database) -> bool:
    """Has ``db`` every migration? Only reads: serving a database creates Headwater's tables
    when a feature first needs them (``migrate``), never merely to look."""
    async with db.transaction() as tx:
        if db.dialect == "postgresql":
            found = await tx.fetch("SELECT to_regclass($1) IS NOT NULL",
                                   (_prefix(db) + f'"{SCHEMA}"',))
        else:
            found = await tx.fetch("SELECT count(*) > 0 FROM sqlite_master WHERE type = "
                                   "'table' AND name = ?", (SCHEMA,))
        if not found[0][0]:
            return False
        applied = {int(r[0]) for r in
                   await tx.fetch(f"SELECT version FROM {_prefix(db)}\"{SCHEMA}\"", ())}
    return all(m.version in applied for m in MIGRATIONS)


async def migrate(db: Database) -> list[int]:
    """Apply the migrations ``db`` lacks, in order, each in a transaction of its own; returns
    the versions this call applied (none when the database is up to date). Another process
    migrating at the same time waits, then finds the work done."""
    done: list[int] = []
    table = _prefix(db) + f'"{SCHEMA}"'
    p = "$" if db.dialect == "postgresql" else "?"
    while True:
        async with db.transaction() as tx:
            applied = await _applied(tx, db)
            todo = next((m for m in MIGRATIONS if m.version not in applied), None)
            if todo is None:
                return done
            for sql in todo.statements(db):
                await tx.fetch(sql, ())
            await tx.fetch(f"INSERT INTO {table} (version, name) VALUES ({p}1, {p}2)",
                           (todo.version, todo.name))
        done.append(todo.version)
