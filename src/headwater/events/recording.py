"""The outbox's write side: how a write records its events, inside its own transaction.

A write's events commit or roll back with the write (invariant 3), at the least cost:

* PostgreSQL: the write statement records them itself, wrapped in a data-modifying CTE
  (``with_events``): no extra statement, no extra round trip.
* SQLite: the write statement records them itself too, through TEMP triggers on the writer
  connection (``install_triggers``) that fire for a statement tagged with its table and
  operation; until they are installed, a second statement made from the returned rows is
  sent with it.
* Rows that hooks and RPC functions ``emit``, and updates whose old rows are asked for:
  buffered, then recorded by one more statement at the end of the transaction, whatever
  their number (typed arrays through ``unnest`` on PostgreSQL, one JSON array through
  ``json_each`` on SQLite, as the bulk inserts of ``headwater.db.dml``).

Rows are kept as ``json`` (text), not ``jsonb``: a ``json`` column may hold a NUL character
in a string, which ``jsonb`` refuses, and nothing here needs ``jsonb``'s operators. The
tables and the relay's side are in ``headwater.events.outbox``.
"""

from __future__ import annotations

import functools
import random
import secrets
import uuid
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from headwater.db.database import TAG_TABLE, Database, Row, Statement, Tag, Transaction
from headwater.db.dml import sqlite_row_object
from headwater.db.sql import ident, literal
from headwater.events.event import Operation, topic_matches
from headwater.events.outbox import OUTBOX, Outbox
from headwater.model.catalog import Catalog
from headwater.model.plan import TargetColumn, target_columns

_OPERATIONS: tuple[Operation, ...] = ("insert", "update", "delete")


class _Record(msgspec.Struct, omit_defaults=True):
    """One event as the bulk insert takes it (short keys: SQLite reads them from JSON)."""

    id: str
    t: str
    o: str
    k: dict[str, Any]
    n: dict[str, Any] | None = None
    b: dict[str, Any] | None = None


_encode = msgspec.json.Encoder().encode

_decode_row = msgspec.json.Decoder(dict[str, Any]).decode


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


class Recorder:
    """How writes to one database record their events in its outbox; which writes do, from
    settings."""

    def __init__(self, outbox: Outbox) -> None:
        settings = outbox.settings
        self.outbox = outbox
        #: The outbox table, by its qualified name.
        self.table = outbox.outbox
        self.pg = outbox.pg
        self.enabled = settings.events_enabled
        self._include = _csv(settings.events_include)
        self._exclude = _csv(settings.events_exclude)
        old = _csv(settings.events_old_rows)
        self._old_all = "*" in old
        self._old = frozenset(old)
        self._wants: dict[tuple[str, str], bool] = {}
        #: SQLite: the (table, operation) pairs whose TEMP triggers are installed
        #: (``install_triggers``): a tagged write to them records its own events.
        self.triggered: frozenset[tuple[str, str]] = frozenset()
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

    # --- what a write's statement does (the writer asks) --------------------------------------

    def one_statement(self, table: str, op: Operation) -> bool:
        """Is a write of ``op`` to ``table``, events included, one statement? PostgreSQL
        records the events inside the statement, SQLite through its triggers (or, until they
        are installed, in a second statement sent with it: ``Transaction.fetch_with``). An
        update whose events carry the old rows reads them first, but where a trigger sees
        them."""
        if not self.wants(table, op):
            return True
        return not (op == "update" and self.wants_old(table) and not self.triggers(table, op))

    def in_statement(self, table: str, op: Operation, merge: bool = False) -> bool:
        """Does this write's statement record its events itself? PostgreSQL: wrapped in a
        CTE, unless the update must first read the old rows. SQLite: through the triggers,
        once installed, except for an upsert (``merge``), whose updated rows would be
        recorded as updates where PostgreSQL's statement records every row as an insert."""
        if not self.wants(table, op):
            return False
        if not self.pg:
            return not merge and self.triggers(table, op)
        return not (op == "update" and self.wants_old(table))

    def counts_only(self, table: str, merge: bool) -> bool:
        """May an insert's statement return only how many rows it wrote, as far as events
        go? Yes when it records none, or records them inside the statement."""
        return not self.wants(table, "insert") or self.in_statement(table, "insert", merge)

    # --- recording ----------------------------------------------------------------------------

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
        if self.outbox.settings.read_only:
            return  # nothing is written, so there are no events to record
        # TEMP triggers: nothing on disk. The outbox they insert into is made by the first
        # write (``Writer._transaction``), before any trigger can fire.
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
                f"SELECT {_SQLITE_UUID4}, tbl, op, {pk}, {new}, {old}, principal, "
                f"coalesce(txid, random() & {_TXID_MASK}), "
                f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM {TAG_TABLE}; END")

    def triggers(self, table: str, op: Operation) -> bool:
        """Does a tagged write of ``op`` to ``table`` record its events itself (SQLite)?"""
        return (table, op) in self.triggered

    def _compile_record(self) -> str:
        if self.pg:
            # Typed arrays, not one JSON document: PostgreSQL cannot take a field out of JSON
            # holding \u0000, which a json column may.
            return (f"INSERT INTO {self.table} (id, tbl, op, pk, new, old, principal, txid) "
                    f"SELECT u.id, u.tbl, u.op, u.pk, u.new, u.old, $7::json, txid_current() "
                    f"FROM unnest($1::uuid[], $2::text[], $3::text[], $4::json[], $5::json[], "
                    f"$6::json[]) WITH ORDINALITY AS u(id, tbl, op, pk, new, old, n) "
                    f"ORDER BY u.n")
        pick = "json_extract(value, '$.{}')".format
        return (f"INSERT INTO {self.table} (id, tbl, op, pk, new, old, principal, txid, at) "
                f"SELECT {pick('id')}, {pick('t')}, {pick('o')}, {pick('k')}, {pick('n')}, "
                f"{pick('b')}, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                f"FROM json_each(?1) ORDER BY key")

    def rows_statement(self, table: str, op: Operation, key: Sequence[str], rows: str,
                       principal: str, txid: int) -> tuple[str, list[object]]:
        """SQLite: the events of a write's returned rows (``rows``: their JSON texts as one
        JSON array), made by SQLite itself: ids, keys and bodies with no per-row Python."""
        return _sqlite_rows_events(self.table, op, tuple(key)), [rows, table, op, principal,
                                                                 txid]

    def with_events(self, sql: str, n_params: int, op: Operation, key: Sequence[str], *,
                    count: bool = False) -> str:
        """PostgreSQL: ``sql`` (a write returning its rows, ``rows=True`` in
        ``headwater.db.dml``) wrapped so that the same statement records one event per row
        and still returns one JSON text per row: no extra round trip. Three more parameters
        follow the statement's own: the table's name, ``op`` and the principal as JSON.
        ``count=True``: one row with the number of rows written instead."""
        return _events_cte(self.table, sql, n_params, op, tuple(key), count)

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


#: SQLite's transaction ids are 62-bit (``Recorder.next_txid``), also when a trigger draws one.
_TXID_MASK = (1 << 62) - 1

# A version-4 UUID: one lower() over the whole, the variant from random()'s low bits (a third
# less work than lowering each part; it is most of what a trigger spends beyond the insert).
_SQLITE_UUID4 = ("lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
                 "substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (random() & 3), 1) || "
                 "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))")


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

    recorder: Recorder
    principal: Mapping[str, Any]
    #: Where ``emit`` finds a table's primary key.
    catalog: Catalog | None = None
    records: list[_Record] = field(default_factory=list)
    #: ``principal`` as JSON text, the parameter ``Recorder.with_events`` statements take.
    principal_text: str = field(init=False, default="")
    #: Set when a write statement recorded events itself (``Recorder.with_events``).
    inline: bool = False
    #: The transaction id SQLite's statements record (PostgreSQL uses its own).
    txid: int = field(init=False, default=0)
    #: The transaction is one statement (``Database.transaction(single=True)``): nothing
    #: but that statement records its events.
    single: bool = False

    def __post_init__(self) -> None:
        self.principal_text = _encode(self.principal).decode()
        self.txid = self.recorder.next_txid()

    def emit(self, table: str, op: Operation, new: Mapping[str, Any] | None = None,
             old: Mapping[str, Any] | None = None) -> None:
        """A row written by hand-written SQL (hooks, RPC), keyed by the catalog's key."""
        known = self.catalog.table(table) if self.catalog is not None else None
        self.add(table, op, known.primary_key if known is not None else (), new, old)

    def add(self, table: str, op: Operation, key: Sequence[str],
            new: Mapping[str, Any] | None = None, old: Mapping[str, Any] | None = None) -> None:
        """One written row; ``key`` names the primary-key columns, read from ``new or old``."""
        if not self.recorder.wants(table, op):
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
        if not self.recorder.wants(table, op):
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

    def tag(self, table: str, op: Operation, one_row: bool = False) -> Tag:
        """What a write of ``op`` to ``table`` records its rows as (SQLite's triggers).

        A transaction of one statement writing one row has one event, so its trigger may
        draw the transaction id itself (``txid`` None in the tag): consecutive such writes by
        one principal to one table then share the tag, and the writer skips the statement
        that sets it, which cost as much as a third of the trigger's work (its thread's trip
        through the GIL)."""
        txid = None if one_row and self.single else self.txid
        return (self.principal_text, txid, table, op)

    async def flush(self, tx: Transaction, *, last: bool = False) -> None:
        if self.records:
            records, self.records = self.records, []
            await self.recorder.record(tx, records, self.principal_text, self.txid, last=last)

    def write(self, tx: Transaction, table: str, op: Operation, key: Sequence[str], sql: str,
              params: list[object], inline: bool,
              old: dict[tuple[Any, ...], dict[str, Any]] | None = None,
              count: bool = False, one_row: bool = False,
              ) -> Awaitable[list[dict[str, Any]] | int]:
        """Run one write statement with its rows' events: ``inline``, recorded by the statement
        itself (PostgreSQL: wrapped in a CTE; SQLite: tagged for the triggers), else by a
        second statement made from its returned rows and sent with it
        (``Transaction.fetch_with``). ``count``: the statement returns only how many rows it
        wrote (``compile_insert``); never with events outside the statement
        (``Recorder.counts_only``). ``key``: the table's primary key. ``one_row``: the
        statement writes one row at most (see ``tag``). Hands back the
        statement's coroutine rather than awaiting it: no extra frame on the write path."""
        recorder = self.recorder
        tag = None
        if inline:
            if recorder.pg:
                sql = recorder.with_events(sql, len(params), op, key, count=count)
                params = [*params, table, op, self.principal_text]
            else:
                tag = self.tag(table, op, one_row)
            self.inline = True
        elif recorder.wants(table, op):
            assert not count
            return self._write_recorded(tx, table, op, key, sql, params, old)
        return run_write(tx, sql, params, tag, count, recorder.pg)

    async def _write_recorded(self, tx: Transaction, table: str, op: Operation,
                              key: Sequence[str], sql: str, params: list[object],
                              old: dict[tuple[Any, ...], dict[str, Any]] | None,
                              ) -> list[dict[str, Any]]:
        decoded: list[dict[str, Any]] = []
        recorder = self.recorder

        def record(raw: list[Row]) -> Statement | None:
            # Runs where the statement ran (SQLite: its writer thread), before the commit.
            if not raw:
                return None
            self.inline = True
            if old is None and not self.records:
                # SQLite makes the events from the rows' JSON itself.
                return recorder.rows_statement(table, op, key,
                                               "[" + ",".join(r[0] for r in raw) + "]",
                                               self.principal_text, self.txid)
            decoded.extend(_decode_row(r[0]) for r in raw)
            self.add_rows(table, op, key, decoded, old)
            records, self.records = self.records, []
            return recorder.record_statement(records, self.principal_text, self.txid)

        rows = await tx.fetch_with(sql, params, record)
        return decoded or [_decode_row(r[0]) for r in rows]


async def run_write(tx: Transaction, sql: str, params: list[object], tag: Tag | None,
                    count: bool, pg: bool) -> list[dict[str, Any]] | int:
    """One write statement whose events, if any, it records itself (or ``tag`` has SQLite's
    triggers record): its rows, one JSON text each, decoded, or with ``count`` how many."""
    if count:
        if pg:
            return int((await tx.fetch(sql, params))[0][0])
        return await tx.execute(sql, params, tag)
    return [_decode_row(r[0]) for r in await tx.fetch(sql, params, tag)]
