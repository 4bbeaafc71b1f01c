"""The outbox's relay side: its tables, and what the relay and the workers do with them.

A write records its events here inside its own transaction (``headwater.events.recording``);
``seq`` (a bigserial / INTEGER PRIMARY KEY) orders them. The relay claims pending rows
(``FOR UPDATE SKIP LOCKED`` plus a per-table advisory lock on PostgreSQL, so several nodes
share the work yet each table's rows go out in order from one node at a time; a lease row on
SQLite), marks them sent, prunes, counts. The worker's processed-ids table and the embedded
dead-letter table live here as well: every table Headwater owns is ``_headwater_*``, which
the catalog never serves, and is created by ``headwater.db.migrations``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from headwater.config import Settings
from headwater.db.database import Database, Transaction
from headwater.db.migrations import LOCK_SPACE as _LOCK_SPACE
from headwater.db.migrations import is_current, migrate

OUTBOX = "_headwater_outbox"
PROCESSED = "_headwater_processed"
DEAD_LETTERS = "_headwater_dead_letters"
LEASES = "_headwater_leases"

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


class Outbox:
    """SQL for the outbox and its sibling tables, for one database."""

    def __init__(self, settings: Settings, dialect: str, schema: str | None) -> None:
        self.settings = settings
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        self.ready = False
        #: Called after a transaction with events commits (the relay's wake-up).
        self.listeners: list[Callable[[], None]] = []
        prefix = f'"{schema}".' if self.pg and schema else ""
        self.outbox = prefix + f'"{OUTBOX}"'
        self.processed = prefix + f'"{PROCESSED}"'
        self.dead_letters = prefix + f'"{DEAD_LETTERS}"'
        self.leases = prefix + f'"{LEASES}"'

    def committed(self) -> None:
        for listener in self.listeners:
            listener()

    # --- schema -------------------------------------------------------------------------------

    async def ensure(self, db: Database, *, create: bool = True) -> None:
        """Create the tables if missing, through Headwater's migrations (idempotent, safe
        from several nodes at once). ``create=False`` only looks: ``ready`` says whether a
        write has made them yet (serving never creates them before they are needed)."""
        if create:
            await migrate(db)
            self.ready = True
        elif not self.ready:
            self.ready = await is_current(db)

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

    async def release(self, tx: Transaction, name: str, holder: str) -> None:
        """Give a lease up (at exit), so that the next holder need not wait for it to end."""
        p = "$" if self.pg else "?"
        await tx.fetch(f"DELETE FROM {self.leases} WHERE name = {p}1 AND holder = {p}2",
                       (name, holder))

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
