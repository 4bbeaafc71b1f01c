"""Strict mode's coalesced version reads, against real Redis."""

from __future__ import annotations

import asyncio
import secrets

from headwater.cache.redis import RedisStore
from headwater.cache.versions import RedisVersions
from headwater.resilience.breaker import CircuitBreaker


async def test_concurrent_lookups_share_one_round_trip_and_stay_strict(redis_url: str) -> None:
    store = RedisStore(redis_url, CircuitBreaker("redis"))
    calls = 0
    real = store.get_fields

    async def counted(key: str, fields: list[str]) -> list[int]:
        nonlocal calls
        calls += 1
        return await real(key, fields)

    store.get_fields = counted  # type: ignore[method-assign]
    versions = RedisVersions(store, f"test-{secrets.token_hex(4)}")
    try:
        await versions.bump(["orders"])
        results = await asyncio.gather(*(versions.current(["orders"]) for _ in range(50)),
                                       *(versions.current(["customers", "orders"])
                                         for _ in range(50)))
        assert calls == 1
        epoch = results[0][-1]  # random, once the hash has one (a lost hash starts anew)
        assert set(results[:50]) == {(1, epoch)}
        assert set(results[50:]) == {(0, 1, epoch)}
        # A bump acknowledged before a lookup starts is always seen by it.
        for n in range(2, 30):
            await versions.bump(["orders"])
            assert await versions.current(["orders"]) == (n, epoch)
    finally:
        await store.client.delete(versions.hkey)
        await store.close()
