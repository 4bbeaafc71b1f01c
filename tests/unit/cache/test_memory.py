"""The one in-process bounded cache, configured as each of its users configures it."""

from __future__ import annotations

from headwater.cache.entry import Entry
from headwater.cache.memory import MemoryLRU


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_byte_budget_evicts_least_recently_used() -> None:
    lru: MemoryLRU[bytes] = MemoryLRU(100, len)
    lru.set("a", b"x" * 40)
    lru.set("b", b"x" * 40)
    assert lru.get("a") == b"x" * 40  # a is now the most recent
    lru.set("c", b"x" * 40)
    assert lru.get("b") is None
    assert lru.get("a") is not None and lru.get("c") is not None
    assert (lru.bytes, lru.evictions, len(lru)) == (80, 1, 2)


def test_replacing_a_key_counts_its_size_once() -> None:
    lru: MemoryLRU[bytes] = MemoryLRU(100, len)
    lru.set("a", b"x" * 60)
    lru.set("a", b"x" * 30)
    assert (lru.bytes, len(lru), lru.evictions) == (30, 1, 0)
    lru.delete("a")
    lru.delete("missing")
    assert (lru.bytes, len(lru)) == (0, 0)


def test_an_item_over_the_budget_is_not_kept_and_evicts_nothing() -> None:
    lru: MemoryLRU[bytes] = MemoryLRU(100, len)
    lru.set("small", b"x")
    lru.set("huge", b"z" * 101)
    assert lru.get("huge") is None
    assert lru.get("small") == b"x"
    assert lru.evictions == 0


def test_ttl_expires_on_the_given_clock_and_zero_means_never() -> None:
    clock = Clock()
    lru: MemoryLRU[bytes] = MemoryLRU(100, len, clock=clock)
    lru.set("t", b"y", ttl=5)
    lru.set("forever", b"z")
    clock.now = 4.999
    assert lru.get("t") == b"y"
    clock.now = 5.0
    assert lru.get("t") is None
    assert lru.bytes == 1  # the expired item left the budget
    clock.now = 1e9
    assert lru.get("forever") == b"z"


def test_count_budget_with_deadlines_as_the_credential_cache_uses_it() -> None:
    clock = Clock()
    lru: MemoryLRU[str] = MemoryLRU(2, lambda _: 1, clock=clock)
    lru.set("t1", "alice", ttl=300)
    lru.set("t2", "bob", ttl=10)
    lru.get("t1")
    lru.set("t3", "carol", ttl=300)
    assert lru.get("t2") is None  # least recently used, over the count
    assert [lru.get("t1"), lru.get("t3")] == ["alice", "carol"]
    clock.now = 300
    assert lru.get("t1") is None


def test_l1_sizes_entries_by_body() -> None:
    e = Entry(body=b"x" * 1000, etag='"e"', rows=1, total=None, first=0, tables=("t",),
              versions=(0, 0), stored_at=0, expires_at=1, stale_until=2, cache_control="")
    lru: MemoryLRU[Entry] = MemoryLRU(2500, Entry.size)
    for k in "abc":
        lru.set(k, e)
    assert (len(lru), lru.bytes, lru.evictions) == (2, 2400, 1)


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
