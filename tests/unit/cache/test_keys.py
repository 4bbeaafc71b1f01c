"""Cache keys: one key for the same query written two ways, distinct keys for anything that
changes the answer or who may see it."""

from __future__ import annotations

from urllib.parse import parse_qsl

from headwater.cache.keys import canonical, plan_key, raw_key
from headwater.model import grammar as g
from headwater.model.request import ApiRequest
from headwater.service.plan import plan_read
from tests.unit.catalogs import CAT


def key(qs: str, context: str = "anon") -> str:
    req = ApiRequest("GET", "orders", g.parse_query(parse_qsl(qs, keep_blank_values=True)))
    return plan_key(plan_read(CAT, req), context)


def test_same_query_written_two_ways_shares_a_key() -> None:
    assert key("id=gt.1&customer_id=eq.2") == key("customer_id=eq.2&id=gt.1")
    assert key("or=(id.eq.1,id.eq.2)") == key("or=(id.eq.2,id.eq.1)")
    assert key("select=id,total") == key("select=id, total")


def test_different_values_contexts_and_shapes_differ() -> None:
    assert key("id=eq.1") != key("id=eq.2")
    assert key("id=eq.1") != key("id=eq.1", context="role:admin")
    assert key("select=id,total") != key("select=total,id")  # key order is visible in JSON
    assert key("limit=5") != key("limit=6")
    assert key("id=eq.1") != key("id=neq.1")


def test_canonical_names_embedded_tables() -> None:
    req = ApiRequest("GET", "orders", g.parse_query([("select", "*,items(*)")]))
    plan = plan_read(CAT, req)
    assert "items" in canonical(plan)
    assert plan.root.tables() == {"orders", "items"}


def test_raw_key_includes_context_and_headers() -> None:
    base = raw_key("orders", b"id=eq.1", b"", b"", b"", "anon")
    assert base != raw_key("orders", b"id=eq.1", b"", b"", b"", "role:x")
    assert base != raw_key("orders", b"id=eq.1", b"text/csv", b"", b"", "anon")
    assert base != raw_key("orders", b"id=eq.1", b"", b"count=exact", b"", "anon")
    assert base != raw_key("orders", b"id=eq.1", b"", b"", b"0-1", "anon")
    assert base != raw_key("orders", b"id=eq.1&", b"", b"", b"", "anon")
