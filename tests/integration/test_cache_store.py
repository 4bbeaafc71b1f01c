"""One contract, two stores: the in-process store and real Redis behave the same."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from headwater.cache.memory import MemoryStore
from headwater.cache.redis import RedisStore
from headwater.errors import RedisUnavailable
from headwater.resilience.breaker import BreakerPolicy, CircuitBreaker


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_url")
    s = RedisStore(url, CircuitBreaker("redis"))
    try:
        yield s
    finally:
        await s.close()


def k(name: str) -> str:
    return f"hw:test:{secrets.token_hex(4)}:{name}"


async def test_get_set_delete(store: Any) -> None:
    key = k("a")
    assert await store.get(key) is None
    await store.set(key, b"\x00value", 10)
    assert await store.get(key) == b"\x00value"
    await store.delete(key)
    assert await store.get(key) is None


async def test_ttl_expires(store: Any) -> None:
    key = k("t")
    await store.set(key, b"v", 0.2)
    assert await store.get(key) == b"v"
    await asyncio.sleep(0.35)
    assert await store.get(key) is None


async def test_counters_and_pipelined_read(store: Any) -> None:
    h = k("versions")
    assert await store.get_fields(h, ["a", "b"]) == [0, 0]
    assert await store.incr(h, "a") == 1
    assert await store.bump(h, ["a", "b"], k("chan")) == [2, 1]
    key = k("e")
    await store.set(key, b"entry", 10)
    assert await store.get_with_fields(key, h, ["a", "b", "c"]) == (b"entry", [2, 1, 0])


async def test_redis_down_opens_the_breaker_and_fails_fast() -> None:
    breaker = CircuitBreaker("redis", BreakerPolicy(consecutive_failures=2, reset_timeout=60))
    dead = RedisStore("redis://127.0.0.1:1/0", breaker, timeout=0.2)
    try:
        for _ in range(2):
            with pytest.raises(RedisUnavailable):
                await dead.get("x")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisUnavailable):
            await dead.get("x")
        assert loop.time() - started < 0.01  # open: no connection attempt at all
    finally:
        await dead.close()
