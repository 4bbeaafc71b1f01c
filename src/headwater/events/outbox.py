"""The outbox: one row per written row, recorded in the write's own transaction.

A write's events commit or roll back with the write (invariant 3), at the least cost:

* PostgreSQL: the write statement records them itself, wrapped in a data-modifying CTE
  (``with_events``): no extra statement, no extra round trip.
* SQLite, rows that hooks and RPC functions ``emit``, and updates whose old rows are asked
  for: buffered, then recorded by one more statement at the end of the transaction, whatever
  their number (typed arrays through ``unnest`` on PostgreSQL, one JSON array through
  ``json_each`` on SQLite, as the bulk inserts of ``headwater.db.dml``).

Rows are kept as ``json`` (text), not ``jsonb``: a ``json`` column may hold a NUL character
in a string, which ``jsonb`` refuses, and nothing here needs ``jsonb``'s operators. ``seq`` (a
bigserial / INTEGER PRIMARY KEY) orders them. The relay's side is here too: claim pending rows
(``FOR UPDATE SKIP LOCKED`` plus a per-table advisory lock on PostgreSQL, so several nodes
share the work yet each table's rows go out in order from one node at a time; a lease row on
SQLite), mark them sent, prune, count. The worker's processed-ids table and the embedded
dead-letter table live here as well: every table Headwater owns is ``_headwater_*``, which
the catalog never serves.
"""

from __future__ import annotations

import functools
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from headwater.config import Settings
from headwater.db.database import TAG_TABLE, Database, Tag, Transaction
from headwater.db.dml import sqlite_row_object
from headwater.db.sql import ident, literal
from headwater.events.event import Operation, topic_matches
from headwater.model.catalog import Catalog
from headwater.model.plan import TargetColumn, target_columns

OUTBOX = "_headwater_outbox"
PROCESSED = "_headwater_processed"
DEAD_LETTERS = "_headwater_dead_letters"
LEASES = "_headwater_leases"
_OPERATIONS: tuple[Operation, ...] = ("insert", "update", "delete")
#: First key of every advisory lock Headwater takes (the second is the table's hash).
_LOCK_SPACE = 0x68770000


class _Record(msgspec.Struct, omit_defaults=True):
    """One event as the bulk insert takes it (short keys: SQLite reads them from JSON)."""

    id: str
    t: str
    o: str
    k: dict[str, Any]
    n: dict[str, Any] | None = None
    b: dict[str, Any] | None = None


_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Claimed:
    """A pending outbox row, with its message body built by the database."""

    seq: int
    table: str
    op: str
    id: str
    body: bytes

    @property
    def routing_key(self) -> str:
        return f"{self.table}.{self.op}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    queue: str
    id: str
    routing_key: str
    body: bytes
    attempts: int
    error: str


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


class Outbox:
    """SQL for the outbox and its sibling tables, for one database; filters from settings."""

    def __init__(self, settings: Settings, dialect: str, schema: str | None) -> None:
        self.settings = settings
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        self.enabled = settings.events_enabled
        self._include = _csv(settings.events_include)
        self._exclude = _csv(settings.events_exclude)
        old = _csv(settings.events_old_rows)
        self._old_all = "*" in old
        self._old = frozenset(old)
        self._wants: dict[tuple[str, str], bool] = {}
        self.ready = False
        #: Called after a transaction with events commits (the relay's wake-up).
        self.listeners: list[Callable[[], None]] = []
        #: SQLite: the (table, operation) pairs whose TEMP triggers are installed
        #: (``install_triggers``): a tagged write to them records its own events.
        self.triggered: frozenset[tuple[str, str]] = frozenset()
        prefix = f'"{schema}".' if self.pg and schema else ""
        self.outbox = prefix + f'"{OUTBOX}"'
        self.processed = prefix + f'"{PROCESSED}"'
        self.dead_letters = prefix + f'"{DEAD_LETTERS}"'
        self.leases = prefix + f'"{LEASES}"'
        self._record_sql = self._compile_record()
        # SQLite's transaction ids: random (several processes write one file), from a
        # generator seeded once, not a system call per transaction.
        self._txids = random.Random(secrets.randbits(64))

    # --- settings -----------------------------------------------------------------------------

    def wants(self, table: str, op: Operation) -> bool:
        """Whether writes of ``op`` to ``table`` are recorded (cached per pair)."""
        key = (table, op)
        hit = self._wants.get(key)
        if hit is None:
            topic = f"{table}.{op}"
            hit = self._wants[key] = self.enabled and any(
                topic_matches(p, topic) for p in self._include) and not any(
                topic_matches(p, topic) for p in self._exclude)
        return hit

    def wants_old(self, table: str) -> bool:
        return self.wants(table, "update") and (self._old_all or table in self._old)

    def next_txid(self) -> int:
        return self._txids.getrandbits(62)

    def committed(self) -> None:
        for listener in self.listeners:
            listener()

    # --- schema -------------------------------------------------------------------------------

    def ddl(self) -> list[str]:
        if self.pg:
            return [
                f"SELECT pg_advisory_xact_lock({_LOCK_SPACE}, 0)",
                f"""CREATE TABLE IF NOT EXISTS {self.outbox} (
                    seq bigserial PRIMARY KEY, id uuid NOT NULL, tbl text NOT NULL,
                    op text NOT NULL, pk json NOT NULL, new json, old json,
                    principal json NOT NULL, txid bigint NOT NULL,
                    at timestamptz NOT NULL DEFAULT now(), sent_at timestamptz)""",
                f'CREATE INDEX IF NOT EXISTS "{OUTBOX}_pending" ON {self.outbox} (seq) '
                f"WHERE sent_at IS NULL",
                f'CREATE INDEX IF NOT EXISTS "{OUTBOX}_sent" ON {self.outbox} (sent_at) '
                f"WHERE sent_at IS NOT NULL",
                f"""CREATE TABLE IF NOT EXISTS {self.processed} (
                    handler text NOT NULL, event_id uuid NOT NULL,
                    at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (handler, event_id))""",
                f"""CREATE TABLE IF NOT EXISTS {self.dead_letters} (
                    seq bigserial PRIMARY KEY, queue text NOT NULL, event_id text NOT NULL,
                    routing_key text NOT NULL, body text NOT NULL, attempts integer NOT NULL,
                    error text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
                    replay boolean NOT NULL DEFAULT false)""",
                f"""CREATE TABLE IF NOT EXISTS {self.leases} (
                    name text PRIMARY KEY, holder text NOT NULL,
                    until double precision NOT NULL)""",
            ]
        return [
            f"""CREATE TABLE IF NOT EXISTS {self.outbox} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, tbl TEXT NOT NULL,
                op TEXT NOT NULL, pk TEXT NOT NULL, new TEXT, old TEXT,
                principal TEXT NOT NULL, txid INTEGER NOT NULL, at TEXT NOT NULL,
                sent_at REAL)""",
            f'CREATE INDEX IF NOT EXISTS "{OUTBOX}_pending" ON {self.outbox} (seq) '
            f"WHERE sent_at IS NULL",
            f'CREATE INDEX IF NOT EXISTS "{OUTBOX}_sent" ON {self.outbox} (sent_at) '
            f"WHERE sent_at IS NOT NULL",
            f"""CREATE TABLE IF NOT EXISTS {self.processed} (
                handler TEXT NOT NULL, event_id TEXT NOT NULL, at REAL NOT NULL,
                PRIMARY KEY (handler, event_id)) WITHOUT ROWID""",
            f"""CREATE TABLE IF NOT EXISTS {self.dead_letters} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL,
                event_id TEXT NOT NULL, routing_key TEXT NOT NULL, body TEXT NOT NULL,
                attempts INTEGER NOT NULL, error TEXT NOT NULL, at REAL NOT NULL,
                replay INTEGER NOT NULL DEFAULT 0)""",
            f"""CREATE TABLE IF NOT EXISTS {self.leases} (
                name TEXT PRIMARY KEY, holder TEXT NOT NULL, until REAL NOT NULL)""",
        ]

    async def ensure(self, db: Database) -> None:
        """Create the tables if missing (idempotent, safe from several nodes at once)."""
        async with db.transaction() as tx:
            for sql in self.ddl():
                await tx.fetch(sql, ())
        self.ready = True

    # --- recording (the write path) -----------------------------------------------------------

    async def install_triggers(self, db: Database, catalog: Catalog) -> None:
        """SQLite: TEMP triggers on the writer connection through which a write statement
        records its own events, as PostgreSQL's ``with_events`` does: one statement per write
        again, where a second one (events made from the returned rows) cost the writer
        thread twice as many trips through the GIL. A trigger fires only for a statement
        tagged with its table and operation (``headwater.db.database.Tag``), so writes by hooks,
        RPC functions and cascades stay theirs to ``emit``, on both databases alike. Run
        again with each catalog load: a trigger names the table's columns."""
        if self.pg or not self.enabled:
            return
        if not self.ready:
            await self.ensure(db)
        ddl: list[str] = []
        pairs: set[tuple[str, str]] = set()
        for table in catalog.tables.values():
            if table.is_view:
                continue
            for op in _OPERATIONS:
                if self.wants(table.name, op):
                    ddl.append(self._trigger(table.name, op, target_columns(table),
                                             table.primary_key))
                    pairs.add((table.name, op))
        self.triggered = frozenset()  # until they exist
        await db.install_session(ddl)
        self.triggered = frozenset(pairs)

    def _trigger(self, table: str, op: Operation, cols: Sequence[TargetColumn],
                 key: Sequence[str]) -> str:
        row = "OLD" if op == "delete" else "NEW"
        by_name = {c.name: c for c in cols}
        pk = sqlite_row_object(row, [by_name[k] for k in key]) if key else "'{}'"
        new = "NULL" if op == "delete" else sqlite_row_object("NEW", cols)
        old = (sqlite_row_object("OLD", cols)
               if op == "delete" or (op == "update" and self.wants_old(table)) else "NULL")
        name = ident(f"_headwater_event_{op}_{table}")
        return (f"CREATE TEMP TRIGGER {name} AFTER {op.upper()} ON main.{ident(table)} "
                f"WHEN (SELECT tbl = {literal(table)} AND op = {literal(op)} FROM {TAG_TABLE}) "
                f"BEGIN INSERT INTO {ident(OUTBOX)} "
                f"(id, tbl, op, pk, new, old, principal, txid, at) "
                f"SELECT {_SQLITE_UUID4}, tbl, op, {pk}, {new}, {old}, principal, txid, "
                f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM {TAG_TABLE}; END")

    def triggers(self, table: str, op: Operation) -> bool:
        """Does a tagged write of ``op`` to ``table`` record its events itself (SQLite)?"""
        return (table, op) in self.triggered

    def _compile_record(self) -> str:
        if self.pg:
            # Typed arrays, not one JSON document: PostgreSQL cannot take a field out of JSON
            # holding \u0000, which a json column may.
            return (f"INSERT INTO {self.outbox} (id, tbl, op, pk, new, old, principal, txid) "
                    f"SELECT u.id, u.tbl, u.op, u.pk, u.new, u.old, $7::json, txid_current() "
                    f"FROM unnest($1::uuid[], $2::text[], $3::text[], $4::json[], $5::json[], "
                    f"$6::json[]) WITH ORDINALITY AS u(id, tbl, op, pk, new, old, n) "
                    f"ORDER BY u.n")
        pick = "json_extract(value, '$.{}')".format
        return (f"INSERT INTO {self.outbox} (id, tbl, op, pk, new, old, principal, txid, at) "
                f"SELECT {pick('id')}, {pick('t')}, {pick('o')}, {pick('k')}, {pick('n')}, "
                f"{pick('b')}, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                f"FROM json_each(?1) ORDER BY key")

    def rows_statement(self, table: str, op: Operation, key: Sequence[str], rows: str,
                       principal: str, txid: int) -> tuple[str, list[object]]:
        """SQLite: the events of a write's returned rows (``rows``: their JSON texts as one
        JSON array), made by SQLite itself: ids, keys and bodies with no per-row Python."""
        return _sqlite_rows_events(self.outbox, op, tuple(key)), [rows, table, op, principal,
                                                                   txid]

    def with_events(self, sql: str, n_params: int, op: Operation, key: Sequence[str], *,
                    count: bool = False) -> str:
        """PostgreSQL: ``sql`` (a write returning its rows, ``rows=True`` in
        ``headwater.db.dml``) wrapped so that the same statement records one event per row
        and still returns one JSON text per row: no extra round trip. Three more parameters
        follow the statement's own: the table's name, ``op`` and the principal as JSON.
        ``count=True``: one row with the number of rows written instead."""
        return _events_cte(self.outbox, sql, n_params, op, tuple(key), count)

    async def record(self, tx: Transaction, records: Sequence[_Record],
                     principal: Mapping[str, Any] | str, txid: int, *,
                     last: bool = False) -> None:
        """One statement for all of a transaction's events; ``last``: nothing follows it in
        the transaction (``Transaction.last``)."""
        if not records:
            return
        sql, params = self.record_statement(records, principal, txid)
        if last:
            await tx.last(sql, params)
        else:
            await tx.fetch(sql, params)

    def record_statement(self, records: Sequence[_Record], principal: Mapping[str, Any] | str,
                         txid: int) -> tuple[str, list[object]]:
        """The one statement that records ``records`` (see ``record``). ``txid``: SQLite has
        no transaction id, so one transaction's statements pass the same random one."""
        who = principal if isinstance(principal, str) else _encode(principal).decode()
        params: list[object]
        if self.pg:
            def js(v: dict[str, Any] | None) -> str | None:
                return None if v is None else _encode(v).decode()

            params = [[r.id for r in records], [r.t for r in records], [r.o for r in records],
                      [_encode(r.k).decode() for r in records], [js(r.n) for r in records],
                      [js(r.b) for r in records], who]
        else:
            params = [_encode(records).decode(), who, txid]
        return self._record_sql, params

    # --- relay --------------------------------------------------------------------------------

    def _body_sql(self) -> str:
        if self.pg:
            return ("json_build_object('id', id, 'seq', seq, 'table', tbl, 'op', op, 'pk', pk, "
                    "'new', new, 'old', old, 'principal', principal, 'txid', txid, "
                    "'at', at)::text")
        return ("json_object('id', id, 'seq', seq, 'table', tbl, 'op', op, 'pk', json(pk), "
                "'new', json(new), 'old', json(old), 'principal', json(principal), "
                "'txid', txid, 'at', at)")

    async def claim(self, tx: Transaction, limit: int) -> list[Claimed]:
        """Pending rows in ``seq`` order, locked until ``tx`` ends (PostgreSQL): a table
        another node is publishing is skipped whole, so its order holds."""
        sql = (f"SELECT seq, tbl, op, id::text, {self._body_sql()} FROM {self.outbox} "
               f"WHERE sent_at IS NULL AND pg_try_advisory_xact_lock({_LOCK_SPACE + 1}, "
               f"hashtext(tbl)) ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED")
        rows = await tx.fetch(sql, (limit,))
        return [Claimed(int(r[0]), r[1], r[2], r[3], r[4].encode()) for r in rows]

    async def claim_unlocked(self, db: Database, limit: int) -> list[Claimed]:
        """Pending rows in ``seq`` order, read without locks (SQLite, under the relay lease)."""
        sql = (f"SELECT seq, tbl, op, id, {self._body_sql()} FROM {self.outbox} "
               f"WHERE sent_at IS NULL ORDER BY seq LIMIT ?1")
        async with db.snapshot() as snap:
            rows = [r async for chunk in snap.chunks(sql, (limit,), limit) for r in chunk]
        return [Claimed(int(r[0]), r[1], r[2], r[3], r[4].encode()) for r in rows]

    async def mark_sent(self, tx: Transaction, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        if self.pg:
            await tx.fetch(f"UPDATE {self.outbox} SET sent_at = now() "
                           f"WHERE seq = ANY($1::bigint[])", (list(seqs),))
        else:
            await tx.execute(f"UPDATE {self.outbox} SET sent_at = ?1 WHERE seq IN "
                             f"(SELECT value FROM json_each(?2))",
                             (time.time(), _encode(list(seqs)).decode()))

    async def mark_pending_sent(self, tx: Transaction, limit: int) -> int:
        """Mark up to ``limit`` pending rows sent without reading them (nothing consumes)."""
        if self.pg:
            rows = await tx.fetch(
                f"UPDATE {self.outbox} SET sent_at = now() WHERE seq IN (SELECT seq FROM "
                f"{self.outbox} WHERE sent_at IS NULL ORDER BY seq LIMIT $1 "
                f"FOR UPDATE SKIP LOCKED) RETURNING 1", (limit,))
            return len(rows)
        return await tx.execute(
            f"UPDATE {self.outbox} SET sent_at = ?1 WHERE seq IN (SELECT seq FROM "
            f"{self.outbox} WHERE sent_at IS NULL ORDER BY seq LIMIT ?2)", (time.time(), limit))

    async def lease(self, tx: Transaction, name: str, holder: str, seconds: float) -> bool:
        """Take or renew a named lease; True while ``holder`` has it."""
        now = time.time()
        p = "$" if self.pg else "?"
        rows = await tx.fetch(
            f"INSERT INTO {self.leases} AS l (name, holder, until) VALUES ({p}1, {p}2, {p}3) "
            f"ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until "
            f"WHERE l.until < {p}4 OR l.holder = excluded.holder RETURNING holder",
            (name, holder, now + seconds, now))
        return bool(rows)

    async def pending(self, db: Database) -> int:
        row = await db.fetchrow(f"SELECT count(*) FROM {self.outbox} WHERE sent_at IS NULL", ())
        return int(row[0])

    async def prune(self, db: Database) -> int:
        """Delete sent rows and processed ids older than the retention period."""
        keep = self.settings.outbox_retention
        async with db.transaction() as tx:
            if self.pg:
                gone = await tx.fetch(
                    f"DELETE FROM {self.outbox} WHERE sent_at < now() - make_interval(secs => $1)"
                    f" RETURNING 1", (keep,))
                await tx.fetch(f"DELETE FROM {self.processed} "
                               f"WHERE at < now() - make_interval(secs => $1)", (keep,))
            else:
                cutoff = time.time() - keep
                gone = await tx.fetch(f"DELETE FROM {self.outbox} WHERE sent_at < ?1 "
                                      f"RETURNING 1", (cutoff,))
                await tx.fetch(f"DELETE FROM {self.processed} WHERE at < ?1", (cutoff,))
        return len(gone)

    # --- processed ids (workers) --------------------------------------------------------------

    async def claim_processed(self, tx: Transaction, handler: str, event_id: str) -> bool:
        """Insert ``(handler, event_id)``; False if it was already there. On PostgreSQL a
        concurrent duplicate waits on the key until this transaction ends."""
        if self.pg:
            rows = await tx.fetch(f"INSERT INTO {self.processed} (handler, event_id) "
                                  f"VALUES ($1, $2::uuid) ON CONFLICT DO NOTHING RETURNING 1",
                                  (handler, event_id))
        else:
            rows = await tx.fetch(f"INSERT INTO {self.processed} (handler, event_id, at) "
                                  f"VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING RETURNING 1",
                                  (handler, event_id, time.time()))
        return bool(rows)

    async def was_processed(self, db: Database, handler: str, event_id: str) -> bool:
        p = "$" if self.pg else "?"
        cast = "::uuid" if self.pg else ""
        row = await db.fetchrow(f"SELECT count(*) FROM {self.processed} "
                                f"WHERE handler = {p}1 AND event_id = {p}2{cast}",
                                (handler, event_id))
        return bool(row[0])

    # --- dead letters (embedded mode) ---------------------------------------------------------

    async def add_dead_letter(self, db: Database, letter: DeadLetter) -> None:
        async with db.transaction() as tx:
            if self.pg:
                await tx.fetch(f"INSERT INTO {self.dead_letters} (queue, event_id, routing_key, "
                               f"body, attempts, error) VALUES ($1, $2, $3, $4, $5, $6)",
                               (letter.queue, letter.id, letter.routing_key,
                                letter.body.decode(), letter.attempts, letter.error))
            else:
                await tx.fetch(f"INSERT INTO {self.dead_letters} (queue, event_id, routing_key, "
                               f"body, attempts, error, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                               (letter.queue, letter.id, letter.routing_key,
                                letter.body.decode(), letter.attempts, letter.error,
                                time.time()))

    async def list_dead_letters(self, db: Database, queue: str | None = None,
                                *, replay: bool = False) -> list[DeadLetter]:
        """Dead letters (of one queue), oldest first; ``replay=True`` only those asked for."""
        p = "$" if self.pg else "?"
        where = [f"replay = {p}1"]
        params: list[object] = [replay if self.pg else int(replay)]
        if queue is not None:
            where.append(f"queue = {p}2")
            params.append(queue)
        async with db.transaction(rollback=True) as tx:
            rows = await tx.fetch(f"SELECT queue, event_id, routing_key, body, attempts, error "
                                  f"FROM {self.dead_letters} WHERE {' AND '.join(where)} "
                                  f"ORDER BY seq", params)
        return [DeadLetter(r[0], r[1], r[2], r[3].encode(), int(r[4]), r[5]) for r in rows]

    async def request_replay(self, db: Database, queue: str | None = None) -> int:
        """Flag dead letters for the running server to deliver again; returns how many."""
        p = "$" if self.pg else "?"
        true = "true" if self.pg else "1"
        where, params = ("", []) if queue is None else (f" AND queue = {p}1", [queue])
        async with db.transaction() as tx:
            rows = await tx.fetch(f"UPDATE {self.dead_letters} SET replay = {true} "
                                  f"WHERE NOT replay{where} RETURNING 1", params)
        return len(rows)

    async def replays_pending(self, db: Database) -> int:
        true = "true" if self.pg else "1"
        row = await db.fetchrow(f"SELECT count(*) FROM {self.dead_letters} WHERE replay = {true}",
                                ())
        return int(row[0])

    async def take_replays(self, db: Database, queue: str | None = None) -> list[DeadLetter]:
        """Remove and return the dead letters flagged for replay (of one queue)."""
        p = "$" if self.pg else "?"
        where, params = ("", []) if queue is None else (f" AND queue = {p}1", [queue])
        async with db.transaction() as tx:
            rows = await tx.fetch(f"DELETE FROM {self.dead_letters} WHERE replay{where} "
                                  f"RETURNING queue, event_id, routing_key, body, attempts, "
                                  f"error, seq", params)
        rows.sort(key=lambda r: int(r[6]))
        return [DeadLetter(r[0], r[1], r[2], r[3].encode(), int(r[4]), r[5]) for r in rows]


_SQLITE_UUID4 = ("lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
                 "substr(lower(hex(randomblob(2))), 2) || '-' || "
                 "substr('89ab', 1 + abs(random()) % 4, 1) || "
                 "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6)))")


@functools.lru_cache(maxsize=1024)
def _sqlite_rows_events(outbox: str, op: Operation, key: tuple[str, ...]) -> str:
    pk = ("json_object(" + ", ".join(
        f"{literal(k)}, json_quote(json_extract(value, {literal('$.' + _json_key(k))}))"
        for k in key) + ")") if key else "'{}'"
    new, old = ("NULL", "value") if op == "delete" else ("value", "NULL")
    return (f"INSERT INTO {outbox} (id, tbl, op, pk, new, old, principal, txid, at) "
            f"SELECT {_SQLITE_UUID4}, ?2, ?3, {pk}, {new}, {old}, ?4, ?5, "
            f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM json_each(?1) ORDER BY key")


def _json_key(name: str) -> str:
    """A JSON path member for ``name``, quoted as SQLite's path syntax wants."""
    return '"' + name.replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=1024)
def _events_cte(outbox: str, sql: str, n: int, op: Operation, key: tuple[str, ...],
                count: bool = False) -> str:
    pk = ("json_build_object(" + ", ".join(f"{literal(k)}, w.{ident(k)}" for k in key) + ")"
          if key else "'{}'::json")
    new, old = ("NULL", "to_json(w)") if op == "delete" else ("to_json(w)", "NULL")
    return (f"WITH w AS ({sql}), e AS (INSERT INTO {outbox} "
            f"(id, tbl, op, pk, new, old, principal, txid) "
            f"SELECT gen_random_uuid(), ${n + 1}, ${n + 2}, {pk}, {new}, {old}, ${n + 3}::json, "
            f"txid_current() FROM w) SELECT "
            + ("count(*)::int" if count else "to_json(w)::text") + " FROM w")


@dataclass(slots=True)
class EventBuffer:
    """A transaction's events, collected as it runs and recorded by one ``flush``."""

    outbox: Outbox
    principal: Mapping[str, Any]
    #: Where ``emit`` finds a table's primary key.
    catalog: Catalog | None = None
    records: list[_Record] = field(default_factory=list)
    #: ``principal`` as JSON text, the parameter ``Outbox.with_events`` statements take.
    principal_text: str = field(init=False, default="")
    #: Set when a write statement recorded events itself (``Outbox.with_events``).
    inline: bool = False
    #: The transaction id SQLite's statements record (PostgreSQL uses its own).
    txid: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.principal_text = _encode(self.principal).decode()
        self.txid = self.outbox.next_txid()

    def emit(self, table: str, op: Operation, new: Mapping[str, Any] | None = None,
             old: Mapping[str, Any] | None = None) -> None:
        """A row written by hand-written SQL (hooks, RPC), keyed by the catalog's key."""
        known = self.catalog.table(table) if self.catalog is not None else None
        self.add(table, op, known.primary_key if known is not None else (), new, old)

    def add(self, table: str, op: Operation, key: Sequence[str],
            new: Mapping[str, Any] | None = None, old: Mapping[str, Any] | None = None) -> None:
        """One written row; ``key`` names the primary-key columns, read from ``new or old``."""
        if not self.outbox.wants(table, op):
            return
        row = new if new is not None else old
        if row is None:
            raise ValueError("an event needs the new row, the old row, or both")
        self.records.append(_Record(str(uuid.uuid4()), table, op,
                                    {k: row.get(k) for k in key},
                                    dict(new) if new is not None else None,
                                    dict(old) if old is not None else None))

    def add_rows(self, table: str, op: Operation, key: Sequence[str],
                 rows: Iterable[dict[str, Any]],
                 old: Mapping[tuple[Any, ...], dict[str, Any]] | None = None) -> None:
        if not self.outbox.wants(table, op):
            return
        uuid4 = uuid.uuid4
        out = self.records
        for row in rows:
            pk = {k: row.get(k) for k in key}
            if op == "delete":
                out.append(_Record(str(uuid4()), table, op, pk, None, row))
            else:
                before = old.get(tuple(pk.values())) if old is not None else None
                out.append(_Record(str(uuid4()), table, op, pk, row, before))

    def tag(self, table: str, op: Operation) -> Tag:
        """What a write of ``op`` to ``table`` records its rows as (SQLite's triggers)."""
        return (self.principal_text, self.txid, table, op)

    async def flush(self, tx: Transaction, *, last: bool = False) -> None:
        if self.records:
            records, self.records = self.records, []
            await self.outbox.record(tx, records, self.principal_text, self.txid, last=last)


@dataclass(frozen=True, slots=True)
class TableDeadLetters:
    """The embedded mode's dead-letter queue: a table, so ``headwater events dlq`` can read
    it from another process. ``take`` returns only letters flagged by ``request_replay``."""

    db: Database
    outbox: Outbox

    async def add(self, letter: DeadLetter) -> None:
        await self.outbox.add_dead_letter(self.db, letter)

    async def peek(self, queue: str) -> list[DeadLetter]:
        return await self.outbox.list_dead_letters(self.db, queue)

    async def take(self, queue: str) -> list[DeadLetter]:
        return await self.outbox.take_replays(self.db, queue)
