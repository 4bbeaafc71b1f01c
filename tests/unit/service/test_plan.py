"""Planning and SQL building (pure): catalog checks, shapes, parameters, quoting."""

from __future__ import annotations

import datetime as dt
import decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.db.sql import bind, compile_read
from headwater.errors import (
    AmbiguousRelationship,
    InvalidValue,
    UnknownColumn,
    UnknownRelationship,
    UnknownTable,
)
from headwater.model import grammar as g
from headwater.model.catalog import Catalog, Column, ForeignKey, Table
from headwater.model.plan import Compare, EmbedExists
from headwater.model.request import ApiRequest, Condition, Logic
from headwater.service.plan import coerce, plan_read


def table(name: str, cols: dict[str, Any], pk: tuple[str, ...] = ("id",),
          fks: tuple[ForeignKey, ...] = ()) -> Table:
    columns = {c: Column(c, kind, kind, primary_key=c in pk, int_bits=32)
               for c, kind in cols.items()}
    return Table(name, MappingProxyType(columns), pk, fks)


def make_catalog(dialect: Any = "postgresql") -> Catalog:
    return Catalog.build([
        table("customers", {"id": "integer", "name": "text", "referred_by": "integer"},
              fks=(ForeignKey("c_ref", "customers", ("referred_by",), "customers", ("id",)),)),
        table("orders", {"id": "integer", "customer_id": "integer", "total": "numeric",
                         "ordered_at": "timestamp", "paid": "boolean"},
              fks=(ForeignKey("o_cust", "orders", ("customer_id",), "customers", ("id",)),)),
        table("items", {"id": "integer", "order_id": "integer", "qty": "integer"},
              fks=(ForeignKey("i_ord", "items", ("order_id",), "orders", ("id",)),)),
        table('we"ird', {'co"l': "text"}, pk=()),
    ], dialect)


def request(target: str, qs: str, **kw: Any) -> ApiRequest:
    from urllib.parse import parse_qsl

    return ApiRequest("GET", target, g.parse_query(parse_qsl(qs, keep_blank_values=True)),
                        **kw)


CAT = make_catalog()


def test_unknown_things_are_refused() -> None:
    with pytest.raises(UnknownTable):
        plan_read(CAT, request("nope", ""))
    with pytest.raises(UnknownColumn):
        plan_read(CAT, request("orders", "select=nope"))
    with pytest.raises(UnknownColumn):
        plan_read(CAT, request("orders", "nope=eq.1"))
    with pytest.raises(UnknownRelationship):
        plan_read(CAT, request("orders", "select=*,items!nope(*)"))
    with pytest.raises(UnknownRelationship):
        plan_read(CAT, request("orders", "items.qty=eq.1"))
    with pytest.raises(AmbiguousRelationship):
        plan_read(CAT, request("customers", "select=*,customers(*)"))


def test_self_reference_is_told_apart_by_column_hint() -> None:
    up = plan_read(CAT, request("customers", "select=id,customers!referred_by(id)"))
    down = plan_read(CAT, request("customers", "select=id,customers!id(id)"))
    assert not up.root.embeds()[0].to_many
    assert down.root.embeds()[0].to_many


def test_values_are_coerced_by_column_type() -> None:
    plan = plan_read(CAT, request("orders", "id=eq.5&total=gt.1.50&ordered_at=lt.2024-01-02"
                                            "&paid=is.true&customer_id=in.(1,2)"))
    assert plan.params[:4] == (5, decimal.Decimal("1.50"), dt.datetime(2024, 1, 2), (1, 2))
    with pytest.raises(InvalidValue):
        plan_read(CAT, request("orders", "id=eq.x"))
    with pytest.raises(InvalidValue):
        plan_read(CAT, request("orders", "id=eq.3000000000"))


def test_same_shape_same_sql_whatever_the_values() -> None:
    a = plan_read(CAT, request("orders", "select=*,customers(*)&customer_id=eq.1&limit=5"))
    b = plan_read(CAT, request("orders", "select=*,customers(*)&customer_id=eq.99&limit=50"))
    assert a.root == b.root
    assert a.params != b.params
    sa = compile_read("postgresql", "public", a.root, a.limit_param, a.offset_param, False)
    sb = compile_read("postgresql", "public", b.root, b.limit_param, b.offset_param, False)
    assert sa is sb  # memoised


def test_inner_embed_becomes_exists() -> None:
    plan = plan_read(CAT, request("orders", "select=id,items!inner(id)&items.qty=gt.1"))
    assert any(isinstance(c, EmbedExists) for c in plan.root.where)
    sql = compile_read("postgresql", "public", plan.root, plan.limit_param, plan.offset_param,
                       False)
    assert "EXISTS (SELECT 1 FROM" in sql.aggregate


def test_identifiers_are_quoted() -> None:
    plan = plan_read(CAT, request('we"ird', 'co"l=eq.x'))
    dialects: tuple[Any, ...] = ("postgresql", "sqlite")
    for dialect in dialects:
        sql = compile_read(dialect, "public", plan.root, plan.limit_param,
                           plan.offset_param, True)
        assert '"we""ird"' in sql.aggregate
        assert '"co""l"' in sql.aggregate


def test_count_query_numbers_its_own_parameters() -> None:
    plan = plan_read(CAT, request("orders", "select=*,items(*)&items.limit=2&customer_id=eq.3"))
    sql = compile_read("postgresql", "public", plan.root, plan.limit_param, plan.offset_param,
                       True)
    assert "$1" in sql.count
    assert "$2" not in sql.count
    assert [plan.params[i] for i in sql.count_params] == [3]


def test_sqlite_binding() -> None:
    params = bind("sqlite", (True, decimal.Decimal("1.5"), dt.date(2024, 1, 2), (1, "a"), None))
    assert params == [1, 1.5, "2024-01-02", '[1,"a"]', None]


@given(st.text(min_size=1, max_size=30), st.sampled_from(["postgresql", "sqlite"]))
def test_request_values_never_reach_sql_text(value: str, dialect: Any) -> None:
    marker = "\u2603zq" + value
    qs = [("name", "eq." + marker), ("or", g.render_logic(Logic("or", (
        Condition("name", "like", marker), Condition("name", "in", (marker, "x"))))))]
    plan = plan_read(CAT, ApiRequest("GET", "customers", g.parse_query(qs)))
    sql = compile_read(dialect, "public", plan.root, plan.limit_param,
                       plan.offset_param, True)
    for text in (sql.aggregate, sql.rows, sql.count):
        assert "\u2603zq" not in text
    assert any(isinstance(c, Compare) for c in plan.root.where)


@pytest.mark.parametrize(("kind", "text", "value"), [
    ("integer", " 42 ", 42), ("float", "1e3", 1000.0), ("numeric", "0.10", decimal.Decimal("0.10")),
    ("boolean", "TRUE", True), ("boolean", "f", False), ("date", "2024-02-29", dt.date(2024, 2, 29)),
    ("timestamp", "2024-01-01 10:00", dt.datetime(2024, 1, 1, 10)),
    ("timestamptz", "2024-01-01T10:00:00Z", dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)),
    ("text", "anything", "anything"),
])
def test_coerce(kind: Any, text: str, value: object) -> None:
    assert coerce(Column("c", kind, kind), text) == value


@pytest.mark.parametrize(("kind", "text"), [
    ("integer", "1.5"), ("numeric", "NaN"), ("boolean", "maybe"), ("date", "2024-02-30"),
    ("uuid", "nope"), ("timestamp", "soon"),
])
def test_coerce_rejects(kind: Any, text: str) -> None:
    with pytest.raises(InvalidValue):
        coerce(Column("c", kind, kind), text)
