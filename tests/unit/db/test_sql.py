"""SQL building for reads (pure): one text per shape, embeds, quoting, parameter numbering
and binding."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from headwater.db.sql import bind, compile_read
from headwater.model import grammar as g
from headwater.model.plan import Compare, EmbedExists
from headwater.model.request import ApiRequest, Condition, Logic
from headwater.service.plan import plan_read
from tests.unit.catalogs import CAT, request


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
