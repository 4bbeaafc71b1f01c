"""The Redis store: L2 entries and the hash that ``RedisVersions`` keeps the table versions
in; every call has a socket timeout and goes through the Redis breaker."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from headwater.errors import RedisUnavailable
from headwater.resilience.breaker import CircuitBreaker, Guard

_BUMP = """
local out = {}
local parts = {}
for i, f in ipairs(ARGV) do
  out[i] = redis.call('HINCRBY', KEYS[1], f, 1)
  parts[i] = f .. '=' .. out[i]
end
redis.call('PUBLISH', KEYS[2], table.concat(parts, ','))
return out
"""


class RedisStore:
    def __init__(self, url: str, breaker: CircuitBreaker, *, timeout: float = 0.25,
                 max_connections: int = 32) -> None:
        # A bounded pool: a burst of requests waits briefly for a connection instead of
        # opening hundreds (whose connects then time out and trip the breaker).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=max(timeout, 1.0),
            socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0,
            retry_on_timeout=False)
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self.breaker = breaker
        self.url = url
        self._bump = self.client.register_script(_BUMP)

    async def _run(self, coro: Any) -> Any:
        def circuit_open(breaker: CircuitBreaker) -> RedisUnavailable:
            coro.close()
            return RedisUnavailable("Redis circuit is open")

        with Guard(self.breaker, RedisUnavailable, opened=circuit_open) as call:
            try:
                return await coro
            except (RedisError, OSError, TimeoutError) as exc:
                if isinstance(exc, RedisConnectionError) and "Too many connections" in str(exc):
                    call.uncounted()  # load, not failure
                    raise RedisUnavailable("Redis pool exhausted") from exc
                raise RedisUnavailable("Redis call failed", details=type(exc).__name__) from exc

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._run(self.client.get(key))
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._run(self.client.set(key, value, px=max(1, int(ttl * 1000))))

    async def delete(self, key: str) -> None:
        await self._run(self.client.delete(key))

    async def incr(self, key: str, field: str, by: int = 1) -> int:
        value: int = await self._run(self.client.hincrby(key, field, by))
        return value

    async def get_fields(self, key: str, fields: list[str]) -> list[int]:
        values = await self._run(self.client.hmget(key, fields))
        return [int(v) if v is not None else 0 for v in values]

    async def get_with_fields(self, key: str, hkey: str,
                              fields: list[str]) -> tuple[bytes | None, list[int]]:
        """An entry and the current versions in one round trip."""

        async def both() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.hmget(hkey, fields)
                result: list[Any] = await pipe.execute()
                return result

        data, values = await self._run(both())
        return data, [int(v) if v is not None else 0 for v in values]

    async def bump(self, hkey: str, fields: list[str], channel: str) -> list[int]:
        """Increment versions and announce them atomically, in one round trip."""
        values = await self._run(self._bump(keys=[hkey, channel], args=fields))
        return [int(v) for v in values]

    async def ping(self) -> None:
        await self._run(self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()
        # A pool passed in explicitly is not closed by the client.
        await self.client.connection_pool.disconnect()
