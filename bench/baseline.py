"""Hand-written baseline endpoints: the fastest honest way to answer the benchmark queries.

Each endpoint runs ONE raw driver query and encodes with msgspec, with nothing else on the
path (no parsing, planning, policies, cache, or error mapping). Headwater is measured against
these numbers; ``GET /ceiling`` (constant JSON, no database) is the server's own limit.

    BASELINE_DATABASE_URL=postgresql://... uvicorn --factory baseline:create_app
    BASELINE_DATABASE_URL=sqlite:////abs/path/demo.db  granian --interface asgi --factory ...

Endpoints (JSON typed as Headwater types it: numerics as numbers, timestamps as ISO strings,
booleans as true/false):

- ``GET /ceiling``           -> ``[{"id":1,"name":"x"}]``
- ``GET /a?id=N``            -> the order N, as an array of one object
- ``GET /b?customer_id=N``   -> that customer's 20 latest orders
- ``GET /c?customer_id=N``   -> the same 20 orders, each with ``customer`` and ``order_items``
  embedded, built as JSON by the database in one statement.
- ``GET /p?id=N``            -> the product N (the big and peer parts' ``products`` table)
- ``GET /naive?id=N``        -> ``/a`` behind a naive Redis cache-aside (``GET`` the key; on a
  miss query and ``SET`` it with a 60 s TTL); needs ``BASELINE_REDIS_URL``. A reference for
  the cost of one Redis round trip per request, not a competitor.
- ``POST /d``                -> insert one ``order_items`` row from a JSON object: one
  ``INSERT`` (PostgreSQL) / one ``execute`` + commit (SQLite); 201, empty body.
- ``POST /e``                -> insert a JSON array of ``order_items`` rows: one
  ``INSERT ... SELECT * FROM unnest($1, $2, $3, $4)`` (PostgreSQL) / ``executemany`` in one
  transaction (SQLite); 201, empty body.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ENV_URL = "BASELINE_DATABASE_URL"
ENV_REDIS = "BASELINE_REDIS_URL"
NAIVE_TTL_S = 60
PG_POOL_SIZE = 10
PAGE = 20

ENCODER = msgspec.json.Encoder(decimal_format="number")
CEILING_BODY = ENCODER.encode([{"id": 1, "name": "x"}])
JSON = "application/json"


class Backend(Protocol):
    """One raw query per call; each returns the encoded JSON body."""

    async def a(self, order_id: int) -> bytes: ...
    async def b(self, customer_id: int) -> bytes: ...
    async def c(self, customer_id: int) -> bytes: ...
    async def p(self, product_id: int) -> bytes: ...
    async def insert(self, rows: list[ItemRow]) -> None: ...
    async def close(self) -> None: ...


# One order_items row to insert: (order_id, product_id, quantity, unit_price).
ItemRow = tuple[int, int, int, Decimal]
ITEM_KEYS = ("order_id", "product_id", "quantity", "unit_price")
# JSON numbers with a fraction become Decimal, as a driver needs them for numeric columns.
ITEM_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def parse_items(body: bytes) -> list[ItemRow]:
    """A JSON object or array of objects -> rows; ValueError/KeyError/TypeError if malformed."""
    data = ITEM_DECODER.decode(body)
    objs = data if isinstance(data, list) else [data]
    return [(int(o["order_id"]), int(o["product_id"]), int(o["quantity"]),
             Decimal(o["unit_price"]) if not isinstance(o["unit_price"], Decimal)
             else o["unit_price"]) for o in objs]


# --- PostgreSQL: asyncpg pool -------------------------------------------------------------

PG_A = "select * from orders where id = $1"
PG_B = f"select * from orders where customer_id = $1 order by ordered_at desc limit {PAGE}"
PG_C = f"""
select coalesce(json_agg(t), '[]'::json)::text
from (
  select o.*,
         (select row_to_json(c) from customers c where c.id = o.customer_id) as customer,
         coalesce(i.items, '[]'::json) as order_items
  from orders o
  left join lateral (
    select json_agg(oi) as items from order_items oi where oi.order_id = o.id
  ) i on true
  where o.customer_id = $1
  order by o.ordered_at desc
  limit {PAGE}
) t
"""


PG_INSERT_ONE = ("insert into order_items (order_id, product_id, quantity, unit_price) "
                 "values ($1, $2, $3, $4)")
PG_INSERT_MANY = ("insert into order_items (order_id, product_id, quantity, unit_price) "
                  "select * from unnest($1::int[], $2::int[], $3::int[], $4::numeric[])")


class PostgresBackend:
    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresBackend:
        pool = await asyncpg.create_pool(url, min_size=PG_POOL_SIZE, max_size=PG_POOL_SIZE)
        return cls(pool)

    async def a(self, order_id: int) -> bytes:
        rows = await self._pool.fetch(PG_A, order_id)
        return ENCODER.encode([dict(r) for r in rows])

    async def b(self, customer_id: int) -> bytes:
        rows = await self._pool.fetch(PG_B, customer_id)
        return ENCODER.encode([dict(r) for r in rows])

    async def c(self, customer_id: int) -> bytes:
        text: str = await self._pool.fetchval(PG_C, customer_id)
        return text.encode()

    async def p(self, product_id: int) -> bytes:
        rows = await self._pool.fetch("select * from products where id = $1", product_id)
        return ENCODER.encode([dict(r) for r in rows])

    async def insert(self, rows: list[ItemRow]) -> None:
        if len(rows) == 1:
            await self._pool.execute(PG_INSERT_ONE, *rows[0])
        else:
            await self._pool.execute(PG_INSERT_MANY, *zip(*rows, strict=True))

    async def close(self) -> None:
        await self._pool.close()


# --- SQLite: stdlib sqlite3; reads on the loop's thread, writes on one writer thread -------

Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _to_bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _to_number(value: Any) -> Any:
    return Decimal(value) if isinstance(value, str) else value


def _to_json(value: Any) -> Any:
    return msgspec.Raw(value.encode()) if isinstance(value, str) else value


def _kind(declared: str) -> str:
    """Classify a declared SQLite column type the way the baseline must render it."""
    t = declared.upper()
    if "BOOL" in t:
        return "bool"
    if "JSON" in t:
        return "json"
    if any(k in t for k in ("NUMERIC", "DECIMAL", "REAL", "FLOA", "DOUB")):
        return "number"
    return "plain"


CONVERTERS: dict[str, Convert] = {
    "bool": _to_bool,
    "number": _to_number,
    "json": _to_json,
    "plain": _identity,
}


def _sql_json_value(alias: str, column: str, kind: str) -> str:
    """A SQL expression that json_object() renders with Headwater's JSON typing."""
    ref = f'{alias}."{column}"'
    if kind == "bool":
        return (f"(case when {ref} is null then null when {ref} then json('true')"
                f" else json('false') end)")
    if kind == "json":
        return f"json({ref})"
    if kind == "number":
        return f"(case when typeof({ref}) = 'text' then cast({ref} as real) else {ref} end)"
    return ref


def _json_object_sql(alias: str, columns: Sequence[tuple[str, str]]) -> str:
    args = ", ".join(f"'{name}', {_sql_json_value(alias, name, kind)}" for name, kind in columns)
    return f"json_object({args})"


class SqliteBackend:
    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        # SQLite has one writer at a time: one thread and one connection do all the writes.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="baseline-sqlite-w")
        self._write_conn: sqlite3.Connection | None = None
        schema = sqlite3.connect(path)
        try:
            schema.execute("pragma journal_mode=wal")
            products = self._columns(schema, "products")
            self._product_names = tuple(name for name, _ in products)
            self._product_convert = tuple(CONVERTERS[kind] for _, kind in products)
            tables = {r[0] for r in schema.execute("select name from sqlite_master")}
            # The products-only data (big and peer parts) has no orders: /a, /b, /c answer 500.
            demo = ("orders", "customers", "order_items")
            orders, customers, items = (self._columns(schema, t) if t in tables
                                        else [("id", "plain")] for t in demo)
        finally:
            schema.close()
        self._order_names = tuple(name for name, _ in orders)
        self._order_convert = tuple(CONVERTERS[kind] for _, kind in orders)
        self._sql_a = "select * from orders where id = ?"
        self._sql_b = (
            f"select * from orders where customer_id = ? order by ordered_at desc limit {PAGE}"
        )
        order_fields = ", ".join(
            f"'{name}', {_sql_json_value('o', name, kind)}" for name, kind in orders
        )
        self._sql_c = f"""
select coalesce(json_group_array(json(t.j)), '[]')
from (
  select json_object({order_fields},
    'customer', json((select {_json_object_sql('c', customers)}
                      from customers c where c.id = o.customer_id)),
    'order_items', json(coalesce((select json_group_array(json({_json_object_sql('oi', items)}))
                                  from order_items oi where oi.order_id = o.id), '[]'))
  ) as j
  from orders o
  where o.customer_id = ?
  order by o.ordered_at desc
  limit {PAGE}
) t
"""

    @staticmethod
    def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
        rows = conn.execute(f'pragma table_info("{table}")').fetchall()
        if not rows:
            raise RuntimeError(f"table {table!r} not found in the SQLite database")
        return [(str(r[1]), _kind(str(r[2] or ""))) for r in rows]

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)  # per thread
        if conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=False)
            conn.execute("pragma query_only=1")
            self._local.conn = conn
        return conn

    def _orders(self, sql: str, arg: int) -> bytes:
        rows = self._conn().execute(sql, (arg,)).fetchall()
        names, convert = self._order_names, self._order_convert
        return ENCODER.encode(
            [{n: f(v) for n, f, v in zip(names, convert, row, strict=True)} for row in rows]
        )

    def _product(self, product_id: int) -> bytes:
        rows = self._conn().execute("select * from products where id = ?",
                                    (product_id,)).fetchall()
        names, convert = self._product_names, self._product_convert
        return ENCODER.encode(
            [{n: f(v) for n, f, v in zip(names, convert, row, strict=True)} for row in rows]
        )

    def _embedded(self, customer_id: int) -> bytes:
        row = self._conn().execute(self._sql_c, (customer_id,)).fetchone()
        return str(row[0]).encode()

    async def _run(self, fn: Callable[..., bytes], *args: Any) -> bytes:
        # Reads run on the event loop's thread: these queries take SQLite microseconds, and a
        # thread hop would cost more than the query (the floor of overhead; Headwater does
        # the same, with a time budget, see headwater.db.sqlite._InlineReader).
        return fn(*args)

    async def a(self, order_id: int) -> bytes:
        return await self._run(self._orders, self._sql_a, order_id)

    async def b(self, customer_id: int) -> bytes:
        return await self._run(self._orders, self._sql_b, customer_id)

    async def c(self, customer_id: int) -> bytes:
        return await self._run(self._embedded, customer_id)

    async def p(self, product_id: int) -> bytes:
        return await self._run(self._product, product_id)

    def _insert(self, rows: list[ItemRow]) -> bytes:
        if self._write_conn is None:
            self._write_conn = sqlite3.connect(self._path, check_same_thread=False,
                                               isolation_level=None)
            self._write_conn.execute("pragma busy_timeout=5000")
            self._write_conn.execute("pragma foreign_keys=on")
        conn = self._write_conn
        conn.execute("begin immediate")
        try:
            conn.executemany(
                "insert into order_items (order_id, product_id, quantity, unit_price) "
                "values (?, ?, ?, ?)", [(o, p, q, str(u)) for o, p, q, u in rows])
        except BaseException:
            conn.execute("rollback")
            raise
        conn.execute("commit")
        return b""

    async def insert(self, rows: list[ItemRow]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, self._insert, rows)

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        if self._write_conn is not None:
            self._write_conn.close()


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return url[len(prefix) :]


async def open_backend(url: str) -> Backend:
    if url.startswith(("postgresql://", "postgres://")):
        return await PostgresBackend.open(url)
    return SqliteBackend(sqlite_path(url))


# --- ASGI app -----------------------------------------------------------------------------


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def create_app() -> Starlette:
    """The ASGI factory (``--factory baseline:create_app``); reads BASELINE_DATABASE_URL."""
    url = os.environ.get(ENV_URL, "")
    redis_url = os.environ.get(ENV_REDIS, "")
    holder: dict[str, Backend] = {}
    redis_holder: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if url:
            holder["db"] = await open_backend(url)
        if redis_url:
            import redis.asyncio

            redis_holder["r"] = redis.asyncio.Redis.from_url(redis_url)
        try:
            yield
        finally:
            if "db" in holder:
                await holder.pop("db").close()
            if "r" in redis_holder:
                await redis_holder.pop("r").aclose()

    async def ceiling(request: Request) -> Response:
        return Response(CEILING_BODY, media_type=JSON)

    def endpoint(param: str, query: Callable[[Backend, int], Any]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            value = _int_param(request, param)
            if value is None:
                return Response(b'{"message":"missing or bad ' + param.encode() + b'"}', 400,
                                media_type=JSON)
            db = holder.get("db")
            if db is None:
                return Response(b'{"message":"no database configured"}', 503, media_type=JSON)
            body: bytes = await query(db, value)
            return Response(body, media_type=JSON)

        return handler

    async def naive(request: Request) -> Response:
        value = _int_param(request, "id")
        db, r = holder.get("db"), redis_holder.get("r")
        if value is None or db is None or r is None:
            return Response(b'{"message":"needs id, a database and BASELINE_REDIS_URL"}', 400,
                            media_type=JSON)
        key = f"baseline:naive:a:{value}"
        cached = await r.get(key)
        if cached is not None:
            return Response(cached, media_type=JSON, headers={"X-Cache": "HIT"})
        body = await db.a(value)
        await r.set(key, body, ex=NAIVE_TTL_S)
        return Response(body, media_type=JSON, headers={"X-Cache": "MISS"})

    async def insert(request: Request) -> Response:
        db = holder.get("db")
        if db is None:
            return Response(b'{"message":"no database configured"}', 503, media_type=JSON)
        try:
            rows = parse_items(await request.body())
        except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
            return Response(ENCODER.encode({"message": str(exc)}), 400, media_type=JSON)
        await db.insert(rows)
        return Response(b"", 201)

    routes = [
        Route("/naive", naive),
        Route("/d", insert, methods=["POST"]),
        Route("/e", insert, methods=["POST"]),
        Route("/ceiling", ceiling),
        Route("/a", endpoint("id", lambda db, v: db.a(v))),
        Route("/b", endpoint("customer_id", lambda db, v: db.b(v))),
        Route("/c", endpoint("customer_id", lambda db, v: db.c(v))),
        Route("/p", endpoint("id", lambda db, v: db.p(v))),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
