"""The Redis store: L2 entries and the hash that ``RedisVersions`` keeps the table versions
in; every call has a socket timeout and a deadline, and goes through the Redis breaker."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from headwater.cache.address import RedisAddress
from headwater.errors import RedisNotAsked, RedisUnavailable
from headwater.resilience.breaker import CircuitBreaker, Guard

# The channel is the first argument, not a key: a cluster refuses a script whose keys live in
# different slots, and a channel name is no key (PUBLISH reaches every node of a cluster).
# ARGV[2] is the write's commit LSN (replicas), zero-padded so that Lua compares it as text
# and ``int()`` reads it back, or empty; it is kept as the hash's highest ``~lsn``.
_BUMP = """
local out = {}
local parts = {}
for i = 3, #ARGV do
  local f = ARGV[i]
  out[i - 2] = redis.call('HINCRBY', KEYS[1], f, 1)
  parts[i - 2] = f .. '=' .. out[i - 2]
end
local lsn = ARGV[2]
if lsn ~= '' then
  local cur = redis.call('HGET', KEYS[1], '~lsn')
  if (not cur) or lsn > cur then redis.call('HSET', KEYS[1], '~lsn', lsn) end
  parts[#parts + 1] = '~lsn=' .. lsn
end
redis.call('PUBLISH', ARGV[1], table.concat(parts, ','))
return out
"""


class _CommandTable(AsyncCommandsParser):
    """The server's COMMAND table, loaded once. redis-py's cluster client reloads it from its
    default node (the first primary it learnt) at every slots refresh, which follows any
    connection error: with that node lost, every refresh fails, and with it every command,
    to the nodes still up as well. The table does not change while servers run."""

    async def initialize(self, node: ClusterNode | None = None) -> None:
        if not self.commands:
            await super().initialize(node)
        elif node is not None:
            self.node = node


def redis_client(address: RedisAddress, *, timeout: float,
                 max_connections: int) -> aioredis.Redis | RedisCluster:
    """redis-py's own client for each kind: a cluster client follows slot moves and
    failovers, a sentinel one asks the sentinels for the current master."""
    common: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if address.kind == "cluster":
        # Slots on live nodes keep serving while one node is away. One attempt: the client
        # follows a MOVED by itself, and what its retries add (a slots refresh after every
        # connection error; 250 ms of sleep per "cluster down" answer) only slows every
        # request while a node is lost; the call after a failure uses the refreshed slots.
        cluster = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in address.nodes],
                               password=address.password, ssl=address.tls,
                               require_full_coverage=False, retry=Retry(NoBackoff(), 0),
                               max_connections=max_connections, **common)
        cluster.commands_parser = _CommandTable()
        return cluster
    common["retry_on_timeout"] = False
    if address.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(address.nodes), sentinel_kwargs=dict(common), **common)
        master: aioredis.Redis = sentinel.master_for(
            address.master, db=address.db, password=address.password, ssl=address.tls)
        return master
    # A bounded pool: a burst of requests waits briefly for a connection instead of
    # opening hundreds (whose connects then time out and trip the breaker).
    pool = aioredis.BlockingConnectionPool.from_url(
        address.url, max_connections=max_connections, timeout=max(timeout, 1.0),
        health_check_interval=0, **common)
    return aioredis.Redis(connection_pool=pool)


class RedisStore:
    def __init__(self, url: str, breaker: CircuitBreaker, *, timeout: float = 0.25,
                 max_connections: int = 32) -> None:
        self.address = RedisAddress.parse(url)
        self.client = redis_client(self.address, timeout=timeout,
                                   max_connections=max_connections)
        self.breaker = breaker
        self.url = url
        #: The most one call may take, whatever the client does inside it: a cluster client
        #: that lost a node rediscovers the slots and retries, and concurrent calls wait on
        #: each other's rediscovery, for seconds in all though each socket call has ``timeout``.
        self.deadline = 2 * timeout
        # Only the cluster client's clean-up after a cancellation can take long (it may wait
        # for a rediscovery under way): its calls run as tasks left to end by themselves. A
        # plain or sentinel client just drops the connection, so its calls are cancelled in
        # place, without a task per call (measured: 8.5 → 3.8 µs of CPU per call).
        self._detached = isinstance(self.client, RedisCluster)
        self._abandoned: set[asyncio.Future[Any]] = set()
        self._bump = self.client.register_script(_BUMP)

    async def _run(self, coro: Any, *, guarded: bool = True) -> Any:
        """``coro`` (a client call) through the breaker; ``guarded=False``: attempted even
        while the breaker is open, and its outcome not counted."""
        def circuit_open(breaker: CircuitBreaker) -> RedisUnavailable:
            coro.close()
            return RedisNotAsked("Redis circuit is open")

        with Guard(self.breaker if guarded else None, RedisUnavailable,
                   opened=circuit_open) as call:
            try:
                return await self._within_deadline(coro)
            except (RedisError, OSError, TimeoutError) as exc:
                if isinstance(exc, RedisConnectionError) and "Too many connections" in str(exc):
                    call.uncounted()  # load, not failure
                    raise RedisNotAsked("Redis pool exhausted") from exc
                raise RedisUnavailable("Redis call failed", details=type(exc).__name__) from exc
            except (AttributeError, RuntimeError) as exc:
                # redis-py's cluster client, when a node fails, closes the connections of
                # calls still sending on them: one then writes to a torn-down connection
                # (``None`` has no ``writelines``; uvloop: "the handler is closed").
                raise RedisUnavailable("Redis call failed",
                                       details="connection closed under the call") from exc

    async def _within_deadline(self, coro: Any) -> Any:
        """``coro``'s result, or TimeoutError at the deadline. A call past it is cancelled
        and left to end by itself: the client's clean-up after a cancellation (closing
        connections, waiting for a rediscovery under way) must not hold the request too."""
        if not self._detached:
            async with asyncio.timeout(self.deadline):
                return await coro
        call = asyncio.ensure_future(coro)
        try:
            await asyncio.wait((call,), timeout=self.deadline)
        finally:
            if not call.done():
                call.cancel()
                self._abandoned.add(call)
                call.add_done_callback(self._forget)
        if not call.done():
            raise TimeoutError
        return call.result()

    def _forget(self, call: asyncio.Future[Any]) -> None:
        self._abandoned.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: it ended after its caller had moved on

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

    async def init_field(self, key: str, field: str, value: int, *,
                         guarded: bool = True) -> int:
        """``field`` of hash ``key`` set to ``value`` unless it has one: the value it has.
        ``guarded=False``: attempted even while the breaker is open (``_run``)."""

        async def both() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hsetnx(key, field, value)
                pipe.hget(key, field)
                result: list[Any] = await pipe.execute()
                return result

        _, now = await self._run(both(), guarded=guarded)
        return int(now) if now is not None else value

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

    async def bump(self, hkey: str, fields: list[str], channel: str, lsn: int = 0, *,
                   guarded: bool = True) -> list[int]:
        """Increment versions and announce them atomically, in one round trip.
        ``guarded=False``: attempted even while the breaker is open (``_run``)."""
        position = f"{lsn:020d}" if lsn else ""
        values = await self._run(self._bump(keys=[hkey], args=[channel, position, *fields]),
                                 guarded=guarded)
        return [int(v) for v in values]

    async def ping(self) -> None:
        await self._run(self.client.ping())

    async def close(self) -> None:
        if self._abandoned:  # calls past their deadline, cancelled: let them end first
            await asyncio.wait(self._abandoned, timeout=self.deadline)
        await self.client.aclose()
        if isinstance(self.client, aioredis.Redis):
            # A pool passed in explicitly is not closed by the client.
            await self.client.connection_pool.disconnect()
