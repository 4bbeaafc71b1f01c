"""The write SQL compiler (pure): INSERT / UPDATE / DELETE text and parameters on both dialects,
and, stronger than the text, the SQLite statements run on an in-memory database to see which
rows really change."""

from __future__ import annotations

import decimal
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.db.dml import (
    compile_insert,
    compile_mutation,
    compile_old_rows,
    insert_params,
    mutation_params,
)
from headwater.db.sql import Dialect
from headwater.model.catalog import Catalog, Column, Table
from headwater.model.grammar import parse_query, split_query_string
from headwater.model.plan import InsertPlan, MutatePlan, Value
from headwater.model.request import ApiRequest
from headwater.service.plan import plan_insert, plan_mutation


def _table(name: str, cols: list[Column],
           unique: tuple[tuple[str, ...], ...] = ()) -> Table:
    return Table(name, MappingProxyType({c.name: c for c in cols}),
                 tuple(c.name for c in cols if c.primary_key), unique=unique)


ITEMS = _table("items", [
    Column("id", "integer", "int4", nullable=False, primary_key=True, int_bits=32),
    Column("sku", "text", "text"),
    Column("qty", "integer", "int4", int_bits=32),
    Column("price", "numeric", "numeric"),
    Column("active", "boolean", "bool", has_default=True),
], unique=(("sku",),))
LINES = _table("lines", [
    Column("order_id", "integer", "int4", nullable=False, primary_key=True),
    Column("line", "integer", "int4", nullable=False, primary_key=True),
    Column("qty", "integer", "int4"),
])
CAT = Catalog.build([ITEMS, LINES], "sqlite")

DDL = """
CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, qty INTEGER, price NUMERIC,
                    active BOOLEAN DEFAULT 1);
CREATE TABLE lines (order_id INTEGER, line INTEGER, qty INTEGER, PRIMARY KEY (order_id, line));
"""
SEED = [(1, "a", 5, 1.5, 1), (2, "b", None, None, None), (3, "c", 7, 2.25, 0),
        (4, "d", 1, 0.5, 1), (5, "e", 7, None, 0), (6, "f", 3, 10, 1)]
# What SQLite's RETURNING gives for each: booleans as JSON booleans, as reads give them.
SEED_JSON = {r[0]: {"id": r[0], "sku": r[1], "qty": r[2], "price": r[3],
                    "active": None if r[4] is None else bool(r[4])} for r in SEED}

SQLITE_ITEM = ("json_object('id', \"id\", 'sku', \"sku\", 'qty', \"qty\", 'price', \"price\", "
               "'active', json(CASE WHEN \"active\" IS NULL THEN NULL WHEN \"active\" THEN 'true' "
               "ELSE 'false' END))")


def fresh_db(seed: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(DDL)
    if seed:
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", SEED)
        conn.executemany("INSERT INTO lines VALUES (?, ?, ?)",
                         [(o, n, o * 10 + n) for o in (1, 2) for n in (1, 2, 3)])
    return conn


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = fresh_db()
    yield conn
    conn.close()


def run(db: sqlite3.Connection, sql: str, params: list[object]) -> list[dict[str, Any]]:
    """The statement's rows, each one JSON object text, decoded."""
    return [json.loads(r[0]) for r in db.execute(sql, params).fetchall()]


def items(db: sqlite3.Connection) -> dict[int, tuple[Any, ...]]:
    return {r[0]: r for r in db.execute("SELECT id, sku, qty, price, active FROM items")}


def insert(columns: tuple[str, ...], rows: tuple[tuple[Value, ...], ...],
           **kw: Any) -> InsertPlan:
    return plan_insert(ITEMS, columns, rows, **kw)


def mutation(action: Any, qs: str, sets: tuple[tuple[str, Value], ...] = (),
             table: str = "items") -> MutatePlan:
    method = "PATCH" if action == "update" else "DELETE"
    req = ApiRequest(method, table, parse_query(split_query_string(qs)))
    return plan_mutation(CAT, req, action, sets)


def by_id(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in rows}


# --- inserts: text and parameters -------------------------------------------------------------


def test_insert_one_row() -> None:
    plan = insert(("id", "sku", "price", "active"), ((7, "g", decimal.Decimal("2.5"), True),))
    assert not plan.shape.many
    assert compile_insert("postgresql", "public", plan.shape) == (
        'INSERT INTO "public"."items" AS t0 ("id", "sku", "price", "active") '
        "VALUES ($1, $2, $3, $4) RETURNING to_json(t0)::text")
    assert insert_params("postgresql", plan) == [7, "g", decimal.Decimal("2.5"), True]
    assert compile_insert("sqlite", None, plan.shape) == (
        'INSERT INTO "items" ("id", "sku", "price", "active") VALUES (?1, ?2, ?3, ?4) '
        f"RETURNING {SQLITE_ITEM}")
    assert insert_params("sqlite", plan) == [7, "g", 2.5, 1]


def test_schema_qualifies_only_postgresql() -> None:
    shape = insert(("id",), ((1,),)).shape
    assert compile_insert("postgresql", None, shape).startswith('INSERT INTO "items" AS t0 (')
    assert compile_insert("sqlite", "public", shape) == compile_insert("sqlite", None, shape)


def test_insert_many_rows_is_one_statement_with_fixed_parameters() -> None:
    rows: tuple[tuple[Value, ...], ...] = ((7, "g", True), (8, None, False), (9, 'q"\'', None))
    plan = insert(("id", "sku", "active"), rows)
    assert plan.shape.many
    # PostgreSQL: one typed array per column, through unnest.
    assert compile_insert("postgresql", "public", plan.shape) == (
        'INSERT INTO "public"."items" AS t0 ("id", "sku", "active") '
        "SELECT * FROM unnest($1::int4[], $2::text[], $3::bool[]) RETURNING to_json(t0)::text")
    assert insert_params("postgresql", plan) == [[7, 8, 9], ["g", None, 'q"\''],
                                                 [True, False, None]]
    # SQLite: one JSON document, read back with json_each.
    assert compile_insert("sqlite", None, plan.shape) == (
        'INSERT INTO "items" ("id", "sku", "active") SELECT json_extract(value, \'$[0]\'), '
        "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?1) WHERE true"
        f" RETURNING {SQLITE_ITEM}")
    params = insert_params("sqlite", plan)
    assert len(params) == 1
    assert json.loads(str(params[0])) == [[7, "g", 1], [8, None, 0], [9, 'q"\'', None]]


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_upsert_merge_updates_every_column_but_the_conflict_ones(dialect: Dialect) -> None:
    shape = insert(("id", "sku", "qty"), ((1, "a", 2),), resolution="merge").shape
    assert shape.conflict == ("id",)  # the primary key by default
    assert ' ON CONFLICT ("id") DO UPDATE SET "sku" = excluded."sku", "qty" = excluded."qty"' \
           ' RETURNING ' in compile_insert(dialect, None, shape)
    on_sku = insert(("sku", "qty"), (("a", 2),), conflict=("sku",), resolution="merge").shape
    assert ' ON CONFLICT ("sku") DO UPDATE SET "qty" = excluded."qty" RETURNING ' in \
           compile_insert(dialect, None, on_sku)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_upsert_ignore_does_nothing_and_merge_of_keys_only_returns_the_row(
        dialect: Dialect) -> None:
    ignore = insert(("id", "sku"), ((1, "a"),), resolution="ignore").shape
    assert ' ON CONFLICT ("id") DO NOTHING RETURNING ' in compile_insert(dialect, None, ignore)
    # As PostgREST: the key "updates" to itself, so the existing row is returned.
    keys_only = insert(("id",), ((1,), (2,)), resolution="merge").shape
    assert (' ON CONFLICT ("id") DO UPDATE SET "id" = excluded."id" RETURNING '
            in compile_insert(dialect, None, keys_only))
    plain = insert(("id",), ((1,),)).shape
    assert "ON CONFLICT" not in compile_insert(dialect, None, plain)


def test_returning_rows_or_only_a_count() -> None:
    shape = insert(("id", "sku"), ((1, "a"), (2, "b"))).shape
    pg_rows = compile_insert("postgresql", "public", shape, rows=True)
    assert pg_rows.endswith(" RETURNING t0.*")
    pg_count = compile_insert("postgresql", "public", shape, count=True)
    assert pg_count.startswith("WITH w AS (INSERT INTO ")
    assert pg_count.endswith(" RETURNING 1) SELECT count(*)::int FROM w")
    # rows= wins over count=: the statement around it counts.
    assert compile_insert("postgresql", "public", shape, rows=True, count=True) == pg_rows
    # SQLite: rows= is PostgreSQL's alone; count= returns nothing (the driver counts).
    assert compile_insert("sqlite", None, shape, rows=True) == compile_insert("sqlite", None,
                                                                              shape)
    assert "RETURNING" not in compile_insert("sqlite", None, shape, count=True)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_no_columns_inserts_default_values(dialect: Dialect) -> None:
    plan = insert((), ((),))
    assert " DEFAULT VALUES RETURNING " in compile_insert(dialect, "public", plan.shape)
    assert insert_params(dialect, plan) == []


def test_compiled_text_is_memoised_per_shape() -> None:
    a = insert(("id", "sku"), ((1, "a"),)).shape
    b = insert(("id", "sku"), ((2, "zz"),)).shape
    assert a == b
    assert compile_insert("postgresql", "public", a) is compile_insert("postgresql", "public", b)
    m1, m2 = mutation("update", "id=eq.1", (("sku", "x"),)), mutation("update", "id=eq.9",
                                                                        (("sku", "y"),))
    assert compile_mutation("sqlite", None, m1.shape) is compile_mutation("sqlite", None,
                                                                          m2.shape)


# --- updates and deletes: text and parameters -------------------------------------------------


def test_update_with_filters() -> None:
    plan = mutation("update", "qty=gt.3&sku=neq.x", (("sku", "y"), ("active", False)))
    assert compile_mutation("postgresql", "public", plan.shape) == (
        'UPDATE "public"."items" AS t0 SET "sku" = $3, "active" = $4 '
        'WHERE t0."qty" > $1 AND t0."sku" <> $2 RETURNING to_json(t0)::text')
    # filters first, the values set last
    assert mutation_params("postgresql", plan) == [3, "x", "y", False]
    assert compile_mutation("sqlite", None, plan.shape) == (
        'UPDATE "items" SET "sku" = ?3, "active" = ?4 WHERE "qty" > ?1 AND "sku" <> ?2 '
        f"RETURNING {SQLITE_ITEM}")
    assert mutation_params("sqlite", plan) == [3, "x", "y", 0]


def test_delete_with_filters() -> None:
    plan = mutation("delete", "id=in.(1,3)&or=(active.is.true,price.lt.1)")
    assert compile_mutation("postgresql", "public", plan.shape) == (
        'DELETE FROM "public"."items" AS t0 WHERE t0."id" = ANY($1) AND '
        '(t0."active" IS TRUE OR t0."price" < $2) RETURNING to_json(t0)::text')
    assert mutation_params("postgresql", plan) == [[1, 3], decimal.Decimal(1)]
    assert compile_mutation("sqlite", None, plan.shape) == (
        'DELETE FROM "items" WHERE "id" IN (SELECT value FROM json_each(?1)) AND '
        f'("active" IS TRUE OR "price" < ?2) RETURNING {SQLITE_ITEM}')
    assert mutation_params("sqlite", plan) == ["[1,3]", 1.0]


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_no_filter_touches_every_row(dialect: Dialect) -> None:
    plan = mutation("delete", "")
    assert " WHERE " not in compile_mutation(dialect, None, plan.shape)
    assert mutation_params(dialect, plan) == []


def test_order_and_limit_pick_rows_by_key() -> None:
    plan = mutation("update", "qty=gt.3&order=qty.desc,sku.nullsfirst&limit=2", (("sku", "z"),))
    assert compile_mutation("postgresql", "public", plan.shape) == (
        'UPDATE "public"."items" AS t0 SET "sku" = $3 WHERE (t0."id") IN '
        '(SELECT t1."id" FROM "public"."items" AS t1 WHERE t1."qty" > $1 '
        'ORDER BY t1."qty" DESC, t1."sku" ASC NULLS FIRST LIMIT $2) RETURNING to_json(t0)::text')
    assert mutation_params("postgresql", plan) == [3, 2, "z"]
    # SQLite spells out PostgreSQL's default null order.
    assert compile_mutation("sqlite", None, plan.shape) == (
        'UPDATE "items" SET "sku" = ?3 WHERE ("id") IN (SELECT t1."id" FROM "items" AS t1 '
        'WHERE t1."qty" > ?1 ORDER BY t1."qty" DESC NULLS FIRST, t1."sku" ASC NULLS FIRST '
        f"LIMIT ?2) RETURNING {SQLITE_ITEM}")
    composite = mutation("delete", "order=qty&limit=1", table="lines")
    assert compile_mutation("postgresql", None, composite.shape) == (
        'DELETE FROM "lines" AS t0 WHERE (t0."order_id", t0."line") IN (SELECT t1."order_id", '
        't1."line" FROM "lines" AS t1 ORDER BY t1."qty" ASC LIMIT $1) RETURNING to_json(t0)::text')


def test_mutation_returning_rows_for_a_statement_around_it() -> None:
    plan = mutation("update", "id=eq.1", (("qty", 2),))
    assert compile_mutation("postgresql", "public", plan.shape, rows=True).endswith(
        " RETURNING t0.*")
    assert compile_mutation("sqlite", None, plan.shape, rows=True) == compile_mutation(
        "sqlite", None, plan.shape)


def test_old_rows_select_what_the_update_will_change() -> None:
    plan = mutation("update", "qty=gt.3&order=qty&limit=2", (("sku", "z"),))
    assert compile_old_rows("postgresql", "public", plan.shape) == (
        'SELECT to_json(t0)::text FROM "public"."items" AS t0 WHERE (t0."id") IN '
        '(SELECT t1."id" FROM "public"."items" AS t1 WHERE t1."qty" > $1 ORDER BY t1."qty" ASC '
        "LIMIT $2) FOR UPDATE")
    assert compile_old_rows("sqlite", None, plan.shape) == (
        f'SELECT {SQLITE_ITEM} FROM "items" WHERE ("id") IN (SELECT t1."id" FROM "items" AS t1 '
        'WHERE t1."qty" > ?1 ORDER BY t1."qty" ASC NULLS LAST LIMIT ?2)')


# --- SQLite: the statements run ---------------------------------------------------------------


def test_sqlite_insert_one_and_many(db: sqlite3.Connection) -> None:
    one = insert(("id", "sku", "price"), ((7, "g", decimal.Decimal("2.5")),))
    got = run(db, compile_insert("sqlite", None, one.shape), insert_params("sqlite", one))
    # the column not given takes its default
    assert got == [{"id": 7, "sku": "g", "qty": None, "price": 2.5, "active": True}]
    many = insert(("id", "sku", "qty", "active"), ((8, "h", 1, False), (9, None, None, True)))
    got = run(db, compile_insert("sqlite", None, many.shape), insert_params("sqlite", many))
    assert got == [{"id": 8, "sku": "h", "qty": 1, "price": None, "active": False},
                   {"id": 9, "sku": None, "qty": None, "price": None, "active": True}]
    after = items(db)
    assert len(after) == len(SEED) + 3
    assert after[7] == (7, "g", None, 2.5, 1)
    assert after[8] == (8, "h", 1, None, 0)


def test_sqlite_insert_default_values(db: sqlite3.Connection) -> None:
    plan = insert((), ((),))
    got = run(db, compile_insert("sqlite", None, plan.shape), insert_params("sqlite", plan))
    assert got == [{"id": 7, "sku": None, "qty": None, "price": None, "active": True}]


@pytest.mark.parametrize("many", [False, True])
def test_sqlite_upsert_merge(db: sqlite3.Connection, many: bool) -> None:
    rows: tuple[tuple[Value, ...], ...] = ((1, "a2", 50),) + (((7, "g", 70),) if many else ())
    plan = insert(("id", "sku", "qty"), rows, resolution="merge")
    got = by_id(run(db, compile_insert("sqlite", None, plan.shape),
                    insert_params("sqlite", plan)))
    assert got[1] == {**SEED_JSON[1], "sku": "a2", "qty": 50}  # price and active kept
    after = items(db)
    assert after[1] == (1, "a2", 50, 1.5, 1)
    if many:
        assert got[7] == {"id": 7, "sku": "g", "qty": 70, "price": None, "active": True}
        assert after[7] == (7, "g", 70, None, 1)
    assert len(after) == len(SEED) + many


def test_sqlite_upsert_on_another_unique_column(db: sqlite3.Connection) -> None:
    plan = insert(("sku", "qty"), (("c", 0), ("new", 9)), conflict=("sku",), resolution="merge")
    got = run(db, compile_insert("sqlite", None, plan.shape), insert_params("sqlite", plan))
    assert [(r["id"], r["sku"], r["qty"]) for r in got] == [(3, "c", 0), (7, "new", 9)]


def test_on_conflict_must_be_a_unique_key_in_any_order() -> None:
    from headwater.errors import RequestError, UnknownColumn
    from headwater.service.plan import conflict_target

    assert conflict_target(LINES, ("line", "order_id")) == ("line", "order_id")
    assert conflict_target(ITEMS, None) == ("id",)
    assert conflict_target(ITEMS, ("sku", "sku")) == ("sku",)
    with pytest.raises(RequestError) as err:
        insert(("sku", "qty"), (("a", 1),), conflict=("qty",), resolution="merge")
    assert err.value.code == "42P10" and err.value.status == 400
    assert err.value.hint is not None and "(id), (sku)" in err.value.hint
    with pytest.raises(RequestError) as err:
        conflict_target(LINES, ("line",))  # part of a key is not a key
    assert err.value.code == "42P10"
    with pytest.raises(UnknownColumn):
        conflict_target(ITEMS, ("nope",))
    unique_index = Table("u", ITEMS.columns, (), unique_indexes=(("qty", "sku"),))
    assert conflict_target(unique_index, ("sku", "qty")) == ("sku", "qty")


def _guarded(columns: tuple[str, ...], rows: tuple[tuple[Value, ...], ...],
             **kw: Any) -> InsertPlan:
    """A merge under the update policy ``qty=gt.4`` (USING and WITH CHECK)."""
    from headwater.model.request import Condition
    from headwater.service.policy import Rule

    cond = Condition("qty", "gt", "4")
    return insert(columns, rows, resolution="merge", update=Rule(None, cond, cond), **kw)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_guarded_merge_puts_the_update_policy_in_the_statement(dialect: Dialect) -> None:
    one = _guarded(("id", "sku", "qty"), ((1, "z", 6),))
    assert one.guarded
    want = {"postgresql": ' DO UPDATE SET "sku" = excluded."sku", "qty" = excluded."qty" '
                          'WHERE t0."qty" > $4 AND excluded."qty" > $5 RETURNING ',
            "sqlite": ' DO UPDATE SET "sku" = excluded."sku", "qty" = excluded."qty" '
                      'WHERE "items"."qty" > ?4 AND excluded."qty" > ?5 RETURNING '}
    assert want[dialect] in compile_insert(dialect, None, one.shape)
    assert insert_params(dialect, one)[3:] == [4, 4]
    # many rows: after PostgreSQL's arrays, or SQLite's one document; a column the statement
    # does not set is checked as it is
    many = _guarded(("id", "sku"), ((1, "z"), (2, "y")))
    sql = compile_insert(dialect, None, many.shape)
    if dialect == "postgresql":
        assert 'WHERE t0."qty" > $3 AND t0."qty" > $4 RETURNING ' in sql
    else:
        assert 'WHERE "items"."qty" > ?2 AND "items"."qty" > ?3 RETURNING ' in sql
    # a body of only the key updates it to itself (as PostgREST): guarded like any merge
    key_only = _guarded(("id",), ((1,),))
    assert key_only.guarded
    assert "WHERE" in compile_insert(dialect, None, key_only.shape)
    # not a merge: no WHERE, nothing to count
    assert not insert(("id", "sku"), ((1, "a"),), resolution="merge").guarded


def test_sqlite_guarded_merge_leaves_refused_rows_alone(db: sqlite3.Connection) -> None:
    # row 1 (qty 5) passes the policy, row 2 (qty NULL) does not; 7 is new
    plan = _guarded(("id", "sku", "qty"), ((1, "a1", 6), (2, "b1", 6), (7, "g", 9)))
    got = run(db, compile_insert("sqlite", None, plan.shape), insert_params("sqlite", plan))
    assert sorted(r["id"] for r in got) == [1, 7]  # fewer rows than sent: the writer refuses
    assert items(db)[2] == (2, "b", None, None, None)
    # the new row must pass the check too
    plan = _guarded(("id", "qty"), ((3, 1),))
    assert run(db, compile_insert("sqlite", None, plan.shape), insert_params("sqlite", plan)) \
        == []
    assert items(db)[3][2] == 7


def test_sqlite_upsert_ignore_returns_only_new_rows(db: sqlite3.Connection) -> None:
    plan = insert(("id", "sku", "qty"), ((1, "zzz", 0), (7, "g", 70)), resolution="ignore")
    got = run(db, compile_insert("sqlite", None, plan.shape), insert_params("sqlite", plan))
    assert [r["id"] for r in got] == [7]
    assert items(db)[1] == (1, "a", 5, 1.5, 1)


def test_sqlite_insert_count_returns_no_rows(db: sqlite3.Connection) -> None:
    plan = insert(("id", "sku"), ((7, "g"), (8, "h"), (9, "i")))
    cur = db.execute(compile_insert("sqlite", None, plan.shape, count=True),
                     insert_params("sqlite", plan))
    assert cur.fetchall() == []
    assert cur.rowcount == 3
    assert len(items(db)) == len(SEED) + 3


def test_sqlite_update_with_filters(db: sqlite3.Connection) -> None:
    plan = mutation("update", "qty=gte.5&active=is.false",
                    (("price", decimal.Decimal("9.75")), ("active", True)))
    got = by_id(run(db, compile_mutation("sqlite", None, plan.shape),
                    mutation_params("sqlite", plan)))
    assert got == {i: {**SEED_JSON[i], "price": 9.75, "active": True} for i in (3, 5)}
    after = items(db)
    assert {i for i, r in after.items() if r[3:] == (9.75, 1)} == {3, 5}
    assert {i: after[i] for i in (1, 2, 4, 6)} == {r[0]: r for r in SEED if r[0] in (1, 2, 4, 6)}


def test_sqlite_update_with_in_list_and_null_value(db: sqlite3.Connection) -> None:
    plan = mutation("update", "id=in.(2,4,99)", (("price", None), ("qty", 0)))
    got = run(db, compile_mutation("sqlite", None, plan.shape), mutation_params("sqlite", plan))
    assert sorted(r["id"] for r in got) == [2, 4]
    assert items(db)[4] == (4, "d", 0, None, 1)


def test_sqlite_delete_with_filters(db: sqlite3.Connection) -> None:
    plan = mutation("delete", "or=(qty.is.null,price.gt.2)")
    got = by_id(run(db, compile_mutation("sqlite", None, plan.shape),
                    mutation_params("sqlite", plan)))
    assert got == {i: SEED_JSON[i] for i in (2, 3, 6)}
    assert sorted(items(db)) == [1, 4, 5]


def test_sqlite_order_and_limit(db: sqlite3.Connection) -> None:
    plan = mutation("update", "qty=gte.1&order=qty.desc,id&limit=2", (("price", 0),))
    got = run(db, compile_mutation("sqlite", None, plan.shape), mutation_params("sqlite", plan))
    assert sorted(r["id"] for r in got) == [3, 5]
    # descending puts nulls first, as on PostgreSQL
    plan = mutation("delete", "order=qty.desc&limit=1")
    got = run(db, compile_mutation("sqlite", None, plan.shape), mutation_params("sqlite", plan))
    assert [r["id"] for r in got] == [2]
    assert 2 not in items(db)


def test_sqlite_limit_on_a_composite_key(db: sqlite3.Connection) -> None:
    plan = mutation("delete", "qty=gt.11&order=qty.desc&limit=2", table="lines")
    sql = compile_mutation("sqlite", None, plan.shape, rows=True)
    assert sql.startswith('DELETE FROM "lines" WHERE ("order_id", "line") IN (SELECT ')
    got = run(db, sql, mutation_params("sqlite", plan))
    assert sorted((r["order_id"], r["line"]) for r in got) == [(2, 2), (2, 3)]
    assert db.execute("SELECT count(*) FROM lines").fetchone() == (4,)


def test_sqlite_old_rows_are_the_rows_before_the_update(db: sqlite3.Connection) -> None:
    plan = mutation("update", "qty=gt.1&order=qty.desc,id&limit=3", (("qty", 0),))
    params = mutation_params("sqlite", plan)
    old = by_id(run(db, compile_old_rows("sqlite", None, plan.shape),
                    params[:len(params) - len(plan.shape.assignments)]))
    new = by_id(run(db, compile_mutation("sqlite", None, plan.shape), params))
    assert old == {i: SEED_JSON[i] for i in (1, 3, 5)}
    assert new == {i: {**SEED_JSON[i], "qty": 0} for i in (1, 3, 5)}


# --- SQLite: properties -----------------------------------------------------------------------

ItemRow = tuple[int, str | None, int | None, decimal.Decimal | None, bool | None]
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10)
item_rows = st.lists(
    st.tuples(st.integers(-(2 ** 31), 2 ** 31 - 1), st.one_of(st.none(), text),
              st.one_of(st.none(), st.integers(-1000, 1000)),
              st.one_of(st.none(), st.decimals(-10 ** 6, 10 ** 6, places=2)),
              st.one_of(st.none(), st.booleans())),
    min_size=1, max_size=8, unique_by=(lambda r: r[0], lambda r: r[1]))


def _sqlite_view(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row as SQLite stores it: booleans as integers, decimals as floats."""
    i, sku, qty, price, active = row
    return (i, sku, qty, None if price is None else float(price),
            None if active is None else int(active))


@settings(max_examples=60, deadline=None)
@given(item_rows)
def test_sqlite_inserted_rows_are_the_rows_given(rows: list[ItemRow]) -> None:
    plan = insert(("id", "sku", "qty", "price", "active"), tuple(rows))
    with closing(fresh_db(seed=False)) as conn:
        got = run(conn, compile_insert("sqlite", None, plan.shape),
                  insert_params("sqlite", plan))
        stored = items(conn)
    assert stored == {r[0]: _sqlite_view(r) for r in rows}
    assert got == [{"id": i, "sku": sku, "qty": qty, "price": None if p is None else float(p),
                    "active": active} for i, sku, qty, p, active in rows]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=1, max_size=8),
       st.integers(-1, 5), st.booleans(), st.integers(0, 9), st.sampled_from(["update", "delete"]))
def test_sqlite_limited_writes_touch_the_rows_postgrest_would(
        qtys: list[int | None], above: int, desc: bool, limit: int, action: Any) -> None:
    qs = (f"or=(qty.gt.{above},qty.is.null)&order=qty.{'desc' if desc else 'asc'},id"
          f"&limit={limit}")
    plan = mutation(action, qs, (("price", 99),) if action == "update" else ())
    # The model: filter, then PostgreSQL's order (nulls last ascending, first descending).
    chosen = [(i, q) for i, q in enumerate(qtys, 1) if q is None or q > above]
    if desc:
        chosen.sort(key=lambda r: (r[1] is not None, -(r[1] or 0), r[0]))
    else:
        chosen.sort(key=lambda r: (r[1] is None, r[1] or 0, r[0]))
    expected = {i for i, _ in chosen[:limit]}
    with closing(fresh_db(seed=False)) as conn:
        conn.executemany("INSERT INTO items (id, qty) VALUES (?, ?)", enumerate(qtys, 1))
        got = run(conn, compile_mutation("sqlite", None, plan.shape),
                  mutation_params("sqlite", plan))
        after = items(conn)
    assert {r["id"] for r in got} == expected
    if action == "delete":
        assert set(after) == set(range(1, len(qtys) + 1)) - expected
    else:
        assert {i for i, r in after.items() if r[3] == 99} == expected



VALS = _table("vals", [
    Column("id", "integer", "int4", nullable=False, primary_key=True, int_bits=32),
    Column("grid", "other", "integer[]"),
    Column("m", "text", "mood"),
    Column("body", "text", "text"),
])


def test_values_postgresql_reads_itself_travel_as_json() -> None:
    """Arrays, ranges, enums…: each value's JSON, read by ``json_populate_record`` on the
    table's row type; a bulk insert sends one JSON per value (one ``int[][]`` array per
    column would be unnested element by element)."""
    from headwater.model.values import JsonText

    one = plan_insert(VALS, ("id", "grid", "m", "body"),
                      ((1, JsonText("[[1,2],[3,4]]"), "ok", "t"),))
    sql = compile_insert("postgresql", "public", one.shape)
    assert ('VALUES ($1, (json_populate_record(NULL::"public"."vals", '
            "json_build_object('grid', $2::json))).\"grid\", (json_populate_record("
            "NULL::\"public\".\"vals\", json_build_object('m', $3::json))).\"m\", $4)") in sql
    assert insert_params("postgresql", one) == [1, "[[1,2],[3,4]]", '"ok"', "t"]
    many = plan_insert(VALS, ("id", "grid"), ((1, "{{1}}"), (2, None)))
    sql = compile_insert("postgresql", "public", many.shape)
    assert "FROM unnest($1::int4[], $2::json[]) AS _u(c0, c1)" in sql
    assert insert_params("postgresql", many) == [[1, 2], ['"{{1}}"', None]]
    # Tables of plain columns keep the plain statement.
    assert "SELECT * FROM unnest(" in compile_insert(
        "postgresql", "public", plan_insert(VALS, ("id", "body"), ((1, "a"), (2, "b"))).shape)


def test_a_merge_sets_columns_it_does_not_insert_to_their_default() -> None:
    shape = plan_insert(ITEMS, ("id", "sku"), ((1, "a"),), resolution="merge",
                        also_set=("qty",)).shape
    assert ('DO UPDATE SET "sku" = excluded."sku", "qty" = excluded."qty"'
            in compile_insert("postgresql", None, shape))
