"""Database functions over ``/rpc/{name}``, as PostgREST serves them (PostgreSQL only).

The function is chosen among its overloads by the names of the arguments sent, called in one
transaction, and its result shaped as PostgREST shapes it: a scalar as a JSON value, a row as
an object, a set as an array to which the read grammar applies (``select=``, filters,
``order``, ``limit``/``offset``, ``Range``, counts, the object Accept, CSV). A function that
may write (VOLATILE) invalidates the whole cache after commit (which tables it wrote is not
known) and records one ``rpc.{name}.call`` event with its arguments, in its transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgspec

from headwater.cache.keys import etag
from headwater.db import csv_out
from headwater.db import functions as sql
from headwater.db.database import Database, Transaction
from headwater.db.sql import bind
from headwater.errors import (
    AmbiguousFunction,
    InvalidBody,
    MethodNotAllowed,
    NotFound,
    SingularityError,
)
from headwater.events.recording import EventBuffer, Recorder
from headwater.model.catalog import Catalog, Function, Table
from headwater.model.plan import ReadPlan
from headwater.model.principal import principal_json
from headwater.model.request import ApiRequest
from headwater.model.result import ReadAnswer
from headwater.service.plan import plan_read
from headwater.service.policy import Access

_encode = msgspec.json.Encoder(decimal_format="number").encode


@dataclass(frozen=True, slots=True)
class FunctionAnswer:
    """A call's outcome: a set as a read answer, or one JSON value (None: void, no body)."""

    read: ReadAnswer | None = None
    value: bytes | None = None


def signature(schema: str, fn: Function) -> str:
    args = ", ".join(f"{p.name or '<unnamed>'} => {p.db_type}" for p in fn.parameters)
    return f"{schema}.{fn.name}({args})"


def choose(schema: str, name: str, overloads: Sequence[Function], names: Sequence[str], *,
           whole_body: bool, body_is_object: bool = True) -> Function:
    """The overload the arguments ``names`` call (PostgREST's rules): every name sent is one
    of its parameters and every parameter without a default was sent; failing that, one that
    takes the whole body (a single unnamed json/jsonb parameter). Two candidates: 300."""
    if whole_body:
        found = [f for f in overloads if len(f.parameters) == 1
                 and f.parameters[0].db_type in ("json", "jsonb")]
    else:
        sent = set(names)
        found = [] if not body_is_object else [
            f for f in overloads if not f.single_unnamed
            and sent <= {p.name for p in f.parameters} and f.required <= sent]
        if not found:
            found = [f for f in overloads if f.single_unnamed]
    if len(found) == 1:
        return found[0]
    if found:
        raise AmbiguousFunction(
            "Could not choose the best candidate function between: "
            + ", ".join(signature(schema, f) for f in found),
            hint="Try renaming the parameters or the function itself in the database so "
                 "function overloading can be resolved")
    shown = ", ".join(sorted(names))
    raise NotFound(f"Could not find the function {schema}.{name}({shown}) in the schema cache",
                   code="PGRST202",
                   hint="Perhaps you meant to call one of: "
                        + ", ".join(signature(schema, f) for f in overloads))


def query_args(overloads: Sequence[Function], pairs: Sequence[tuple[str, str]],
               ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A GET's query string: the pairs naming a parameter of some overload are arguments
    (repeated ones, or any to an array or VARIADIC parameter, a JSON array unless written as
    an array literal ``{a,b}``); the others are the read grammar of the result."""
    params = {p.name: p for f in overloads for p in f.parameters if p.name}
    values: dict[str, list[str]] = {}
    rest: list[tuple[str, str]] = []
    for key, value in pairs:
        if key in params:
            values.setdefault(key, []).append(value)
        else:
            rest.append((key, value))
    args: dict[str, Any] = {}
    for key, vs in values.items():
        p = params[key]
        if p.variadic or p.is_array:
            args[key] = vs[0] if len(vs) == 1 and vs[0].startswith("{") else vs
        else:
            args[key] = vs[-1]
    return args, rest


def result_table(fn: Function, catalog: Catalog) -> tuple[Catalog, Table]:
    """What a set-returning result is planned against: the served table a ``SETOF`` returns
    (its relationships apply), else a table of the function's result columns."""
    if fn.table is not None and (table := catalog.table(fn.table)) is not None:
        return catalog, table
    table = Table(name=fn.name, columns=fn.columns)
    derived = Catalog(tables=MappingProxyType({**catalog.tables, fn.name: table}),
                      dialect=catalog.dialect,
                      relationships=MappingProxyType({**catalog.relationships, fn.name: ()}),
                      functions=catalog.functions)
    return derived, table


class DbFunctions:
    """The database functions of the catalog, as the RPC endpoint calls them."""

    def __init__(self, db: Database, catalog: Callable[[], Catalog | None], *, max_rows: int,
                 on_commit: Callable[[frozenset[str] | None], Awaitable[None]],
                 aggregates: bool = True, recorder: Recorder | None = None) -> None:
        self.db = db
        self.recorder = recorder
        self.catalog = catalog
        self.max_rows = max_rows
        self.aggregates = aggregates
        self.on_commit = on_commit
        self.schema = db.schema or "public"

    def overloads(self, name: str) -> tuple[Function, ...]:
        catalog = self.catalog()
        if catalog is None:
            return ()
        return catalog.functions.get(name, ())

    def names(self) -> frozenset[str]:
        catalog = self.catalog()
        return frozenset(catalog.functions) if catalog is not None else frozenset()

    async def call(self, fn: Function, args: Any, api: ApiRequest, access: Access, *,
                   whole: bool, rollback: bool) -> FunctionAnswer:
        """Call ``fn`` with ``args`` (the JSON object of named arguments, or with ``whole``
        the one argument); ``api`` is the read grammar applied to a set result."""
        if api.method in ("GET", "HEAD") and not fn.read_only:
            raise MethodNotAllowed(
                f"cannot execute the VOLATILE function {fn.name} with {api.method}",
                code="25006", hint="call it with POST, or declare it STABLE or IMMUTABLE")
        if not whole and not isinstance(args, Mapping):
            raise InvalidBody("RPC arguments must be one JSON object", code="PGRST102")
        names = () if whole else tuple(args)
        payload = _encode(args).decode()
        catalog = self.catalog()
        assert catalog is not None
        if fn.returns == "set":
            answer = await self._set(fn, catalog, names, payload, api, access, whole=whole,
                                     rollback=rollback, args=args)
            out = FunctionAnswer(read=answer)
        else:
            c = sql.call(self.schema, fn, names, 0, whole=whole)
            statement = {"void": sql.void_sql, "scalars": sql.scalars_sql}.get(
                fn.returns, sql.value_sql)(c)
            params = [payload] if c.from_ or whole else []
            async with self.db.transaction(rollback=rollback) as tx:
                row = await tx.fetchrow(statement, params)
                await self._called(tx, fn, args, access)
            assert row is not None
            if fn.returns == "void":
                out = FunctionAnswer()
            elif fn.returns == "scalars":
                out = FunctionAnswer(value=str(row[1]).encode())
            else:
                out = FunctionAnswer(value=b"null" if row[0] is None else str(row[0]).encode())
        if not fn.read_only and not rollback:
            if self._recording(fn):
                assert self.recorder is not None
                self.recorder.outbox.committed()
            await self.on_commit(None)  # which tables it wrote is unknown
        return out

    def _recording(self, fn: Function) -> bool:
        r = self.recorder
        return (not fn.read_only and r is not None and r.enabled
                and r.wants(f"rpc.{fn.name}", "call"))

    async def _called(self, tx: Transaction, fn: Function, args: Any, access: Access) -> None:
        """The call's event, in its transaction: committed exactly when what it wrote is."""
        if not self._recording(fn):
            return
        assert self.recorder is not None
        if not self.recorder.outbox.ready:
            await self.recorder.outbox.ensure(self.db)
        events = EventBuffer(self.recorder, principal_json(access.principal), None)
        events.add(f"rpc.{fn.name}", "call", (), new={"function": fn.name, "args": args})
        await events.flush(tx, last=True)

    async def _set(self, fn: Function, catalog: Catalog, names: Sequence[str], payload: str,
                   api: ApiRequest, access: Access, *, whole: bool, rollback: bool,
                   args: Any = None) -> ReadAnswer:
        planned, table = result_table(fn, catalog)
        request = ApiRequest(method="GET", target=table.name, query=api.query,
                             prefer=api.prefer, media=api.media, range=api.range)
        # The policies of a served table a SETOF returns apply to its rows; a function's own
        # result columns are the caller's once it may call the function.
        plan = plan_read(planned, request, max_rows=self.max_rows, aggregates=self.aggregates,
                         access=access if fn.table is not None and table.name == fn.table
                         else None)
        c = sql.call(self.schema, fn, names, len(plan.params), whole=whole)
        statement = sql.set_sql(self.schema, c, plan)
        params = bind("postgresql", plan.params)
        if c.from_ or whole:
            params.append(payload)
        async with self.db.transaction(rollback=rollback) as tx:
            row = await tx.fetchrow(statement.aggregate, params)
            await self._called(tx, fn, args, access)
            assert row is not None
            total, rows, body = row
            if plan.media == "object" and rows != 1:
                # Raised inside the transaction: what the function wrote is rolled back.
                raise SingularityError("JSON object requested, multiple (or no) rows returned",
                                       details=f"The result contains {rows} rows")
        data = str(body).encode()
        if plan.media == "csv":
            data = _csv(data, plan)
        return ReadAnswer(plan.media, rows, total, plan.first, body=data, etag=etag(data),
                          cache_control="no-cache")


def _csv(body: bytes, plan: ReadPlan) -> bytes:
    """PostgREST's CSV (see ``csv_out``), rebuilt from the function's JSON rows."""
    keys = plan.root.output_keys()  # a spread embed's keys in its place
    rows = [{k: obj.get(k) for k in keys} for obj in msgspec.json.decode(body)]
    text = csv_out.header(keys, len(rows)) + "\n".join(csv_out.render_rows(rows, plan.root))
    return text.encode()
