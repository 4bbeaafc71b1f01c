"""The demo data set: exact counts, consistent rows, and the same rows on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import math
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from headwater.demo import DemoCounts, build_demo, counts_for_scale
from headwater.errors import DemoTargetBusy
from tests.integration.conftest import PgDatabaseFactory

SCALE = 0.05
DB_PREFIX = "hw_demo_test"

Kind = Literal["int", "text", "decimal", "float", "bool", "date", "timestamp", "json"]
COLUMNS: dict[str, tuple[tuple[str, Kind], ...]] = {
    "customers": (("id", "int"), ("name", "text"), ("email", "text"), ("country", "text"),
                  ("created_at", "timestamp"), ("is_active", "bool"), ("referred_by", "int")),
    "products": (("id", "int"), ("name", "text"), ("sku", "text"), ("price", "decimal"),
                 ("weight_kg", "float"), ("in_stock", "bool"), ("released_on", "date"),
                 ("attributes", "json")),
    "orders": (("id", "int"), ("customer_id", "int"), ("status", "text"),
               ("ordered_at", "timestamp"), ("shipped_on", "date"), ("note", "text"),
               ("total", "decimal")),
    "order_items": (("id", "int"), ("order_id", "int"), ("product_id", "int"),
                    ("quantity", "int"), ("unit_price", "decimal")),
}
TABLES = tuple(COLUMNS)
STATUSES = {"pending", "paid", "shipped", "cancelled"}
TIMESTAMP = re.compile(r"202[345]-\d\d-\d\dT\d\d:\d\d:\d\d")
DATE = re.compile(r"202[345]-\d\d-\d\d")
CENT = Decimal("0.01")

Value = str | None
Dump = dict[str, list[tuple[Value, ...]]]
ProgressCall = tuple[str, int, int]


# --- canonical dumps: every value as text, whatever the driver returned ---------------------

def canonical(kind: Kind, value: object) -> Value:
    if value is None:
        return None
    if kind == "int":
        assert type(value) is int
        return str(value)
    if kind == "text":
        assert isinstance(value, str)
        return value
    if kind == "decimal":
        # SQLite's NUMERIC affinity hands back REAL or INTEGER; PostgreSQL a Decimal.
        assert isinstance(value, Decimal | int | float)
        assert not isinstance(value, bool)
        return str(Decimal(str(value)).quantize(CENT))
    if kind == "float":
        assert isinstance(value, float)
        return repr(value)
    if kind == "bool":
        assert value in (0, 1)  # True/False from PostgreSQL, 0/1 from SQLite
        return "true" if value else "false"
    if kind == "timestamp":
        text = value.isoformat() if isinstance(value, datetime) else value
        assert isinstance(text, str)
        assert TIMESTAMP.fullmatch(text), text
        return text
    if kind == "date":
        assert not isinstance(value, datetime)
        text = value.isoformat() if isinstance(value, date) else value
        assert isinstance(text, str)
        assert DATE.fullmatch(text), text
        return text
    assert isinstance(value, str)  # json: text from both drivers
    return json.dumps(json.loads(value), sort_keys=True, ensure_ascii=False)


def select_sql(table: str) -> str:
    return f"SELECT {', '.join(c for c, _ in COLUMNS[table])} FROM {table} ORDER BY id"


def canonical_row(table: str, row: Any) -> tuple[Value, ...]:
    return tuple(canonical(kind, v) for (_, kind), v in zip(COLUMNS[table], row, strict=True))


def sqlite_dump(path: Path) -> Dump:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {t: [canonical_row(t, r) for r in conn.execute(select_sql(t))] for t in TABLES}


async def pg_dump(url: str) -> Dump:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return {t: [canonical_row(t, r) for r in await conn.fetch(select_sql(t))]
                for t in TABLES}
    finally:
        await conn.close()


def table_sizes(counts: DemoCounts) -> dict[str, int]:
    return {"customers": counts.customers, "products": counts.products,
            "orders": counts.orders, "order_items": counts.order_items}


def check_consistent(dump: Dump, counts: DemoCounts) -> None:
    assert {t: len(rows) for t, rows in dump.items()} == table_sizes(counts)
    for rows in dump.values():
        assert [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]

    customers = {r[0]: r for r in dump["customers"]}
    products = {r[0]: r for r in dump["products"]}
    assert len({r[2] for r in customers.values()}) == len(customers)  # email unique
    assert len({r[2] for r in products.values()}) == len(products)  # sku unique
    for cid, _, _, country, _, _, referred_by in customers.values():
        assert country is None or re.fullmatch("[A-Z]{2}", country)
        if referred_by is not None:
            assert referred_by in customers
            assert int(referred_by) < int(cid or 0)
    for product in products.values():
        assert Decimal(product[3] or "-1") >= 0

    sums: defaultdict[Value, Decimal] = defaultdict(Decimal)
    orders = {r[0] for r in dump["orders"]}
    for _, order_id, product_id, quantity, unit_price in dump["order_items"]:
        assert order_id in orders
        assert product_id in products
        assert int(quantity or 0) > 0
        sums[order_id] += int(quantity or 0) * Decimal(unit_price or "nan")

    for oid, cid, status, ordered_at, shipped_on, _, total in dump["orders"]:
        assert cid in customers
        assert status in STATUSES
        assert ordered_at is not None
        assert ordered_at >= (customers[cid][4] or "")
        assert (shipped_on is not None) == (status == "shipped")
        if shipped_on is not None:
            assert shipped_on >= ordered_at[:10]
        assert oid in sums, "every order has items"
        assert Decimal(total or "nan") == sums[oid]

    names = [r[1] or "" for r in customers.values()]
    assert "李雷" in names
    assert any(not n.isascii() for n in names)
    assert any(ord(ch) > 0xFFFF for n in names for ch in n), "an emoji outside the BMP"


def check_progress(calls: list[ProgressCall], counts: DemoCounts) -> None:
    first_seen: list[str] = []
    last: dict[str, tuple[int, int]] = {}
    for table, done, total in calls:
        if table not in last:
            first_seen.append(table)
        assert 0 < done <= total
        assert done > last.get(table, (0, 0))[0]
        last[table] = (done, total)
    assert first_seen == list(TABLES)
    assert last == {t: (n, n) for t, n in table_sizes(counts).items()}


def leftovers(directory: Path, keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != keep)


# --- sizes --------------------------------------------------------------------------------

def test_counts_for_scale() -> None:
    assert counts_for_scale(1) == DemoCounts(customers=500, products=200, orders=2_500,
                                             order_items=10_000)
    assert counts_for_scale(100) == DemoCounts(customers=50_000, products=200, orders=250_000,
                                               order_items=1_000_000)
    assert counts_for_scale(SCALE) == DemoCounts(customers=25, products=20, orders=125,
                                                 order_items=500)


@pytest.mark.parametrize("scale", [1e-6, 0.0003, 0.01, 0.37, 2.5])
def test_counts_for_tiny_and_odd_scales(scale: float) -> None:
    counts = counts_for_scale(scale)
    assert counts.customers >= 1
    assert 20 <= counts.products <= 200
    assert 1 <= counts.orders <= counts.order_items


@pytest.mark.parametrize("scale", [0, -1, math.nan, math.inf, 1e9])
def test_counts_reject_impossible_scales(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        counts_for_scale(scale)


@pytest.mark.parametrize("url", ["mysql://admin:s3cret@db/shop", "sqlite:///", "sqlite:///:memory:",
                                 "demo.db"])
async def test_rejects_unsupported_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///") as info:
        await build_demo(url, scale=SCALE, force=True)
    assert "s3cret" not in str(info.value)


# --- SQLite -------------------------------------------------------------------------------

async def test_sqlite_build(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    calls: list[ProgressCall] = []

    counts = await build_demo(f"sqlite:///{path}", scale=SCALE, force=True,
                              progress=lambda *call: calls.append(call))

    assert counts == counts_for_scale(SCALE)
    assert leftovers(tmp_path, keep="demo.db") == [], "no temp, -wal or -journal files"
    check_progress(calls, counts)
    check_consistent(sqlite_dump(path), counts)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The storage formats other readers rely on: ISO text with a T, 0/1, compact JSON.
        assert conn.execute("SELECT DISTINCT typeof(created_at), typeof(is_active) "
                            "FROM customers").fetchall() == [("text", "integer")]
        assert {r[0] for r in conn.execute("SELECT is_active FROM customers")} <= {0, 1}
        for (raw,) in conn.execute("SELECT attributes FROM products "
                                   "WHERE attributes IS NOT NULL"):
            assert raw == json.dumps(json.loads(raw), separators=(",", ":"),
                                     ensure_ascii=False, sort_keys=True)
        indexes = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%_idx'")}
        assert indexes == {"orders_customer_id_ordered_at_idx", "order_items_order_id_idx",
                           "order_items_product_id_idx", "customers_referred_by_idx"}
        assert conn.execute("SELECT count(*), sum(order_count) FROM customer_totals"
                            ).fetchone() == (counts.customers, counts.orders)
        assert conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0  # ANALYZE


async def test_sqlite_rebuild_is_identical_and_seed_matters(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    await build_demo(f"sqlite:///{path}", scale=SCALE, force=True)
    first = sqlite_dump(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM order_items WHERE id > 10")
        conn.commit()

    await build_demo(f"sqlite:///{path}", scale=SCALE, force=True)
    assert sqlite_dump(path) == first
    assert leftovers(tmp_path, keep="demo.db") == []

    await build_demo(f"sqlite:///{path}", scale=SCALE, force=True, seed=8)
    assert sqlite_dump(path) != first


async def test_sqlite_relative_url_and_non_database_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.db").write_bytes(b"not a database" * 100)

    await build_demo("sqlite:///demo.db", scale=SCALE, force=True)

    check_consistent(sqlite_dump(tmp_path / "demo.db"), counts_for_scale(SCALE))


async def test_sqlite_refuses_a_file_in_use(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    await build_demo(f"sqlite:///{path}", scale=SCALE, force=True)
    before = sqlite_dump(path)

    with contextlib.closing(sqlite3.connect(path)) as reader:
        reader.execute("SELECT count(*) FROM orders").fetchone()
        with pytest.raises(DemoTargetBusy):
            await build_demo(f"sqlite:///{path}", scale=SCALE, force=True, seed=8)

    assert sqlite_dump(path) == before
    assert leftovers(tmp_path, keep="demo.db") == []


class Boom(Exception):
    pass


def explode_on(table: str) -> Callable[[str, int, int], None]:
    def progress(name: str, done: int, total: int) -> None:
        if name == table:
            raise Boom(name)
    return progress


async def test_sqlite_failed_build_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    await build_demo(f"sqlite:///{path}", scale=SCALE, force=True)
    before = sqlite_dump(path)

    with pytest.raises(Boom):
        await build_demo(f"sqlite:///{path}", scale=SCALE, force=True, seed=8,
                         progress=explode_on("order_items"))

    assert sqlite_dump(path) == before
    assert leftovers(tmp_path, keep="demo.db") == []


async def test_sqlite_scale_1_has_the_promised_shape(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    counts = await build_demo(f"sqlite:///{path}", scale=1, force=True)
    dump = sqlite_dump(path)
    check_consistent(dump, counts)

    def share(table: str, column: int, pred: Any = lambda v: v is None) -> float:
        rows = dump[table]
        return sum(1 for r in rows if pred(r[column])) / len(rows)

    assert 0.05 < share("customers", 3) < 0.15  # country NULL
    assert 0.75 < share("customers", 6) < 0.85  # referred_by NULL
    assert share("orders", 5) > 0.85  # note mostly NULL
    assert 0 < share("products", 7) < 0.5  # attributes sometimes NULL
    assert {r[2] for r in dump["orders"]} == STATUSES
    per_order: defaultdict[Value, int] = defaultdict(int)
    for item in dump["order_items"]:
        per_order[item[1]] += 1
    assert min(per_order.values()) >= 1
    assert max(per_order.values()) <= 7
    assert sum(1 for n in per_order.values() if n == 4) > 0.1 * len(per_order)
    # The last orders are as varied as the rest, not squeezed to hit the exact total.
    tail = [per_order[str(i)] for i in range(counts.orders - 100, counts.orders + 1)]
    assert len(set(tail)) >= 3


# --- PostgreSQL ---------------------------------------------------------------------------

@pytest.mark.postgres
async def test_postgres_has_the_same_rows_as_sqlite(
        pg_database_factory: PgDatabaseFactory, tmp_path: Path) -> None:
    url = await pg_database_factory(DB_PREFIX)
    calls: list[ProgressCall] = []

    counts = await build_demo(url, scale=SCALE, force=True, progress=lambda *call: calls.append(call))
    await build_demo(f"sqlite:///{tmp_path / 'demo.db'}", scale=SCALE, force=True)

    check_progress(calls, counts)
    dump = await pg_dump(url)
    check_consistent(dump, counts)
    assert dump == sqlite_dump(tmp_path / "demo.db")


@pytest.mark.postgres
async def test_postgres_constraints_sequences_and_rebuild(
        pg_database_factory: PgDatabaseFactory) -> None:
    url = await pg_database_factory(DB_PREFIX)
    counts = await build_demo(url, scale=SCALE, force=True)
    first = await pg_dump(url)

    conn = await asyncpg.connect(url, timeout=5)
    try:
        # Identity sequences continue after the loaded ids; defaults apply.
        row = await conn.fetchrow("INSERT INTO orders (customer_id, ordered_at) "
                                  "VALUES (1, '2025-01-01T00:00:00') RETURNING id, status, total")
        assert row is not None
        assert tuple(row) == (counts.orders + 1, "pending", Decimal("0.00"))
        for table in ("customers", "products", "order_items"):
            assert await conn.fetchval(
                f"SELECT last_value FROM pg_sequences WHERE sequencename = '{table}_id_seq'"
            ) == table_sizes(counts)[table]
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO order_items (order_id, product_id, quantity, "
                               "unit_price) VALUES (999999, 1, 1, 1)")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE orders SET status = 'lost' WHERE id = 1")
        await conn.execute("DELETE FROM orders WHERE id = 1")  # cascades to its items
        assert await conn.fetchval("SELECT count(*) FROM order_items WHERE order_id = 1") == 0
        indexes = {r[0] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname LIKE '%\\_idx'")}
        assert indexes == {"orders_customer_id_ordered_at_idx", "order_items_order_id_idx",
                           "order_items_product_id_idx", "customers_referred_by_idx"}
        assert await conn.fetchval("SELECT sum(order_count) FROM customer_totals") == (
            counts.orders)  # one deleted, one added
        assert await conn.fetchval("SELECT count(*) FROM pg_stats WHERE schemaname = 'public' "
                                   "AND tablename = 'order_items'") > 0  # ANALYZE ran
        await conn.execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100")
    finally:
        await conn.close()

    await build_demo(url, scale=SCALE, force=True)

    assert await pg_dump(url) == first
    with pytest.raises(Boom):
        await build_demo(url, scale=SCALE, force=True, seed=8, progress=explode_on("order_items"))
    assert await pg_dump(url) == first, "a failed build changes nothing"
    conn = await asyncpg.connect(url, timeout=5)
    try:
        # DROP ... CASCADE took the dependent view with it.
        assert await conn.fetchval("SELECT to_regclass('public.big_orders')") is None
    finally:
        await conn.close()


# --- SQLAlchemy sees one schema -----------------------------------------------------------

def describe_type(t: sa.types.TypeEngine[Any]) -> str:
    # Order matters: Boolean before Integer, Float before Numeric (Float is a Numeric).
    if isinstance(t, sa.Boolean):
        return "boolean"
    if isinstance(t, sa.Integer):
        return "integer"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.Numeric):
        return f"numeric({t.precision},{t.scale})"
    if isinstance(t, sa.DateTime):
        return f"timestamp(tz={t.timezone})"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.JSON):
        return "json"
    if isinstance(t, sa.String):
        return f"string({t.length})"
    raise AssertionError(f"unexpected type {t!r}")


def reflect(conn: Connection) -> dict[str, Any]:
    insp = sa.inspect(conn)
    out: dict[str, Any] = {"views": sorted(insp.get_view_names())}
    for table in TABLES:
        out[table] = {
            "columns": [(c["name"], describe_type(c["type"]), c["nullable"])
                        for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted((fk["constrained_columns"][0], fk["referred_table"],
                           fk["referred_columns"][0]) for fk in insp.get_foreign_keys(table)),
        }
    return out


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[tuple[Path, sa.Engine]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    yield tmp_path / "demo.db", engine
    engine.dispose()


@pytest.mark.postgres
async def test_sqlalchemy_reflects_the_same_schema_on_both(
        pg_database_factory: PgDatabaseFactory,
        sqlite_engine: tuple[Path, sa.Engine]) -> None:
    path, engine = sqlite_engine
    url = await pg_database_factory(DB_PREFIX)
    await build_demo(f"sqlite:///{path}", scale=SCALE, force=True)
    await build_demo(url, scale=SCALE, force=True)

    with engine.connect() as conn:
        on_sqlite = reflect(conn)
    pg_engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with pg_engine.connect() as aconn:
            on_postgres = await aconn.run_sync(reflect)
    finally:
        await pg_engine.dispose()

    assert on_sqlite == on_postgres
    assert on_sqlite["views"] == ["customer_totals"]
    assert ("email", "string(200)", False) in on_sqlite["customers"]["columns"]
    assert ("price", "numeric(10,2)", False) in on_sqlite["products"]["columns"]
    assert ("weight_kg", "float", True) in on_sqlite["products"]["columns"]
    assert ("attributes", "json", True) in on_sqlite["products"]["columns"]
    assert ("created_at", "timestamp(tz=False)", False) in on_sqlite["customers"]["columns"]
