"""Issue 14, ``select=``: casts, JSON paths, aggregates, spreads and empty embeds in the grammar,
and JSON paths in filters and ``order=``; property tests for parse(render(x)) == x."""

from __future__ import annotations

import string
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.errors import ParseError
from headwater.model import grammar as g
from headwater.model import select as s
from headwater.model.request import (
    Aggregate,
    Condition,
    Embed,
    Field,
    JsonPath,
    Logic,
    OrderTerm,
    Query,
    SelectItem,
)


def test_casts() -> None:
    assert s.parse_select("a::text,b:total::int,c::double precision") == (
        Field("a", cast="text"), Field("total", "b", cast="int"),
        Field("c", cast="double precision"))
    with pytest.raises(ParseError):
        s.parse_select("a::")
    with pytest.raises(ParseError):
        s.parse_select("a::text;drop")


def test_json_paths_and_their_keys() -> None:
    items = s.parse_select("data->foo->>bar,x:data->arr->0,data->-1,\"my col\"->\"a b\"")
    assert items == (
        Field("data", json=(("->", "foo"), ("->>", "bar"))),
        Field("data", "x", json=(("->", "arr"), ("->", "0"))),
        Field("data", json=(("->", "-1"),)),
        Field("my col", json=(("->", "a b"),)),
    )
    # the output key: the alias, else the last key that is no array index, else the column
    assert [i.key for i in items if isinstance(i, Field)] == ["bar", "x", "data", "a b"]
    keys = {"data->>0::int": "data", "data->0->a->>2": "a", "data->c->0->d->>4::int": "d",
            "data->0->0xy1->1->23-xy-45->1->xy-6->>0::int": "xy-6"}  # PostgREST's spec
    for text, key in keys.items():
        (field,) = s.parse_select(text)
        assert isinstance(field, Field) and field.key == key
    with pytest.raises(ParseError) as bad:
        s.parse_select("data->>--34")
    assert bad.value.details == 'unexpected "-34" expecting digit'


def test_aggregates() -> None:
    assert s.parse_select("count(),cnt:count()::text,amount.sum(),t:amount.sum()::int,"
                          "amount::int.avg(),jsonb_col->>key::integer.max()::text") == (
        Field("", aggregate="count"), Field("", "cnt", aggregate="count", agg_cast="text"),
        Field("amount", aggregate="sum"), Field("amount", "t", aggregate="sum", agg_cast="int"),
        Field("amount", cast="int", aggregate="avg"),
        Field("jsonb_col", json=(("->>", "key"),), cast="integer", aggregate="max",
              agg_cast="text"))
    assert [i.key for i in s.parse_select("count(),a.sum(),x:a.min()")
            if isinstance(i, Field)] == ["count", "sum", "x"]
    with pytest.raises(ParseError):
        s.parse_select("amount.median()")
    with pytest.raises(ParseError):
        s.parse_select("amount.sum")
    # the embedded count shorthand is a plain name here; the planner reads it as count()
    assert s.parse_select("name,orders(count)") == (
        Field("name"), Embed("orders", (Field("count"),)))


def test_spreads_and_empty_embeds() -> None:
    assert s.parse_select("id,...customers!inner(name,country),customers()") == (
        Field("id"), Embed("customers", (Field("name"), Field("country")), inner=True,
                           spread=True),
        Embed("customers", ()))
    for bad in ("...c", "...a:c(x)", "a:...c(x)", "...c->x"):
        with pytest.raises(ParseError):
            s.parse_select(bad)
    # an embed named count with nothing selected is written quoted: count() aggregates
    assert s.render_select((Embed("count", ()),)) == '"count"()'
    assert s.parse_select('"count"()') == (Embed("count", ()),)


def test_json_paths_in_filters_and_order() -> None:
    q = g.parse_query(parse_qsl("attributes->>color=eq.red&or=(data->a->0.gt.1,"
                                "attributes->>color.in.(a,b))&order=attributes->>color.desc,id"
                                "&orders.data->x=is.null"))
    assert q.where[()] == (
        Condition("attributes", "eq", "red", json=(("->>", "color"),)),
        Logic("or", (Condition("data", "gt", "1", json=(("->", "a"), ("->", "0"))),
                     Condition("attributes", "in", ("a", "b"), json=(("->>", "color"),)))))
    assert q.where[("orders",)] == (Condition("data", "is", "null", json=(("->", "x"),)),)
    assert q.order[()] == (OrderTerm("attributes", True, json=(("->>", "color"),)),
                           OrderTerm("id"))
    assert g.parse_query(g.render_query(q)) == q


# --- properties -------------------------------------------------------------------------------

ident = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=10).filter(
    lambda n: n not in g.RESERVED and n not in ("not", "inner", "left", "count"))
any_name = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1,
                   max_size=10).filter(lambda n: n.strip() != "" and n not in ("inner", "left"))
json_key = st.one_of(any_name, st.integers(-5, 30).map(str))
casts = st.sampled_from(["text", "int", "integer", "bigint", "double precision", "numeric",
                         "text[]", "boolean", "jsonb"])
aggregates: st.SearchStrategy[Aggregate] = st.sampled_from(["count", "sum", "avg", "min",
                                                            "max"])


def json_paths(key: st.SearchStrategy[str] = json_key) -> st.SearchStrategy[JsonPath]:
    """Steps with ``->``, the last one ``->`` or ``->>``."""
    return st.tuples(st.lists(key, max_size=3), key, st.booleans()).map(
        lambda t: (*(("->", k) for k in t[0]), ("->>" if t[2] else "->", t[1])))


@st.composite
def fields(draw: st.DrawFn) -> Field:
    alias = draw(st.one_of(st.none(), any_name))
    if draw(st.integers(0, 5)) == 0:
        return Field("", alias, aggregate="count", agg_cast=draw(st.one_of(st.none(), casts)))
    name = draw(any_name.filter(lambda n: n != "*"))
    json = draw(st.one_of(st.just(()), json_paths()))
    cast = draw(st.one_of(st.none(), casts))
    aggregate = draw(st.one_of(st.none(), aggregates))
    agg_cast = draw(st.one_of(st.none(), casts)) if aggregate else None
    return Field(name, alias, json, cast, aggregate, agg_cast)


def select_items(depth: int) -> st.SearchStrategy[tuple[SelectItem, ...]]:
    field = st.one_of(st.just(Field("*")), fields())
    if depth == 0:
        return st.lists(field, min_size=1, max_size=4).map(tuple)
    inner = st.one_of(st.just(()), select_items(depth - 1))
    embed = st.builds(Embed, any_name, inner, st.one_of(st.none(), any_name),
                      st.one_of(st.none(), any_name), st.booleans())
    spread = st.builds(lambda name, sel, hint, inner_: Embed(name, sel, None, hint, inner_,
                                                             spread=True),
                       any_name, inner, st.one_of(st.none(), any_name), st.booleans())
    return st.lists(st.one_of(field, embed, spread), min_size=1, max_size=4).map(tuple)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(select_items(2))
def test_select_round_trip_with_every_form(items: tuple[SelectItem, ...]) -> None:
    assert s.parse_select(s.render_select(items)) == items


simple_key = st.one_of(ident, st.integers(-3, 9).map(str))
json_condition = st.builds(
    lambda col, path, op, value, neg: Condition(col, op, value, neg, json=path),
    ident, json_paths(simple_key), st.sampled_from(["eq", "neq", "gt", "like", "ilike"]),
    st.text(string.ascii_letters + string.digits + " *", max_size=8), st.booleans())
json_order = st.builds(lambda col, path, desc, nulls: OrderTerm(col, desc, nulls, path),
                       ident, st.one_of(st.just(()), json_paths(simple_key)), st.booleans(),
                       st.sampled_from([None, "first", "last"]))


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.lists(json_condition, min_size=1, max_size=3), st.lists(json_order, min_size=1,
                                                                  max_size=3),
       st.booleans())
def test_json_paths_round_trip_in_filters_logic_and_order(
        conds: list[Condition], order: list[OrderTerm], in_logic: bool) -> None:
    where = (Logic("or", tuple(conds)),) if in_logic else tuple(conds)
    query = Query(where={(): where}, order={(): tuple(order)})
    assert g.parse_query(g.render_query(query)) == query
