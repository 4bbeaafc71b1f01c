"""The in-process LRU: bounded by bytes, least recently used out first, entries expire."""

from __future__ import annotations

from headwater.cache.memory import MemoryLRU


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
