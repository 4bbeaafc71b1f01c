"""Pure cache pieces: keys, the LRU, the breaker, encoding negotiation."""

from __future__ import annotations

from urllib.parse import parse_qsl

from headwater.api.compression import negotiate
from headwater.cache.keys import canonical, plan_key, raw_key
from headwater.cache.memory import MemoryLRU
from headwater.model import grammar as g
from headwater.model.request import ApiRequest
from headwater.resilience.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from headwater.service.plan import plan_read
from tests.unit.service.test_plan import CAT


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


def test_lru_bounds_bytes_and_expires() -> None:
    now = [0.0]
    lru: MemoryLRU[bytes] = MemoryLRU(100, len, clock=lambda: now[0])
    lru.set("a", b"x" * 40)
    lru.set("b", b"x" * 40)
    assert lru.get("a") is not None  # a is now most recent
    lru.set("c", b"x" * 40)
    assert lru.get("b") is None
    assert lru.evictions == 1
    assert lru.bytes == 80
    lru.set("t", b"y", ttl=5)
    now[0] = 6
    assert lru.get("t") is None
    lru.set("huge", b"z" * 500)
    assert lru.get("huge") is None


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    seen: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker("db", BreakerPolicy(consecutive_failures=3, reset_timeout=5),
                       clock=lambda: now[0], listener=lambda n, o, s: seen.append((o, s)))
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    assert b.retry_after() == 5
    now[0] = 5.1
    assert b.allow()  # one probe
    assert not b.allow()  # and only one
    b.failure()
    assert b.state is BreakerState.OPEN
    now[0] = 11
    assert b.allow()
    b.success()
    assert b.state.name == "CLOSED"
    assert seen == [(BreakerState.CLOSED, BreakerState.OPEN),
                    (BreakerState.OPEN, BreakerState.HALF_OPEN),
                    (BreakerState.HALF_OPEN, BreakerState.OPEN),
                    (BreakerState.OPEN, BreakerState.HALF_OPEN),
                    (BreakerState.HALF_OPEN, BreakerState.CLOSED)]


def test_breaker_failure_rate() -> None:
    b = CircuitBreaker("x", BreakerPolicy(consecutive_failures=100, failure_rate=0.5, window=10,
                                          min_calls=10))
    for i in range(10):
        (b.failure if i % 2 else b.success)()
    assert b.state is BreakerState.OPEN


def test_negotiate_encoding() -> None:
    assert negotiate("gzip, deflate, br, zstd") == "zstd"
    assert negotiate("gzip;q=1, br;q=0.5") == "gzip"
    assert negotiate("identity") is None
    assert negotiate("*") == "zstd"
    assert negotiate("br;q=0, *;q=0.1") == "zstd"
    assert negotiate(None) is None
