"""The query grammar: examples, and properties (round trip; no foreign exceptions)."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.errors import HeadwaterError, NotAcceptable, ParseError
from headwater.model import grammar as g
from headwater.model import headers as h
from headwater.model import select as s
from headwater.model.request import Condition, Embed, Field, Logic, OrderTerm, Query, SelectItem

# --- examples ---------------------------------------------------------------------------------


def test_select_with_aliases_embeds_hints() -> None:
    items = s.parse_select("id,name:full_name,customer:customers!customer_id(id,name),"
                           "order_items!inner(*,product:products(sku))")
    assert items == (
        Field("id"),
        Field("full_name", alias="name"),
        Embed("customers", (Field("id"), Field("name")), alias="customer",
                hint="customer_id"),
        Embed("order_items", (Field("*"), Embed("products", (Field("sku"),),
                                                      alias="product")), inner=True),
    )


def test_filter_ops() -> None:
    assert g.parse_filter("a", "eq.1") == Condition("a", "eq", "1")
    assert g.parse_filter("a", "not.like.*x*") == Condition("a", "like", "*x*", True)
    assert g.parse_filter("a", 'in.(1,"2,3",x y)') == Condition("a", "in", ("1", "2,3", "x y"))
    assert g.parse_filter("a", "is.null") == Condition("a", "is", "null")
    assert g.parse_filter("a", "eq.a.b.c") == Condition("a", "eq", "a.b.c")
    with pytest.raises(ParseError):
        g.parse_filter("a", "is.maybe")
    with pytest.raises(ParseError):
        g.parse_filter("a", "equals.1")


def test_logic_trees() -> None:
    tree = g.parse_logic("or", "(a.eq.1,and(b.gt.2,c.not.is.null),not.or(d.in.(1,2),e.eq.\"x,)\"))")
    assert tree == Logic("or", (
        Condition("a", "eq", "1"),
        Logic("and", (Condition("b", "gt", "2"), Condition("c", "is", "null", True))),
        Logic("or", (Condition("d", "in", ("1", "2")), Condition("e", "eq", "x,)")),
                negated=True),
    ))
    assert g.parse_logic("not.and", "(a.eq.1)").negated


def test_order() -> None:
    assert g.parse_order("a.desc.nullslast,b,c.nullsfirst") == (
        OrderTerm("a", True, "last"), OrderTerm("b"), OrderTerm("c", False, "first"))
    with pytest.raises(ParseError):
        g.parse_order("a.sideways")


def test_query_paths() -> None:
    q = g.parse_query([("select", "*,items(*)"), ("items.qty", "gt.1"), ("items.order", "id"),
                       ("items.limit", "2"), ("limit", "5"), ("items.or", "(qty.eq.1)")])
    assert q.where[("items",)][0] == Condition("qty", "gt", "1")
    assert q.order[("items",)] == (OrderTerm("id"),)
    assert q.limit == {("items",): 2, (): 5}


def test_prefer_and_accept_and_range() -> None:
    p = h.parse_prefer(["count=exact, return=representation", "tx=rollback"])
    assert (p.count, p.returning, p.tx) == ("exact", "representation", "rollback")
    assert h.parse_prefer(["count=bogus"]).count is None
    with pytest.raises(ParseError):
        h.parse_prefer(["count=bogus, handling=strict"])
    assert h.parse_accept("text/csv;q=0.5, application/vnd.pgrst.object+json") == "object"
    assert h.parse_accept("text/html;q=0.9, */*;q=0.1") == "json"
    with pytest.raises(NotAcceptable):
        h.parse_accept("application/xml")
    assert h.parse_range("0-9") == (0, 9)
    assert h.parse_range("items=5-") == (5, None)
    assert h.parse_range("nonsense") is None


#: Every position of the query string where a name (an identifier) goes, as
#: (key, value) templates around ``{}``.
IDENTIFIER_POSITIONS = [
    ("select", "{}"), ("select", "{}:id"), ("select", "id,x:{}"), ("select", '"{}"'),
    ("select", "customers({})"), ("select", "{}:customers(id)"), ("select", "{}(id)"),
    ("select", "customers!{}(id)"), ("select", "id,customers(id,{}:name)"),
    ("select", "customers(orders({}))"), ("{}", "eq.1"), ("customers.{}", "eq.1"),
    ("{}.order", "id"), ("{}.limit", "1"), ("order", "{}"), ("order", "id,{}.desc"),
    ("order", "{}.asc.nullslast"), ("customers.order", "{}"), ("or", "({}.eq.1)"),
    ("and", "(id.eq.1,or({}.is.null))"), ("not.or", '("{}".eq.1)'),
    ("customers.or", "({}.in.(1,2))"), ("on_conflict", "{}"), ("on_conflict", "id,{}"),
    ("columns", "{}"), ("columns", 'id,"{}"'),
]
CONTROLS = ["\x00", "\x01", "\x08", "\x09", "\x0a", "\x0d", "\x1b", "\x1f", "\x7f",
            "\x85", "\x9f", "\ud800"]


def _fill(template: tuple[str, str], name: str) -> list[tuple[str, str]]:
    key, value = template
    return [(key.replace("{}", name), value.replace("{}", name))]


@pytest.mark.parametrize("template", IDENTIFIER_POSITIONS, ids="|".join)
def test_control_characters_in_names_are_refused(template: tuple[str, str]) -> None:
    g.parse_query(_fill(template, "name"))  # the position itself parses
    for ch in CONTROLS:
        with pytest.raises(ParseError) as info:
            g.parse_query(_fill(template, f"na{ch}me"))
        assert info.value.code == "PGRST100"
        assert "control characters" in info.value.message
        assert f"U+{ord(ch):04X}" in str(info.value.details)


def test_order_terms_are_bounded() -> None:
    assert len(g.parse_query([("order", ",".join(["id"] * g.MAX_ORDER_TERMS))]).order[()]) \
        == g.MAX_ORDER_TERMS
    with pytest.raises(ParseError, match="too many order terms"):
        g.parse_query([("order", ",".join(["id"] * 2100))])
    with pytest.raises(ParseError, match="too many order terms"):
        g.parse_query([("order", ",".join(["id"] * 60)), ("x.order", ",".join(["id"] * 60))])


# --- properties -------------------------------------------------------------------------------

ident = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=12).filter(
    lambda s: s not in g.RESERVED and s not in ("not", "inner", "left"))
#: A name the grammar takes: anything printable (control characters are refused, below).
any_name = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1,
                   max_size=12).filter(
    lambda s: s.strip() != "" and s not in ("inner", "left"))
text = st.text(st.characters(codec="utf-8"), max_size=15)


def select_items(depth: int) -> st.SearchStrategy[tuple[SelectItem, ...]]:
    field = st.one_of(st.just(Field("*")),
                      st.builds(Field, any_name.filter(lambda n: n != "*"),
                                st.one_of(st.none(), any_name)))
    if depth == 0:
        return st.lists(field, min_size=1, max_size=4).map(tuple)
    embed = st.builds(Embed, any_name, select_items(depth - 1), st.one_of(st.none(), any_name),
                      st.one_of(st.none(), any_name), st.booleans())
    return st.lists(st.one_of(field, embed), min_size=1, max_size=4).map(tuple)


scalar_cond = st.builds(Condition, ident, st.sampled_from(sorted(g.SCALAR_OPS)), text,
                        st.booleans())
in_cond = st.builds(Condition, ident, st.just("in"), st.lists(text, max_size=4).map(tuple),
                    st.booleans())
is_cond = st.builds(Condition, ident, st.just("is"), st.sampled_from(sorted(g.IS_VALUES)),
                    st.booleans())
condition = st.one_of(scalar_cond, in_cond, is_cond)
logic = st.recursive(
    st.builds(Logic, st.sampled_from(["and", "or"]),
              st.lists(condition, min_size=1, max_size=3).map(tuple), st.booleans()),
    lambda inner: st.builds(Logic, st.sampled_from(["and", "or"]),
                            st.lists(st.one_of(condition, inner), min_size=1,
                                     max_size=3).map(tuple), st.booleans()),
    max_leaves=6)
path = st.lists(ident, max_size=2).map(tuple)
order_terms = st.lists(st.builds(OrderTerm, ident, st.booleans(),
                                 st.sampled_from([None, "first", "last"])),
                       min_size=1, max_size=3).map(tuple)
queries = st.builds(
    Query,
    select=select_items(2),
    where=st.dictionaries(path, st.lists(st.one_of(condition, logic), min_size=1,
                                         max_size=3).map(tuple), max_size=3),
    order=st.dictionaries(path, order_terms, max_size=2),
    limit=st.dictionaries(path, st.integers(0, 10**9), max_size=2),
    offset=st.dictionaries(path, st.integers(0, 10**9), max_size=2),
    on_conflict=st.one_of(st.none(), st.lists(any_name, min_size=1, max_size=3).map(tuple)),
    columns=st.one_of(st.none(), st.lists(any_name, min_size=1, max_size=3).map(tuple)),
)


@given(select_items(3))
def test_select_round_trip(items: tuple[SelectItem, ...]) -> None:
    assert s.parse_select(s.render_select(items)) == items


@given(logic)
def test_logic_round_trip(tree: Logic) -> None:
    assert g.parse_logic(g.logic_key(tree), g.render_logic(tree)) == tree


@given(condition)
def test_filter_round_trip(cond: Condition) -> None:
    assert g.parse_filter(cond.column, g.render_condition(cond)) == cond


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(queries)
def test_query_round_trip(query: Query) -> None:
    assert g.parse_query(g.render_query(query)) == query


junk = st.text(st.characters(codec="utf-8"), max_size=40) | st.text(
    '(),."!:*\\ abc.eqinotrd', max_size=40)


@settings(max_examples=500)
@given(junk, junk)
def test_parsers_raise_only_our_errors(key: str, value: str) -> None:
    for fn in (lambda: s.parse_select(value), lambda: g.parse_filter(key or "a", value),
               lambda: g.parse_logic("or", value), lambda: g.parse_order(value),
               lambda: g.parse_query([(key, value)]), lambda: h.parse_prefer([value]),
               lambda: h.parse_accept(value), lambda: h.parse_range(value)):
        with contextlib.suppress(HeadwaterError):
            fn()


#: A name with a control character (or a lone surrogate) inside it: around it, text that
#: stays one name in every position (no separators, quotes or spaces).
_plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Z"),
                               exclude_characters=',()!:."\\*'), min_size=1, max_size=8)
_control = st.characters(categories=("Cc", "Cs"))
bad_names = st.builds(lambda a, c, b: a + c + b, _plain, _control, _plain)


@settings(max_examples=500)
@given(st.sampled_from(IDENTIFIER_POSITIONS), bad_names)
def test_control_character_in_any_name_is_a_parse_error(template: tuple[str, str],
                                                        name: str) -> None:
    with pytest.raises(ParseError):
        g.parse_query(_fill(template, name))
