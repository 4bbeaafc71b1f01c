"""The stores the cache really uses.

- The table versions: one contract for every ``Versions`` that ``open_versions`` picks (the
  host's shared counters file without Redis; Redis, strict and bounded), run against the real
  thing. Two "nodes" are two instances over the same database or namespace.
- The Redis byte store (L2 and the versions hash), against real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pytest

from headwater.cache.redis import RedisStore
from headwater.cache.versions import EPOCH, RedisVersions, Versions, open_versions
from headwater.config import Settings
from headwater.errors import RedisNotAsked, RedisUnavailable
from headwater.resilience.breaker import BreakerPolicy, CircuitBreaker

BOUND_MS = 200


@dataclass
class Nodes:
    """Builds ``Versions`` the way the tiered cache does, all over one database/namespace."""

    settings: Settings
    namespace: str
    redis_url: str | None
    made: list[Versions] = field(default_factory=list)
    stores: list[RedisStore] = field(default_factory=list)

    def store(self) -> RedisStore | None:
        if self.redis_url is None:
            return None
        s = RedisStore(self.redis_url, CircuitBreaker("redis"))
        self.stores.append(s)
        return s

    async def node(self, store: RedisStore | None = None) -> Versions:
        v = open_versions(self.settings, store or self.store(), namespace=self.namespace)
        await v.start()
        self.made.append(v)
        if self.settings.cache_mode == "bounded":
            # Up and listening: its first heartbeat came back. Closing a node whose listener
            # is still connecting can hang (the cancellation is lost on the way; not fixed
            # here, where behaviour must not change).
            await until(lambda: v.local([]) is not None)
        return v


@pytest.fixture(params=["shared", "strict", "bounded"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Nodes]:
    # The shared counters file goes to the temporary directory: this test's own.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mode = request.param
    url = None if mode == "shared" else request.getfixturevalue("redis_url")
    settings = Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite",
                        cache_mode="bounded" if mode == "bounded" else "strict",
                        cache_bounded_lag_ms=BOUND_MS)
    n = Nodes(settings, f"test-{secrets.token_hex(4)}", url)
    try:
        yield n
    finally:
        for v in n.made:
            await v.close()
        if n.stores:
            await n.stores[0].client.delete(f"hw:{n.namespace}:versions")
        for s in n.stores:
            await s.close()


async def until(done: Callable[[], bool]) -> None:
    """Wait for ``done()``, at most a little more than twice the bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * BOUND_MS / 1000 + 1.0
    while not done():
        assert loop.time() < deadline, "not within the bound"
        await asyncio.sleep(0.01)


async def settled(v: Versions, tables: Sequence[str], want: tuple[int, ...]) -> None:
    """Wait until ``local`` is unknown (read Redis) or has caught up with ``want``."""
    await until(lambda: v.local(tables) in (None, want))


async def test_new_tables_start_at_zero(nodes: Nodes) -> None:
    v = await nodes.node()
    *tables, epoch = await v.current(["orders", "items"])
    assert tables == [0, 0]
    # Redis starts the epoch at random (a hash it lost starts again elsewhere); the file at 0.
    assert (epoch > 0) == (nodes.redis_url is not None)
    assert v.local(["orders"]) in (None, (0, epoch))


async def test_a_bump_is_seen_at_once_by_every_node(nodes: Nodes) -> None:
    a, b = await nodes.node(), await nodes.node()
    for n in range(1, 4):
        await a.bump(["orders"])
        # Strict promise: a bump acknowledged before a read began is seen by it, anywhere.
        *seen_b, epoch = await b.current(["orders", "items"])
        assert seen_b == [n, 0]
        assert await a.current(["items", "orders"]) == (0, n, epoch)
    await settled(b, ["orders"], (3, epoch))


async def test_bump_of_several_tables_and_of_the_epoch(nodes: Nodes) -> None:
    a, b = await nodes.node(), await nodes.node()
    await a.bump(["orders", "items"])
    await a.bump([EPOCH])
    assert await b.current(["orders", "items", "customers"]) == (1, 1, 0, 1)
    await settled(b, ["customers"], (0, 1))


async def test_a_commit_position_travels_with_the_versions(nodes: Nodes) -> None:
    """Read replicas: a node that sees a bump's versions knows its commit LSN too (the
    largest announced; an older one never lowers it), across processes and Redis."""
    a, b = await nodes.node(), await nodes.node()
    big = 2**62 + 12345  # past a double's 53 bits: kept exact
    await a.bump(["orders"], big)
    await a.bump(["orders"], 7)
    if nodes.redis_url is not None and nodes.settings.cache_mode == "bounded":
        await until(lambda: (b.local(["orders"]) or (0,))[0] == 2)
    else:
        assert (await b.current(["orders"]))[0] == 2
    assert b.lsn == big


async def test_local_is_exact_or_within_the_bound(nodes: Nodes) -> None:
    a, b = await nodes.node(), await nodes.node()
    await a.bump(["orders"])
    if nodes.redis_url is None:
        assert b.local(["orders"]) == (1, 0)  # the shared file is read in place: exact
    elif nodes.settings.cache_mode == "strict":
        assert b.local(["orders"]) is None  # strict Redis never answers without a round trip
    else:
        # Bounded: the pushed copy, proven fresh by heartbeats, catches up within the bound.
        await until(lambda: b.local(["orders"]) == (1, 0))


async def test_with_entry_reads_the_l2_entry_and_the_versions_together(nodes: Nodes) -> None:
    store = nodes.store()
    v = await nodes.node(store)
    await v.bump(["orders"])
    key = f"hw:{nodes.namespace}:e:{secrets.token_hex(4)}"
    if store is not None:
        await store.set(key, b"entry", 10)
    data, versions = await v.with_entry(key, ["orders", "items"])
    assert versions[:2] == (1, 0)
    # Only Redis keeps an L2 beside its versions.
    assert data == (b"entry" if store is not None else None)
    if store is not None:
        await store.delete(key)


# --- a worker that saw Redis fail: the server's other workers, and its own exit ------------

class Gate:
    """A TCP relay to the shared Redis that a test shuts and opens: Redis unreachable from
    one worker only, while the others, and Redis itself, keep running."""

    def __init__(self, redis_url: str) -> None:
        url = urlsplit(redis_url)
        self.target = (url.hostname or "127.0.0.1", url.port or 6379)
        self.path = url.path or "/0"
        self.open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._relays: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}{self.path}"

    async def __aenter__(self) -> Gate:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self.shut()
        if self._relays:
            await asyncio.wait(self._relays)

    def shut(self) -> None:
        """Connections open now are cut; new ones are closed at once."""
        self.open = False
        for w in self._writers:
            w.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        self._writers.add(writer)
        try:
            if not self.open:
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError, OSError):
                    while data := await src.read(1 << 16):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            try:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            finally:
                up_writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await up_writer.wait_closed()
                self._writers.discard(up_writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._writers.discard(writer)
            self._relays.discard(task)


@dataclass
class Workers:
    """Versions made the way each worker of one ``headwater serve`` makes them: the same
    namespace and runtime directory, each with its own Redis store."""

    redis_url: str
    runtime_dir: str
    namespace: str = field(default_factory=lambda: f"test-{secrets.token_hex(4)}")
    made: list[Versions] = field(default_factory=list)
    stores: list[RedisStore] = field(default_factory=list)

    def store(self, url: str | None = None, *, timeout: float = 0.25) -> RedisStore:
        s = RedisStore(url or self.redis_url, CircuitBreaker("redis"), timeout=timeout)
        self.stores.append(s)
        return s

    async def worker(self, store: RedisStore | None = None, *,
                     mode: Literal["strict", "bounded"] = "strict") -> RedisVersions:
        settings = Settings(cache_mode=mode, cache_bounded_lag_ms=BOUND_MS,
                            runtime_dir=self.runtime_dir)
        v = open_versions(settings, store or self.store(), namespace=self.namespace)
        assert isinstance(v, RedisVersions)
        self.made.append(v)
        await v.start()
        return v

    async def epoch(self) -> int:
        raw = await self.stores[0].client.hget(f"hw:{self.namespace}:versions", EPOCH)
        return int(raw or 0)


@pytest.fixture
async def workers(redis_url: str, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(redis_url, str(tmp_path))
    w.store()  # the first store: the test's own view of Redis
    try:
        yield w
    finally:
        for v in w.made:
            await v.close()
        await w.stores[0].client.delete(f"hw:{w.namespace}:versions")
        for s in w.stores:
            await s.close()


async def test_a_write_one_worker_could_not_announce_is_healed_by_its_sibling(
        workers: Workers) -> None:
    """Worker A's bump cannot reach Redis (A alone is cut off), and A then never reads again
    (it was killed, or is idle): sibling B's next lookup moves the epoch, so the copy B holds
    from before A's write is no longer fresh anywhere."""
    b = await workers.worker()
    held = await b.current(["orders"])  # the versions a copy was stored at
    a = await workers.worker(workers.store("redis://127.0.0.1:1/0", timeout=0.05))
    with pytest.raises(RedisUnavailable):
        await a.bump(["orders"])
    moved = await b.current(["orders"])
    assert moved != held and moved[-1] == await workers.epoch()
    assert await b.current(["orders"]) == moved  # healed once, not at every lookup
    # A worker started later finds nothing to heal: the flag was cleared by B's heal.
    c = await workers.worker()
    assert await c.current(["orders"]) == moved


async def test_bounded_trusts_no_local_copy_while_a_sibling_is_dirty(workers: Workers) -> None:
    b = await workers.worker(mode="bounded")
    await until(lambda: b.local(["orders"]) is not None)
    held = b.local(["orders"])
    a = await workers.worker(workers.store("redis://127.0.0.1:1/0", timeout=0.05))
    with pytest.raises(RedisUnavailable):
        await a.bump(["orders"])
    assert b.local(["orders"]) is None  # A's write is unannounced: ask Redis (and heal)
    moved = await b.current(["orders"])
    assert moved != held
    await until(lambda: b.local(["orders"]) == moved)


async def test_a_worker_that_exits_dirty_moves_the_epoch_before_its_store_closes(
        workers: Workers) -> None:
    """Graceful exit (``Headwater.close`` closes the cache before the Redis store): a dirty
    worker heals once Redis answers it again, without a lookup of its own."""
    await workers.worker()  # a sibling, idle throughout
    async with Gate(workers.redis_url) as gate:
        a = await workers.worker(workers.store(gate.url))
        before = (await a.current(["orders"]))[-1]
        gate.shut()
        with pytest.raises(RedisUnavailable):
            await a.bump(["orders"])
        assert await workers.epoch() == before
        gate.open = True  # Redis is back for A
        await a.close()
        assert await workers.epoch() == before + 1
    # Healed for the whole server: a worker started now has nothing left to heal.
    c = await workers.worker()
    assert (await c.current(["orders"]))[-1] == before + 1


# --- the Redis byte store -----------------------------------------------------------------

@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_url, CircuitBreaker("redis"))
    try:
        yield s
    finally:
        await s.close()


def k(name: str) -> str:
    return f"hw:test:{secrets.token_hex(4)}:{name}"


async def test_get_set_delete(store: RedisStore) -> None:
    key = k("a")
    assert await store.get(key) is None
    await store.set(key, b"\x00value", 10)
    assert await store.get(key) == b"\x00value"
    await store.delete(key)
    assert await store.get(key) is None


async def test_ttl_expires(store: RedisStore) -> None:
    key = k("t")
    await store.set(key, b"v", 0.2)
    assert await store.get(key) == b"v"
    await asyncio.sleep(0.35)
    assert await store.get(key) is None


async def test_counters_and_pipelined_read(store: RedisStore) -> None:
    h = k("versions")
    assert await store.get_fields(h, ["a", "b"]) == [0, 0]
    assert await store.incr(h, "a") == 1
    assert await store.bump(h, ["a", "b"], k("chan")) == [2, 1]
    key = k("e")
    await store.set(key, b"entry", 10)
    assert await store.get_with_fields(key, h, ["a", "b", "c"]) == (b"entry", [2, 1, 0])
    await store.client.delete(h, key)


async def test_an_unguarded_bump_is_made_while_the_breaker_is_open(redis_url: str) -> None:
    breaker = CircuitBreaker("redis", BreakerPolicy(consecutive_failures=1, reset_timeout=60))
    store = RedisStore(redis_url, breaker)
    hkey = "hw:test:" + secrets.token_hex(4)
    try:
        breaker.failure()  # open
        with pytest.raises(RedisNotAsked):
            await store.get(hkey)
        with pytest.raises(RedisNotAsked):
            await store.bump(hkey, ["a"], hkey + ":chan")
        assert await store.bump(hkey, ["a"], hkey + ":chan", guarded=False) == [1]
        await store.client.delete(hkey)
    finally:
        await store.close()


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
