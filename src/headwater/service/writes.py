"""Writes: validate → one transaction (before-hooks → SQL → after-hooks) → representation.

Every request is exactly one transaction: it all happens or none of it does. Rejections found
before SQL (validation) change nothing because nothing ran; rejections after (hooks,
constraints, ``max-affected``) roll the transaction back.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec

from headwater.config import Settings
from headwater.db.database import Database, Transaction
from headwater.db.dml import (
    compile_insert,
    compile_mutation,
    compile_old_rows,
    insert_params,
    mutation_params,
)
from headwater.db.sql import bind, compile_read
from headwater.errors import (
    ConstraintViolation,
    InvalidBody,
    InvalidValue,
    InvalidWrite,
    MethodNotAllowed,
    ParseError,
    RequestError,
    SingularityError,
    UnknownColumn,
)
from headwater.events.recording import EventBuffer, Recorder, run_write
from headwater.model.catalog import Catalog, Table
from headwater.model.plan import MutatePlan
from headwater.model.principal import Principal, WriteAction, principal_json
from headwater.model.request import ApiRequest, Condition, Embed, Field, Logic, Predicate, Query, SelectItem
from headwater.model.result import WriteResult
from headwater.model.values import JsonText, pg_parsed
from headwater.resilience.retry import retrying, write_retryable
from headwater.service.hooks import App, Context
from headwater.service.plan import (
    conflict_target,
    plan_insert,
    plan_mutation,
    plan_read,
    require_table,
)
from headwater.service.policy import Rule
from headwater.service.validation import CheckedRows, check_rows, check_rows_off_loop
from headwater.service.write_guard import WriteGuard

_decode_row = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Writer:
    """Carries what every write needs; one per request."""

    db: Database
    catalog: Catalog
    settings: Settings
    app: App
    principal: Principal
    request_id: str | None = None
    #: Called after commit and before the response with the tables written (None = all).
    on_commit: Callable[[frozenset[str] | None], Awaitable[None]] | None = None
    #: How the request's events are recorded (None: no events).
    recorder: Recorder | None = None
    #: Bounds how many writes to one table wait on it at once (a locked row must not take
    #: every pooled connection); the app hands in its per-table semaphores.
    bulkhead: Callable[[str], AbstractAsyncContextManager[Any]] = field(
        default=lambda _table: contextlib.nullcontext())
    #: Policies and field encryption (None: every caller may do everything, nothing encrypted).
    guard: WriteGuard | None = None
    #: The exposed schema written (``Content-Profile``); None: the database's own.
    profile: str | None = None
    _contexts: list[Context] = field(default_factory=list)
    _events: EventBuffer | None = None

    # --- entry points -------------------------------------------------------------------------

    async def insert(self, request: ApiRequest, body: Sequence[Mapping[str, Any]], *,
                     from_csv: bool = False, put: bool = False) -> WriteResult:
        try:
            return await self._committed(request, lambda: self._insert(
                request, body, from_csv=from_csv, put=put))
        except (ConstraintViolation, InvalidValue) as exc:
            raise _on_value(_on_fields(exc, {k for row in body for k in row}),
                            self.catalog.table(request.target), body) from exc.__cause__

    async def update(self, request: ApiRequest, body: Any) -> WriteResult:
        try:
            return await self._committed(request, lambda: self._update(request, body))
        except (ConstraintViolation, InvalidValue) as exc:
            rows = [body] if isinstance(body, dict) else []
            raise _on_value(_on_fields(exc, set(rows[0]) if rows else set()),
                            self.catalog.table(request.target), rows) from exc.__cause__

    async def delete(self, request: ApiRequest) -> WriteResult:
        return await self._committed(request, lambda: self._delete(request))

    async def _committed(self, request: ApiRequest,
                         work: Callable[[], Awaitable[WriteResult]]) -> WriteResult:
        async with self.bulkhead(request.target):
            # The whole transaction (hooks included) runs again only when that is safe.
            result = await retrying(self.settings, work, write_retryable)
        if self.on_commit is not None and request.prefer.tx != "rollback" and result.affected:
            unknown = any(c.wrote for c in self._contexts)
            await self.on_commit(None if unknown else result.tables)
        return result

    def _writable(self, table: Table, op: str) -> None:
        """SQLite: a view changes only through an INSTEAD OF trigger for the operation. (Its
        ``INSERT … RETURNING`` on a view without one answers rows and writes nothing, SQLite
        3.40's bug: refused here, as PostgreSQL refuses a view it cannot update.)"""
        if table.is_view and self.db.dialect == "sqlite" and op not in table.instead_of:
            verb = {"insert": "insert into", "update": "update", "delete": "delete from"}[op]
            raise MethodNotAllowed(
                f'cannot {verb} view "{table.name}"', code="55000",
                details="SQLite changes a view only through an INSTEAD OF trigger",
                hint=f"write to the tables under {table.name}, or create an INSTEAD OF "
                     f"{op.upper()} trigger on it")

    async def _insert(self, request: ApiRequest, body: Sequence[Mapping[str, Any]], *,
                      from_csv: bool = False, put: bool = False) -> WriteResult:
        table = require_table(self.catalog, request.target)
        self._writable(table, "insert")
        # The body's rows are only read here; hooks get copies (a retry runs this again).
        rows = [_from_csv(table, r) for r in body] if from_csv else list(body)
        q = request.query
        missing_default = request.prefer.missing == "default"
        resolution: Literal["merge", "ignore"] | None = None
        if request.prefer.resolution == "merge-duplicates" or put:
            resolution = "merge"
        elif request.prefer.resolution == "ignore-duplicates":
            resolution = "ignore"
        if put:
            self._check_put(table, request, rows)
        # A wrong on_conflict is refused before any SQL (so before any row can matter).
        conflict = conflict_target(table, q.on_conflict) if resolution else None
        groups = await check_rows_off_loop(table, rows, mode="insert", columns=q.columns,
                                           missing_default=missing_default)
        guard = self.guard
        if guard is not None:
            guard.require_columns(table, "insert", sorted({c for g in groups for c in g.columns}))
        # A merge first counts the rows it will update (one more statement: see ``_existing``).
        single = (len(groups) == 1 and (bool(groups[0].columns) or len(groups[0].rows) == 1)
                  and resolution != "merge" and self._single(table, "insert", request))
        async with self._transaction(rollback=request.prefer.tx == "rollback",
                                     single=single) as tx:
            ctx = self._context(tx, table.name, "insert")
            hooks = self.app.before("insert", table.name)
            if hooks:
                rows = [await _apply(hooks, ctx, dict(r)) for r in rows]
                groups = await check_rows_off_loop(table, rows, mode="insert",
                                                   columns=q.columns,
                                                   missing_default=missing_default)
            update = None
            existing = 0
            if resolution == "merge":
                existing = await self._existing(tx, table, conflict or table.primary_key,
                                                groups)
            if guard is not None:
                if conflict is not None:
                    update = guard.upsert_policy(table, groups, conflict, resolution)
                groups = [guard.encrypt(table, g) for g in groups]
            written: list[dict[str, Any]] = []
            counted = 0
            count = self._counted(table, request, resolution == "merge")
            # missing=default writes each set of keys apart (absent columns take their
            # default); a merge still sets every column some row names, as PostgREST's one
            # statement does: to its default where the row lacks it. (Only columns some row
            # names: those are the ones policies checked for the update.)
            named = tuple(dict.fromkeys(c for g in groups for c in g.columns)
                          ) if len(groups) > 1 else ()
            parts: list[list[dict[str, Any]]] = []
            for group in groups:
                also = tuple(c for c in named if c not in group.columns
                             and c in table.columns and c not in table.primary_key
                             and c not in (conflict or ())) if resolution == "merge" else ()
                out = await self._insert_group(tx, table, group, conflict, resolution,
                                               count, update, also)
                if isinstance(out, int):
                    counted += out
                else:
                    parts.append(out)
                    written += out
            if len(parts) > 1 and resolution != "ignore":
                written = _in_body_order(table, rows, q.columns, groups, parts) or written
            if guard is not None:
                await guard.check_written(tx, table, "insert", written)
            for row in written:
                for after in self.app.after("insert", table.name):
                    await after(ctx, row)
            self._check_affected(request, len(written) + counted)
            result = WriteResult(written, tables=frozenset({table.name}), counted=counted)
            if resolution == "merge":
                result.inserted = max(0, result.affected - existing)
            if request.prefer.returning == "representation":
                result.body = await self._representation(tx, table, request, written)
            if (request.prefer.returning == "headers-only" and len(written) == 1
                    and table.primary_key):
                result.location = _location(table, written[0])
        return result

    async def _update(self, request: ApiRequest, body: Any) -> WriteResult:
        table = require_table(self.catalog, request.target)
        self._writable(table, "update")
        if not isinstance(body, dict):
            raise InvalidBody("PATCH takes one JSON object of the columns to change",
                              code="PGRST102")
        self._require_filter(table, request, "UPDATE")
        [checked] = check_rows(table, [body], mode="update") or [CheckedRows((), ((),))]
        guard = self.guard
        if guard is not None:
            guard.require_columns(table, "update", checked.columns)
        async with self._transaction(rollback=request.prefer.tx == "rollback",
                                     single=self._single(table, "update", request)) as tx:
            ctx = self._context(tx, table.name, "update")
            hooks = self.app.before("update", table.name)
            if hooks:
                body = await _apply(hooks, ctx, dict(body))
                [checked] = check_rows(table, [body], mode="update")
            if not checked.columns:
                self._check_affected(request, 0)
                return WriteResult([], body=b"[]" if request.prefer.returning ==
                                   "representation" else None)
            if guard is not None:
                checked = guard.encrypt(table, checked)
            plan = plan_mutation(self.catalog, request, "update",
                                 list(zip(checked.columns, checked.rows[0], strict=True)),
                                 access=guard.access if guard is not None else None)
            written = await self._mutate(tx, table, plan)
            if guard is not None:
                await guard.check_written(tx, table, "update", written)
            for row in written:
                for after in self.app.after("update", table.name):
                    await after(ctx, row)
            return await self._finish(tx, table, request, written)

    async def _delete(self, request: ApiRequest) -> WriteResult:
        table = require_table(self.catalog, request.target)
        self._writable(table, "delete")
        self._require_filter(table, request, "DELETE")
        plan = plan_mutation(self.catalog, request, "delete",
                             access=self.guard.access if self.guard is not None else None)
        async with self._transaction(rollback=request.prefer.tx == "rollback",
                                     single=self._single(table, "delete", request)) as tx:
            ctx = self._context(tx, table.name, "delete")
            written = await self._mutate(tx, table, plan)
            # Before-delete hooks see each row as it was; raising still undoes the delete,
            # since nothing is committed until every hook has run.
            for row in written:
                for before in self.app.before("delete", table.name):
                    await before(ctx, row)
            for row in written:
                for after in self.app.after("delete", table.name):
                    await after(ctx, row)
            if request.prefer.returning == "representation" and _has_embeds(
                    request.query.select):
                raise ParseError("a DELETE cannot embed: the rows are gone",
                                 hint="select only columns of the deleted rows")
            return await self._finish(tx, table, request, written)

    # --- pieces -------------------------------------------------------------------------------

    def _exact(self, table: Table) -> bool:
        """Does a representation of this table's rows read them back (``_representation``)?"""
        return (self.db.dialect == "postgresql" and bool(table.primary_key)
                and any(c.kind == "numeric" for c in table.columns.values()))

    def _single(self, table: Table, op: WriteAction, request: ApiRequest) -> bool:
        """Will this write be exactly one statement? Then it needs no BEGIN and COMMIT (see
        ``Database.transaction``). Not when the count of rows written may still refuse it
        (``_check_affected``: a lone statement commits by itself), hooks or policies may add
        statements, the response
        embeds other tables, an update must first read its old rows, or the events take a
        statement of their own (SQLite)."""
        name = table.name
        if (self.guard is not None or self.app.before(op, name) or self.app.after(op, name)
                or _checks_affected(request)
                or (request.prefer.returning == "representation"
                    and (_has_embeds(request.query.select)
                         or (op != "delete" and self._exact(table))))):
            return False
        recorder = self.recorder
        return recorder is None or recorder.one_statement(name, op)

    def _counted(self, table: Table, request: ApiRequest, merge: bool) -> bool:
        """May an insert return only how many rows it wrote? Yes when nothing reads them: no
        after-hooks, policies or encryption, a minimal response, and events recorded inside
        the statement (or none)."""
        if (self.guard is not None or self.app.after("insert", table.name)
                or request.prefer.returning in ("representation", "headers-only")):
            return False
        recorder = self.recorder
        return recorder is None or recorder.counts_only(table.name, merge)

    @contextlib.asynccontextmanager
    async def _transaction(self, *, rollback: bool,
                           single: bool = False) -> AsyncIterator[Transaction]:
        """The request's one transaction. Its events go to the outbox inside it, so they
        commit (or roll back) with it: with each write statement (on PostgreSQL inside it, on
        SQLite in a second statement sent with it), and the rows hooks ``emit`` in one
        statement at its end."""
        recorder = self.recorder
        if recorder is None or not recorder.enabled:
            async with self.db.transaction(rollback=rollback, single=single) as tx:
                yield tx
            return
        outbox = recorder.outbox
        if not outbox.ready:
            await outbox.ensure(self.db)
        events = self._events = EventBuffer(recorder, principal_json(self.principal),
                                            self.catalog, single=single)
        async with self.db.transaction(rollback=rollback, single=single) as tx:
            yield tx
            recorded = events.inline or bool(events.records)
            await events.flush(tx, last=True)
        if recorded and not rollback:
            outbox.committed()

    def _in_statement(self, table: Table, op: WriteAction, merge: bool = False) -> bool:
        """Does this write's statement record its events itself (``Recorder.in_statement``)?"""
        events = self._events
        return events is not None and events.recorder.in_statement(table.name, op, merge)

    def _write(self, tx: Transaction, table: Table, op: WriteAction, sql: str,
               params: list[object], inline: bool,
               old: dict[tuple[Any, ...], dict[str, Any]] | None = None,
               count: bool = False, one_row: bool = False,
               ) -> Awaitable[list[dict[str, Any]] | int]:
        """Run one write statement, with its rows' events when the request records them
        (``EventBuffer.write``; ``inline``: the statement records them itself; ``one_row``:
        it writes one row at most)."""
        events = self._events
        if events is None:
            return run_write(tx, sql, params, None, count, self.db.dialect == "postgresql")
        return events.write(tx, table.name, op, table.primary_key, sql, params, inline, old,
                            count, one_row)

    async def _old_rows(self, tx: Transaction, table: Table, plan: MutatePlan,
                        ) -> dict[tuple[Any, ...], dict[str, Any]] | None:
        """The rows an update will change, as they are (locked on PostgreSQL), when settings
        ask events to carry them: one more statement, only for those tables."""
        if (self._events is None or not table.primary_key
                or not self._events.recorder.wants_old(table.name)):
            return None
        sql = compile_old_rows(self.db.dialect, (self.profile or self.db.schema), plan.shape)
        params = mutation_params(self.db.dialect, plan)
        params = params[:len(params) - len(plan.shape.assignments)]
        rows = [_decode_row(r[0]) for r in await tx.fetch(sql, params)]
        return {tuple(r.get(k) for k in table.primary_key): r for r in rows}

    def _context(self, tx: Transaction, table: str, action: WriteAction) -> Context:
        ctx = Context(self.principal, table, tx, self.request_id, action, events=self._events)
        self._contexts.append(ctx)
        return ctx

    async def _insert_group(self, tx: Transaction, table: Table, group: CheckedRows,
                            conflict: tuple[str, ...] | None,
                            resolution: Literal["merge", "ignore"] | None,
                            count: bool = False, update: Rule | None = None,
                            also_set: tuple[str, ...] = (),
                            ) -> list[dict[str, Any]] | int:
        plan = plan_insert(table, group.columns, group.rows, conflict=conflict,
                           resolution=resolution, update=update, also_set=also_set)
        if not group.columns and len(group.rows) > 1:
            out: list[dict[str, Any]] = []
            for _ in group.rows:  # DEFAULT VALUES has no multi-row form
                one = await self._insert_group(tx, table, CheckedRows((), ((),)), conflict,
                                               resolution)
                assert not isinstance(one, int)
                out += one
            return out
        inline = self._in_statement(table, "insert", resolution == "merge")
        wrapped = inline and self.db.dialect == "postgresql"  # see ``Recorder.with_events``
        sql = compile_insert(self.db.dialect, (self.profile or self.db.schema), plan.shape, rows=wrapped,
                             count=count and not wrapped)
        written = await self._write(tx, table, "insert", sql,
                                    insert_params(self.db.dialect, plan), inline, count=count,
                                    one_row=len(group.rows) == 1)
        if plan.guarded and self.guard is not None:
            # The statement skipped the conflicting rows the update policy refuses.
            self.guard.check_upserted(table, len(group.rows), written if isinstance(
                written, int) else len(written))
        return written

    async def _mutate(self, tx: Transaction, table: Table, plan: MutatePlan,
                      ) -> list[dict[str, Any]]:
        op: WriteAction = plan.shape.action
        inline = self._in_statement(table, op)
        old = await self._old_rows(tx, table, plan) if op == "update" and not inline else None
        sql = compile_mutation(self.db.dialect, (self.profile or self.db.schema), plan.shape,
                               rows=inline and self.db.dialect == "postgresql")
        rows = await self._write(tx, table, op, sql, mutation_params(self.db.dialect, plan),
                                 inline, old)
        assert not isinstance(rows, int)
        return rows

    async def _finish(self, tx: Transaction, table: Table, request: ApiRequest,
                      written: list[dict[str, Any]]) -> WriteResult:
        self._check_affected(request, len(written))
        result = WriteResult(written, tables=frozenset({table.name}))
        if request.prefer.returning == "representation":
            result.body = await self._representation(tx, table, request, written)
        return result

    def _require_filter(self, table: Table, request: ApiRequest, verb: str) -> None:
        if request.query.where.get(()):
            return
        if table.name in self.settings.unfiltered_write_tables():
            return
        raise InvalidWrite(f"{verb} requires a WHERE clause",
                           hint=f"add a filter such as ?id=eq.1, or allow unfiltered writes to "
                                f"{table.name} in settings")

    def _check_affected(self, request: ApiRequest, n: int) -> None:
        """Refuse, inside the transaction so that it rolls back, a write of ``n`` rows that
        ``Prefer: max-affected`` (strict) or the object Accept forbids (PostgREST's
        ``SingularSpec``: whatever ``return=`` says)."""
        limit = request.prefer.max_affected
        if limit is not None and request.prefer.handling == "strict" and n > limit:
            raise RequestError("Query result exceeds max-affected preference constraint",
                               details=f"The query affects {n} rows", code="PGRST124")
        if request.media == "object" and n != 1:
            raise SingularityError("JSON object requested, multiple (or no) rows returned",
                                   details=f"The result contains {n} rows")

    async def _existing(self, tx: Transaction, table: Table, key: Sequence[str],
                        groups: Sequence[CheckedRows]) -> int:
        """How many of the rows a merge upsert is about to write exist already, by ``key``
        (its conflict columns): the rest are inserted, which makes its status 201 rather than
        200. Rows without every key column cannot conflict. Counted with the read compiler;
        composite keys in chunks, as each row takes one parameter per key column and one more
        level of SQLite's bounded expression depth."""
        rows = [dict(zip(g.columns, r, strict=True)) for g in groups
                if key and set(key) <= set(g.columns) for r in g.rows]
        rows = [r for r in rows if all(r[k] is not None for k in key)]
        step = len(rows) if len(key) == 1 else 200
        found = 0
        for i in range(0, len(rows), step or 1):
            read = ApiRequest("GET", table.name, Query(
                select=tuple(Field(k) for k in key),
                where={(): (_key_filter(key, rows[i:i + step]),)}))
            plan = plan_read(self.catalog, read)
            sql = compile_read(self.db.dialect, (self.profile or self.db.schema), plan.root, plan.limit_param,
                               plan.offset_param, False)
            params = bind(self.db.dialect, plan.params)
            row = await tx.fetchrow(sql.count, [params[j] for j in sql.count_params])
            assert row is not None
            found += int(row[0])
        return found

    def _check_put(self, table: Table, request: ApiRequest,
                   rows: Sequence[Mapping[str, Any]]) -> None:
        if len(rows) != 1:
            raise InvalidBody("PUT takes exactly one JSON object", code="PGRST102")
        pk = table.primary_key
        filters = {p.column: p for p in request.query.where.get((), ())
                   if isinstance(p, Condition) and p.op == "eq" and not p.negated}
        if not pk or set(filters) != set(pk) or len(request.query.where.get((), ())) != len(pk):
            raise RequestError("Filters must include all and only primary key columns with "
                               "'eq' operators", code="PGRST105")
        for col in pk:
            if str(rows[0].get(col)) != filters[col].value:
                raise RequestError("Payload values do not match URL in primary key column(s)",
                                   code="PGRST115")

    async def _representation(self, tx: Transaction, table: Table, request: ApiRequest,
                              written: list[dict[str, Any]]) -> bytes:
        select = request.query.select
        # PostgreSQL's numeric digits do not survive the written rows' trip through Python
        # floats (98765432109876543210.9876543219 would come back as 9.87e19, 11.00 as 11.0):
        # such a table's rows are read back as a GET renders them.
        # (a delete's rows are gone: they are shown as they were)
        exact = (request.method != "DELETE" and self._exact(table)
                 and _in_key_order(table.primary_key, written))
        if not _has_embeds(select) and not exact:
            if self.guard is not None:
                written = self.guard.visible_rows(table, select, written)
            return _encode([_project(table, select, row) for row in written])
        if not table.primary_key:
            raise ParseError(f"embedding (or a cast, JSON path or aggregate) in a write's "
                             f"response needs a primary key on {table.name}")
        if not written:
            return b"[]"
        read = ApiRequest("GET", table.name, Query(
            select=select, where={(): (_key_filter(table.primary_key, written),)},
            order={(): tuple(_order_by_key(table))}))
        plan = plan_read(self.catalog, read,
                         access=self.guard.access if self.guard is not None else None,
                         aggregates=self.settings.aggregates_enabled)
        sql = compile_read(self.db.dialect, self.profile or self.db.schema, plan.root,
                           plan.limit_param,
                           plan.offset_param, False)
        row = await tx.fetchrow(sql.aggregate, bind(self.db.dialect, plan.params))
        assert row is not None
        body: str = row[2]
        if self.guard is not None:
            return self.guard.decrypt_body(body.encode(), plan.root)
        return body.encode()


async def _apply(hooks: Sequence[Any], ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    for hook in hooks:
        out = await hook(ctx, row)
        if out is not None:
            if not isinstance(out, dict):
                raise TypeError(f"hook {hook.__name__} returned {type(out).__name__}, not a dict")
            row = out
    return row


def _has_embeds(select: Sequence[SelectItem]) -> bool:
    """Does the representation need the read compiler: embeds, or a column cast, taken along
    a JSON path or aggregated (the written rows hold only the columns' own values)?"""
    return any(isinstance(i, Embed) or i.json or i.cast or i.aggregate or i.name == ""
               for i in select)


def _project(table: Table, select: Sequence[SelectItem], row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in select:
        assert isinstance(item, Field)
        if item.name == "*":
            out.update(row)
        elif item.name in table.columns:
            out[item.alias or item.name] = row.get(item.name)
        else:
            raise UnknownColumn(f"column {table.name}.{item.name} does not exist")
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, JsonText) and value.startswith("["):
        # A key sent as a JSON array (``_existing``, ``_location``): its array literal.
        return _array_literal(msgspec.json.decode(str(value)))
    return str(value)


def _array_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "{" + ",".join(_array_literal(v) for v in value) + "}"
    text = value if isinstance(value, str) else _encode(value).decode()
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in_body_order(table: Table, rows: Sequence[Mapping[str, Any]],
                   columns: Sequence[str] | None, groups: Sequence[CheckedRows],
                   parts: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """The rows written by groups (``missing=default``: one statement per set of keys) in
    the order of the body, as one statement returns them; each row's group is found by its
    keys as ``check_rows`` found it. None when the rows written are not one per row sent."""
    if len(parts) != len(groups) or any(len(p) != len(g.rows)
                                         for p, g in zip(parts, groups, strict=True)):
        return None
    index = {g.columns: iter(p) for g, p in zip(groups, parts, strict=True)}
    out: list[dict[str, Any]] = []
    for row in rows:
        keys = tuple(k for k in columns if k in row) if columns else tuple(row)
        part = index.get(tuple(k for k in keys if k in table.columns))
        found = next(part, None) if part is not None else None
        if found is None:
            return None
        out.append(found)
    return out


def _checks_affected(request: ApiRequest) -> bool:
    """May ``Writer._check_affected`` refuse this request once its rows are written?"""
    p = request.prefer
    return request.media == "object" or (p.max_affected is not None and p.handling == "strict")


def _key_filter(pk: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Predicate:
    if len(pk) == 1:
        return Condition(pk[0], "in", tuple(_text(r[pk[0]]) for r in rows))
    return Logic("or", tuple(Logic("and", tuple(Condition(c, "eq", _text(r[c])) for c in pk))
                             for r in rows))


def _in_key_order(pk: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether rows read back in key order come in the order they were written (the body's,
    which a representation keeps)."""
    keys = [tuple(r.get(k) for k in pk) for r in rows]
    try:
        return all(a < b for a, b in itertools.pairwise(keys))
    except TypeError:  # a NULL or mixed types: not comparable, so not assumed
        return False


def _order_by_key(table: Table) -> list[Any]:
    from headwater.model.request import OrderTerm

    return [OrderTerm(c) for c in table.primary_key]


def _location(table: Table, row: dict[str, Any]) -> str:
    from urllib.parse import quote

    return f"/{quote(table.name)}?" + "&".join(
        f"{quote(c)}=eq.{quote(_text(row[c]))}" for c in table.primary_key)


def _from_csv(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """CSV cells are text: empty means NULL, and JSON columns hold JSON text."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v == "":
            out[k] = None
            continue
        col = table.columns.get(k)
        if col is not None and col.kind == "json":
            with contextlib.suppress(msgspec.DecodeError):
                v = msgspec.json.decode(v)
        elif col is not None and col.kind == "boolean" and isinstance(v, str):
            v = {"t": "true", "f": "false"}.get(v.lower(), v)
        out[k] = v
    return out



_Refused = TypeVar("_Refused", bound=RequestError)


def _on_fields(exc: _Refused, written: set[str]) -> _Refused:
    """A failed CHECK names, in ``details``, the columns the caller wrote that its expression
    mentions (``price: violates a check constraint``), so a form can show the error on its
    field; columns it did not write, which it may not be allowed to read, stay unnamed."""
    if not isinstance(exc, ConstraintViolation):
        return exc
    named = [c for c in exc.columns if c in written]
    if named and exc.details is None:
        exc.details = "; ".join(f"{c}: violates a check constraint" for c in named)
    return exc


_QUOTED = re.compile(r'"(.*)"')


def _on_value(exc: _Refused, table: Table | None,
              rows: Sequence[Mapping[str, Any]]) -> _Refused:
    """A value PostgreSQL could not read as its column's type (an enum label, a range's
    bound…): its message quotes the value, which names, in ``details``, the column it was
    written to and the type it must have."""
    found = (_QUOTED.search(exc.message) if exc.code.startswith("22") and exc.details is None
             and table is not None else None)
    if found is None or table is None:
        return exc
    quoted = found.group(1)
    for row in rows[:1000]:
        for name, value in row.items():
            col = table.columns.get(name)
            if col is None or value is None:
                continue
            shown = value if isinstance(value, str) else _encode(value).decode()
            if (pg_parsed(col.kind, col.db_type) and quoted
                    and quoted in shown):
                exc.details = f"{name}: expected a value of type {col.db_type}, got {shown}"[:300]
                return exc
    return exc
